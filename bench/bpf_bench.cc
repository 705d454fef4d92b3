// BPF programs: ns per packet through BPF_PROG_TEST_RUN, against a trivial program measured the
// same way in the same run (XDP_PASS for XDP, TC_ACT_OK for tc): read the ratios, the machine
// is shared.
//
// Two ways of timing, because BPF_PROG_TEST_RUN runs its `repeat` iterations on one buffer:
// * repeat: one call runs the program 20000 times and the kernel reports the mean. Exact for
//   programs that leave the packet alone (steering; the decapsulator on traffic that is not
//   for it), and the figure to quote for them.
// * single: one run per call (repeat 1); the kernel's timer brackets the run, so every figure
//   carries the timer's own cost, which the reference measured the same way shows. Needed where
//   the program changes the packet (decapsulation strips it, so a second run would see the inner
//   packet; encapsulation would grow it). "net" is the figure minus that reference.
// Frames come from the data plane's own encapsulation (dataplane/core/encap.h).
//
// Run: build/bench/bpf_bench (root; about a minute). scripts/bench flags work the same way.
#include <bpf/bpf.h>
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "benchmark/benchmark.h"
#include "bpf/decap.h"
#include "bpf/probe.h"
#include "bpf/steer.h"
#include "dataplane/core/encap.h"
#include "tests/bpf/bpf_testing.h"

