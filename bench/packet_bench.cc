// Packet bench: ns/packet of ParsePacket and WriteEncap over bursts of 32, against a memcpy.
//
// Machines are shared and noisy, so every figure is meant to be read as a ratio to
// BM_Reference_Memcpy64 from the same run: copying the first 64 bytes of each packet of the
// burst, about the least a stage that touches a packet's headers can cost. (DPDK's software
// ptype parser, rte_net_get_ptype(), would be a closer reference but needs rte_mbufs and
// librte_net; this bench links fulcrum_core only, which has no DPDK.) Run with
// --benchmark_repetitions=10 --benchmark_report_aggregates_only=true and quote medians.
#include <array>
#include <cstdint>
#include <cstring>
#include <vector>

#include "benchmark/benchmark.h"
#include "dataplane/core/encap.h"
#include "dataplane/core/parse.h"

namespace fulcrum {
namespace {

constexpr int kBurst = 32;
constexpr size_t kBufSize = 256;  // headroom for the outer headers + a small packet

using Buf = std::array<uint8_t, kBufSize>;

void Put16(uint8_t* p, uint16_t v) {
  p[0] = static_cast<uint8_t>(v >> 8);
  p[1] = static_cast<uint8_t>(v);
}

// A TCP segment with 20 bytes of payload from client i, as the NIC would hand it over.
size_t BuildFrame(uint8_t* f, int i, bool v6, bool vlan) {
  const uint8_t mac[12] = {2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2};
  std::memcpy(f, mac, 12);
  size_t off = 12;
  if (vlan) {
    Put16(f + off, 0x8100);
    Put16(f + off + 2, static_cast<uint16_t>(100 + i));
    off += 4;
  }
  Put16(f + off, v6 ? 0x86dd : 0x0800);
  uint8_t* ip = f + off + 2;
  uint8_t* tcp;
  constexpr uint16_t kTcpLen = 20 + 20;
  if (v6) {
    std::memset(ip, 0, 40);
    ip[0] = 0x60;
    Put16(ip + 4, kTcpLen);
    ip[6] = 6;
    ip[7] = 64;
    ip[8] = 0x20;
    ip[9] = 0x01;
    ip[23] = static_cast<uint8_t>(i);  // source 2001::i
    ip[24] = 0x20;
    ip[25] = 0x01;
    ip[39] = 0x10;  // destination 2001::10
    tcp = ip + 40;
  } else {
    std::memset(ip, 0, 20);
    ip[0] = 0x45;
    Put16(ip + 2, 20 + kTcpLen);
    Put16(ip + 6, 0x4000);
    ip[8] = 64;
    ip[9] = 6;
    const uint8_t addrs[8] = {198, 51, 100, static_cast<uint8_t>(i), 203, 0, 113, 10};
    std::memcpy(ip + 12, addrs, 8);
    tcp = ip + 20;
  }
  std::memset(tcp, 0, kTcpLen);
  Put16(tcp, static_cast<uint16_t>(40000 + i));
  Put16(tcp + 2, 80);
  tcp[12] = 0x50;
  tcp[13] = 0x10;
  return static_cast<size_t>(tcp + kTcpLen - f);
}

struct Burst {
  std::vector<Buf> bufs = std::vector<Buf>(kBurst);
  std::array<uint32_t, kBurst> lens{};
};

Burst MakeBurst(bool v6, bool vlan) {
  Burst b;
  for (int i = 0; i < kBurst; ++i) {
    b.lens[i] = static_cast<uint32_t>(BuildFrame(b.bufs[i].data(), i, v6, vlan));
  }
  return b;
}

void ReportPerPacket(benchmark::State& state) {
  state.SetItemsProcessed(state.iterations() * kBurst);
  // Seconds per packet; Google Benchmark prints it with an SI prefix ("2.4n" is 2.4 ns).
  state.counters["per_pkt"] =
      benchmark::Counter(static_cast<double>(state.iterations()) * kBurst,
                         benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}

void BM_Reference_Memcpy64(benchmark::State& state) {
  Burst b = MakeBurst(false, false);
  std::array<std::array<uint8_t, 64>, kBurst> out;
  for (auto _ : state) {
    for (int i = 0; i < kBurst; ++i) std::memcpy(out[i].data(), b.bufs[i].data(), 64);
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  ReportPerPacket(state);
}
BENCHMARK(BM_Reference_Memcpy64);

void BM_Parse(benchmark::State& state, bool v6, bool vlan) {
  Burst b = MakeBurst(v6, vlan);
  std::array<ParsedPacket, kBurst> out;
  for (int i = 0; i < kBurst; ++i) {
    if (ParsePacket(b.bufs[i].data(), b.lens[i], out[i]) != ParseResult::kOk) {
      state.SkipWithError("bench frame does not parse");
      return;
    }
  }
  for (auto _ : state) {
    for (int i = 0; i < kBurst; ++i) {
      benchmark::DoNotOptimize(ParsePacket(b.bufs[i].data(), b.lens[i], out[i]));
    }
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  ReportPerPacket(state);
}
BENCHMARK_CAPTURE(BM_Parse, Ipv4Tcp, false, false);
BENCHMARK_CAPTURE(BM_Parse, Ipv6Tcp, true, false);
BENCHMARK_CAPTURE(BM_Parse, VlanIpv4Tcp, false, true);

// The egress port's MAC, merged into every frame's outer Ethernet header.
const EncapSourceMac kPortMac = EncapSourceMac::Of({2, 0, 0, 0, 1, 2});

EncapTemplate MakeTemplate(EncapType type, bool backend_v6, bool inner_v6) {
  EncapConfig config;
  config.src_mac = {2, 0, 0, 0, 1, 1};
  config.gateway_mac = {2, 0, 0, 0, 0xfe, 0xfe};
  config.source_v4 = IpAddress::V4(192, 0, 2, 1);
  config.source_v6 = IpAddress::Parse("2001:db8:1b::1").value();
  config.type = type;
  const IpAddress backend =
      backend_v6 ? IpAddress::Parse("2001:db8:be::5").value() : IpAddress::V4(10, 1, 0, 5);
  return BuildEncapTemplate(config, backend, inner_v6).value();
}

// The inner IP packet sits at kMaxEncapHeaderLen in each buffer, as if the Ethernet header had
// been stripped and the headroom were there; the hot function alone is timed.
template <EncapKind kKind>
void RunEncap(benchmark::State& state, EncapType type, bool backend_v6, bool inner_v6) {
  const EncapTemplate t = MakeTemplate(type, backend_v6, inner_v6);
  std::vector<Buf> bufs(kBurst);
  std::array<uint32_t, kBurst> lens;
  std::array<uint8_t, kBurst> tos;
  std::array<uint64_t, kBurst> hashes;
  for (int i = 0; i < kBurst; ++i) {
    Buf frame;
    const size_t len = BuildFrame(frame.data(), i, inner_v6, false);
    std::memcpy(bufs[i].data() + kMaxEncapHeaderLen, frame.data() + 14, len - 14);
    lens[i] = static_cast<uint32_t>(len - 14);
    tos[i] = static_cast<uint8_t>(i * 8);
    hashes[i] = 0x9e3779b97f4a7c15ull * static_cast<uint64_t>(i + 1);
  }
  for (auto _ : state) {
    for (int i = 0; i < kBurst; ++i) {
      benchmark::DoNotOptimize(WriteEncap<kKind>(t, bufs[i].data() + kMaxEncapHeaderLen, lens[i],
                                                 tos[i], hashes[i], kPortMac));
    }
    benchmark::ClobberMemory();
  }
  ReportPerPacket(state);
}
// One function per kind: BENCHMARK_CAPTURE cannot name a template instance.
void BM_EncapIpip4in4(benchmark::State& s) {
  RunEncap<EncapKind::kIpip4>(s, EncapType::kIpip, false, false);
}
void BM_EncapIpip6in6(benchmark::State& s) {
  RunEncap<EncapKind::kIpip6>(s, EncapType::kIpip, true, true);
}
void BM_EncapIpip4in6(benchmark::State& s) {
  RunEncap<EncapKind::kIpip6>(s, EncapType::kIpip, true, false);
}
void BM_EncapGue4(benchmark::State& s) {
  RunEncap<EncapKind::kGue4>(s, EncapType::kGue, false, false);
}
void BM_EncapGue6(benchmark::State& s) {
  RunEncap<EncapKind::kGue6>(s, EncapType::kGue, true, true);
}
BENCHMARK(BM_EncapIpip4in4);
BENCHMARK(BM_EncapIpip6in6);
BENCHMARK(BM_EncapIpip4in6);
BENCHMARK(BM_EncapGue4);
BENCHMARK(BM_EncapGue6);

// The dispatching overload with backends of all four kinds interleaved in one burst: the
// worst case for its branch.
void BM_EncapDispatchMixedKinds(benchmark::State& state) {
  const std::array<EncapTemplate, 4> templates = {
      MakeTemplate(EncapType::kIpip, false, false), MakeTemplate(EncapType::kIpip, true, true),
      MakeTemplate(EncapType::kGue, false, false), MakeTemplate(EncapType::kGue, true, true)};
  std::vector<Buf> bufs(kBurst);
  for (int i = 0; i < kBurst; ++i) {
    Buf frame;
    const bool v6 = (i * 7 % 4) % 2 == 1;
    const size_t len = BuildFrame(frame.data(), i, v6, false);
    std::memcpy(bufs[i].data() + kMaxEncapHeaderLen, frame.data() + 14, len - 14);
  }
  for (auto _ : state) {
    for (int i = 0; i < kBurst; ++i) {
      benchmark::DoNotOptimize(WriteEncap(templates[i * 7 % 4], bufs[i].data() + kMaxEncapHeaderLen,
                                          60, static_cast<uint8_t>(i), 0x1234567ull * i, kPortMac));
    }
    benchmark::ClobberMemory();
  }
  ReportPerPacket(state);
}
BENCHMARK(BM_EncapDispatchMixedKinds);

}  // namespace
}  // namespace fulcrum

BENCHMARK_MAIN();
