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

#include "gtest/gtest.h"

namespace fulcrum::testing {

// Loading programs and BPF_PROG_TEST_RUN need root (CAP_BPF, CAP_NET_ADMIN); CI runs as root,
// so there nothing skips.
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

}  // namespace fulcrum::testing