namespace fulcrum::bpf {
namespace {

// Each repeated call costs milliseconds of wall time whatever its count (the kernel re-points
// its XDP dispatcher for repeat > 1), so few calls of many runs each.
constexpr uint32_t kRepeat = 20000;
constexpr uint32_t kMark = 0xf1c00001;

IpAddress Ip(const char* text) { return IpAddress::Parse(text).value(); }

// A TCP SYN from a client to a VIP: 40 bytes (IPv4) or 60 (IPv6), behind `headroom` bytes.
std::vector<uint8_t> Syn(bool v6, size_t headroom) {
  std::vector<uint8_t> p(headroom + (v6 ? 60 : 40), 0);
  uint8_t* ip = p.data() + headroom;
  if (v6) {
    ip[0] = 0x60;
    ip[5] = 20;
    ip[6] = 6;
    ip[7] = 64;
    const IpAddress src = Ip("2001:db8:c::7"), dst = Ip("2001:db8:f::10");
    std::copy(src.bytes.begin(), src.bytes.end(), ip + 8);
    std::copy(dst.bytes.begin(), dst.bytes.end(), ip + 24);
  } else {
    ip[0] = 0x45;
    ip[3] = 40;
    ip[6] = 0x40;
    ip[8] = 64;
    ip[9] = 6;
    const uint8_t addrs[8] = {198, 51, 100, 7, 203, 0, 113, 10};
    std::copy(addrs, addrs + 8, ip + 12);
  }
  uint8_t* tcp = ip + (v6 ? 40 : 20);
  tcp[0] = 0x9c, tcp[1] = 0x40, tcp[3] = 80, tcp[12] = 0x50, tcp[13] = 0x02;
  return p;
}

EncapConfig Config(EncapType type) {
  EncapConfig c;
  c.src_mac = {0x02, 0, 0, 0, 1, 1};
  c.gateway_mac = {0x02, 0, 0, 0, 0xfe, 0xfe};
  c.source_v4 = Ip("192.0.2.1");
  c.source_v6 = Ip("2001:db8:1b::1");
  c.type = type;
  return c;
}

// The frame a backend receives: the data plane's WriteEncap() around a SYN.
std::vector<uint8_t> Encapsulated(EncapType type, const char* backend, bool inner_v6) {
  const EncapTemplate t = BuildEncapTemplate(Config(type), Ip(backend), inner_v6).value();
  std::vector<uint8_t> f = Syn(inner_v6, kMaxEncapHeaderLen);
  uint8_t* inner = f.data() + kMaxEncapHeaderLen;
  const uint32_t len = WriteEncap(t, inner, static_cast<uint32_t>(f.size() - kMaxEncapHeaderLen), 0,
                                  0x0123456789abcdefULL, EncapSourceMac::Of(Config(type).src_mac));
  return std::vector<uint8_t>(inner - len, f.data() + f.size());
}

// A plain frame: Ethernet + SYN, optionally with its IPv4 destination replaced.
std::vector<uint8_t> Plain(bool v6, std::optional<IpAddress> dst = std::nullopt) {
  std::vector<uint8_t> f = Syn(v6, 14);
  f[12] = v6 ? 0x86 : 0x08;
  f[13] = v6 ? 0xdd : 0x00;
  if (dst.has_value()) std::copy(dst->bytes.begin(), dst->bytes.begin() + 4, f.begin() + 14 + 16);
  return f;
}

std::vector<uint8_t> Arp() {
  std::vector<uint8_t> f(42, 0);
  f[12] = 0x08, f[13] = 0x06;
  return f;
}

int TrivialProgram(bpf_prog_type type, int32_t verdict) {
  const bpf_insn insns[] = {
      {BPF_ALU64 | BPF_MOV | BPF_K, BPF_REG_0, 0, 0, verdict},  // r0 = verdict
      {BPF_JMP | BPF_EXIT, 0, 0, 0, 0},
  };
  return bpf_prog_load(type, "ref_pass", "GPL", insns, 2, nullptr);
}

struct World {
  int ref_xdp = -1, ref_tc = -1;
  std::optional<DecapProgram> decap_xdp, decap_tc;
  std::optional<SteerProgram> steer;
  std::optional<ProbeEncap> probe;
};
World* world = nullptr;

bool Setup() {
  world = new World;
  world->ref_xdp = TrivialProgram(BPF_PROG_TYPE_XDP, XDP_PASS);
  world->ref_tc = TrivialProgram(BPF_PROG_TYPE_SCHED_CLS, TC_ACT_OK);
  DecapConfig dc;
  dc.addresses = {Ip("10.1.0.5"), Ip("2001:db8:be::5")};
  dc.gue_port = 6080;
  absl::StatusOr<DecapProgram> dx = DecapProgram::Load(DecapMode::kXdp, dc);
  absl::StatusOr<DecapProgram> dt = DecapProgram::Load(DecapMode::kTc, dc);
  absl::StatusOr<SteerProgram> st = SteerProgram::Load();
  absl::StatusOr<ProbeEncap> pr = ProbeEncap::Load();
  if (world->ref_xdp < 0 || world->ref_tc < 0 || !dx.ok() || !dt.ok() || !st.ok() || !pr.ok()) {
    std::fprintf(stderr, "bpf_bench: loading failed (root?)\n");
    return false;
  }
  world->decap_xdp.emplace(*std::move(dx));
  world->decap_tc.emplace(*std::move(dt));
  world->steer.emplace(*std::move(st));
  world->probe.emplace(*std::move(pr));
  // 64 VIPs, the measured one among them.
  std::vector<SteerVip> vips;
  for (int i = 0; i < 63; ++i)
    vips.push_back({IpAddress::V4(203, 0, 113, 100), 6, uint16_t(i + 1000)});
  vips.push_back({Ip("203.0.113.10"), 6, 80});
  if (!world->steer->Maps()->ReplaceVips(vips).ok()) return false;
  return world->probe->SetTarget(kMark, Config(EncapType::kGue), Ip("2001:db8:be::5")).ok() &&
         world->probe->SetTarget(kMark + 1, Config(EncapType::kIpip), Ip("10.1.0.5")).ok();
}

struct Case {
  std::string name;
  std::function<int()> prog_fd;
  std::vector<uint8_t> frame;
  bool single;        // one run per call (the program changes the packet)
  uint32_t mark = 0;  // tc programs: skb->mark
  bool xdp = true;
};

std::map<std::string, std::vector<double>> medians;  // per case, one per repetition

void BM_Run(benchmark::State& state, const Case& c) {
  std::vector<double> samples;
  const int fd = c.prog_fd();
  for (auto _ : state) {
    ::fulcrum::testing::TestRun r;
    if (c.xdp) {
      r = ::fulcrum::testing::RunProgram<char>(fd, c.frame, nullptr, c.single ? 1 : kRepeat);
    } else {
      __sk_buff ctx{};
      ctx.mark = c.mark;
      r = ::fulcrum::testing::RunProgram(fd, c.frame, &ctx, c.single ? 1 : kRepeat);
    }
    if (r.err != 0) {
      state.SkipWithError("BPF_PROG_TEST_RUN failed");
      return;
    }
    state.SetIterationTime(r.duration_ns * 1e-9);
    samples.push_back(r.duration_ns);
  }
  std::nth_element(samples.begin(), samples.begin() + samples.size() / 2, samples.end());
  const double median = samples[samples.size() / 2];
  state.counters["median_ns"] = median;
  medians[c.name].push_back(median);
}

std::vector<Case>& Cases() {
  static auto* cases = new std::vector<Case>;
  return *cases;
}

void Register() {
  auto ref_xdp = [] { return world->ref_xdp; };
  auto ref_tc = [] { return world->ref_tc; };
  auto dx = [] { return world->decap_xdp->prog_fd(); };
  auto dt = [] { return world->decap_tc->prog_fd(); };
  auto st = [] { return world->steer->prog_fd(); };
  auto pr = [] { return world->probe->prog_fd(); };
  const auto ipip4 = Encapsulated(EncapType::kIpip, "10.1.0.5", false);
  const auto ip6ip6 = Encapsulated(EncapType::kIpip, "2001:db8:be::5", true);
  const auto ip4ip6 = Encapsulated(EncapType::kIpip, "2001:db8:be::5", false);
  const auto gue4 = Encapsulated(EncapType::kGue, "10.1.0.5", false);
  const auto gue6 = Encapsulated(EncapType::kGue, "2001:db8:be::5", true);
  const auto to_backend = Plain(false, Ip("10.1.0.5"));
  const auto to_other = Plain(false, Ip("10.9.9.9"));
  auto& c = Cases();
  for (bool single : {false, true}) {
    const std::string m = single ? "single/" : "repeat/";
    c.push_back({m + "ref/xdp_pass", ref_xdp, Plain(false), single});
    c.push_back({m + "ref/tc_ok", ref_tc, Plain(false), single, 0, false});
    c.push_back({m + "decap_xdp/pass_not_local", dx, to_other, single});
    c.push_back({m + "decap_xdp/pass_not_tunnel", dx, to_backend, single});
    c.push_back({m + "decap_tc/pass_not_tunnel", dt, to_backend, single, 0, false});
    c.push_back({m + "steer/vip", st, Plain(false), single});
    c.push_back({m + "steer/not_vip", st, to_other, single});
    c.push_back({m + "steer/arp", st, Arp(), single});
    c.push_back({m + "probe/unmarked", pr, Plain(false), single, 0, false});
  }
  c.push_back({"single/decap_xdp/4in4", dx, ipip4, true});
  c.push_back({"single/decap_xdp/6in6", dx, ip6ip6, true});
  c.push_back({"single/decap_xdp/4in6", dx, ip4ip6, true});
  c.push_back({"single/decap_xdp/gue4", dx, gue4, true});
  c.push_back({"single/decap_xdp/gue6", dx, gue6, true});
  c.push_back({"single/decap_tc/4in4", dt, ipip4, true, 0, false});
  c.push_back({"single/decap_tc/gue6", dt, gue6, true, 0, false});
  c.push_back({"single/probe/encap_ipip4", pr, Plain(false), true, kMark + 1, false});
  c.push_back({"single/probe/encap_gue6", pr, Plain(true), true, kMark, false});
  for (const Case& k : c) {
    benchmark::RegisterBenchmark(("BPF/" + k.name).c_str(), BM_Run, k)
        ->UseManualTime()
        // Fixed counts: manual time is ns per packet, far below the wall time of a call, so a
        // minimum time would mean millions of calls.
        ->Iterations(k.single ? 20000 : 20)
        ->Repetitions(5)
        ->ReportAggregatesOnly(true);
  }
}

double Median(std::vector<double> v) {
  if (v.empty()) return std::nan("");
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

void PrintSummary() {
  std::printf("\nMedian ns per packet (medians of 5 repetitions), this run:\n");
  std::printf("%-34s %9s %9s %7s %9s\n", "", "ns", "ref ns", "ratio", "net ns");
  for (const Case& c : Cases()) {
    const std::string method = c.single ? "single/" : "repeat/";
    const std::string ref = method + (c.xdp ? "ref/xdp_pass" : "ref/tc_ok");
    const double v = Median(medians[c.name]), r = Median(medians[ref]);
    std::printf("%-34s %9.1f %9.1f %7.2f %9.1f\n", c.name.c_str(), v, r, v / r, v - r);
  }
}

}  // namespace
}  // namespace fulcrum::bpf

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (::geteuid() != 0) {
    std::printf("bpf_bench: needs root (BPF_PROG_TEST_RUN); nothing measured\n");
    return 0;
  }
  if (!fulcrum::bpf::Setup()) return 1;
  fulcrum::bpf::Register();
  benchmark::RunSpecifiedBenchmarks();
  fulcrum::bpf::PrintSummary();
  benchmark::Shutdown();
  return 0;
}
