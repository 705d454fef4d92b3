// Helpers for the bpf suite: BPF_PROG_TEST_RUN, the root check, a private network namespace.
#pragma once

#include <bpf/bpf.h>
#include <sched.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <span>
#include <string>
#include <vector>

namespace fulcrum::testing {

// Loading programs and BPF_PROG_TEST_RUN need root (CAP_BPF, CAP_NET_ADMIN); CI runs as root,
// so there nothing skips. (For gtest files; this header itself stays free of gtest, the
// benchmark uses it too.)
#define SKIP_UNLESS_ROOT()                                                                  \
  if (::geteuid() != 0) {                                                                   \
    GTEST_SKIP() << "needs root to load BPF programs (CAP_BPF, CAP_NET_ADMIN); CI runs as " \
                    "root";                                                                 \
  }

struct TestRun {
  int err = 0;  // 0, or the negative errno of the syscall
  uint32_t retval = 0;
  std::vector<uint8_t> out;
  uint32_t duration_ns = 0;  // per run, as the kernel measured it
};

// Runs prog_fd once (or `repeat` times) on `in`; `ctx` is the xdp_md or __sk_buff to start from
// and receives the context the program left (tc programs may change skb->mark).
template <typename Ctx = char>
TestRun RunProgram(int prog_fd, std::span<const uint8_t> in, Ctx* ctx = nullptr,
                   uint32_t repeat = 1) {
  TestRun r;
  r.out.resize(in.size() + 256);  // room for the outer headers a program adds
  LIBBPF_OPTS(bpf_test_run_opts, opts);
  opts.data_in = in.data();
  opts.data_size_in = static_cast<uint32_t>(in.size());
  opts.data_out = r.out.data();
  opts.data_size_out = static_cast<uint32_t>(r.out.size());
  opts.repeat = repeat;
  if (ctx != nullptr) {
    opts.ctx_in = ctx;
    opts.ctx_size_in = sizeof(Ctx);
    opts.ctx_out = ctx;
    opts.ctx_size_out = sizeof(Ctx);
  }
  r.err = bpf_prog_test_run_opts(prog_fd, &opts);
  r.retval = opts.retval;
  r.duration_ns = opts.duration;
  r.out.resize(r.err == 0 ? opts.data_size_out : 0);
  return r;
}

// Moves the calling process into a network namespace of its own (root only), so that a test
// can create interfaces without touching the host's or other tests'. Call before any thread
// starts; children (std::system) inherit it, and it disappears with the process.
inline bool EnterPrivateNetns() { return ::unshare(CLONE_NEWNET) == 0; }

// Runs a shell command; true when it exits 0.
inline bool Sh(const std::string& command) { return std::system(command.c_str()) == 0; }

// An Ethernet + IPv4 + UDP frame with a valid IPv4 header checksum and UDP checksum 0 (allowed
// over IPv4), for tests that put frames on a wire.
inline std::vector<uint8_t> Udp4Frame(const uint8_t (&dst_mac)[6], const uint8_t (&src_mac)[6],
                                      const uint8_t (&src)[4], const uint8_t (&dst)[4],
                                      uint16_t sport, uint16_t dport, size_t payload_len) {
  std::vector<uint8_t> f(14 + 20 + 8 + payload_len, 0);
  std::memcpy(f.data(), dst_mac, 6);
  std::memcpy(f.data() + 6, src_mac, 6);
  f[12] = 0x08;
  uint8_t* ip = f.data() + 14;
  const size_t ip_len = 20 + 8 + payload_len;
  ip[0] = 0x45;
  ip[2] = static_cast<uint8_t>(ip_len >> 8);
  ip[3] = static_cast<uint8_t>(ip_len);
  ip[6] = 0x40;  // DF
  ip[8] = 64;
  ip[9] = 17;
  std::memcpy(ip + 12, src, 4);
  std::memcpy(ip + 16, dst, 4);
  uint32_t sum = 0;
  for (int i = 0; i < 20; i += 2) sum += static_cast<uint32_t>(ip[i] << 8 | ip[i + 1]);
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  ip[10] = static_cast<uint8_t>(~sum >> 8);
  ip[11] = static_cast<uint8_t>(~sum);
  uint8_t* udp = ip + 20;
  udp[0] = static_cast<uint8_t>(sport >> 8);
  udp[1] = static_cast<uint8_t>(sport);
  udp[2] = static_cast<uint8_t>(dport >> 8);
  udp[3] = static_cast<uint8_t>(dport);
  udp[4] = static_cast<uint8_t>((8 + payload_len) >> 8);
  udp[5] = static_cast<uint8_t>(8 + payload_len);
  for (size_t i = 0; i < payload_len; ++i) udp[8 + i] = static_cast<uint8_t>(i);
  return f;
}

}  // namespace fulcrum::testing
