// Pipeline cost per packet: ProcessBurst over prebuilt mbufs, bursts of 32, 64-byte TCP, one
// core, for the four cases of the data-plane floors (README "Benchmarks"):
//   established/hot       one tracked flow, every packet a flow-table hit (after the first of a
//                         burst, a repeat of the previous packet's flow: no lookup)
//   established/hot_interleaved  32 tracked flows, each packet of a burst another one
//   established/1M        1 Mi tracked flows, packets in random order (table misses in cache)
//   new_flow              every packet a flow the table does not hold: Maglev + insert
//   not_for_a_vip         traffic for the host: prefilter, then the kernel's list
// Encapsulation rewrites the headers in place, so every iteration first restores its burst
// (data offset, length, Ethernet header, and for the flow cases the 5-tuple). That restore,
// plus a MAC swap of every packet (what testpmd's macswap does), is measured alone as the
// reference: report each case as ns/packet and as its ratio to that reference, and read the
// net figure (case - restore) as the pipeline's own cost. The 1 Mi case has a second reference,
// the memory system alone: random lines from a region the size of its flow table, one or two
// per packet (BM_Reference_RandomTableLines).
//
// EAL: hugepages when mounted and free (scripts/bench mounts them), --no-huge otherwise.
#include <benchmark/benchmark.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "dataplane/forwarding.h"
#include "dataplane/pipeline.h"

namespace fulcrum {
namespace {

constexpr int kBurst = 32;
constexpr uint32_t kManyFlows = 1u << 20;
// The flow table of the many-flow cases: 3 Mi, at 160 MiB the capacity whose memory is closest
// to that of the earlier 4-way table at 4 Mi (192 MiB), so that the two layouts were compared
// on the same memory (docs/dataplane.md "Where the floors stand"). Load 1/3: 0.2 % of the 1 Mi
// flows find their two groups full at the fill and are forwarded by Maglev alone.
constexpr uint64_t kManyFlowsCapacity = 3 * uint64_t{kManyFlows};
rte_mempool* g_pool = nullptr;
// ProcessBurst calls and the packets they were given, for instruction counts under callgrind.
uint64_t g_bursts = 0;
uint64_t g_packets = 0;
bool g_hugepages = false;

const uint8_t kVip[4] = {10, 10, 0, 100};
const uint8_t kHost[4] = {10, 10, 3, 2};

// 64-byte frames: Ethernet + IPv4 + TCP + 10 bytes.
constexpr uint16_t kFrameLen = 64;

// Client address 100.x.y.z and source port from the flow number.
inline void SetFlow(uint8_t* ip, uint32_t flow) {
  ip[12] = 100;
  ip[13] = static_cast<uint8_t>(flow >> 16);
  ip[14] = static_cast<uint8_t>(flow >> 8);
  ip[15] = static_cast<uint8_t>(flow);
  ip[20] = static_cast<uint8_t>(0x80 | (flow >> 24));
  ip[21] = static_cast<uint8_t>(flow);
}

void WriteFrame(uint8_t* f, const uint8_t* dst, uint32_t flow, uint8_t tcp_flags) {
  std::memset(f, 0, kFrameLen);
  const uint8_t macs[12] = {2, 0, 0, 0, 0, 0xaa, 2, 0, 0, 0, 0, 0x0c};
  std::memcpy(f, macs, 12);
  f[12] = 0x08;
  uint8_t* ip = f + 14;
  ip[0] = 0x45;
  ip[3] = kFrameLen - 14;
  ip[6] = 0x40;
  ip[8] = 64;
  ip[9] = 6;
  SetFlow(ip, flow);
  std::memcpy(ip + 16, dst, 4);
  uint8_t* tcp = ip + 20;
  tcp[3] = 80;
  tcp[12] = 0x50;
  tcp[13] = tcp_flags;
}

std::unique_ptr<ForwardingState> State(uint32_t tcp_timeout_s = 300) {
  shm::SnapshotSettings s{};
  const uint8_t v4[4] = {10, 10, 3, 2};
  std::memcpy(s.source_v4, v4, 4);
  const uint8_t mac[6] = {2, 0, 0, 0, 3, 1};
  std::memcpy(s.gateway_mac, mac, 6);
  s.flags = shm::kSettingsHasSourceV4;
  s.ttl = 64;
  s.mtu = 1500;
  s.tcp_timeout_s = tcp_timeout_s;
  s.tcp_closing_timeout_s = 1;
  s.udp_timeout_s = 30;
  shm::VipSpec vip;
  vip.name = "web";
  vip.address = IpAddress::V4(kVip[0], kVip[1], kVip[2], kVip[3]);
  vip.port = 80;
  vip.id = 1;
  for (uint16_t b = 0; b < 10; ++b) {
    vip.backends.push_back({IpAddress::V4(10, 10, 2, static_cast<uint8_t>(11 + b)), 0, 1,
                            shm::BackendState::kActive, b});
  }
  return ForwardingState::Build(shm::BuildSnapshot(1, s, {&vip, 1}).value()).value();
}

struct Lcore {
  explicit Lcore(uint64_t capacity)
      : flows(MmapFlowTable::Create(capacity).value()), stats(std::make_unique<shm::LcoreStats>()) {
    ctx.flows = &flows.table();
    ctx.stats = stats.get();
    ctx.tsc_hz = 1'000'000'000;
  }
  MmapFlowTable flows;
  std::unique_ptr<shm::LcoreStats> stats;
  LcoreContext ctx;
  uint32_t now = 10;  // the flow table's clock: it must never go back, across repetitions too
};

// A burst of N mbufs whose first bytes are restored before each use.
template <int N = kBurst>
struct Burst {
  rte_mbuf* m[N];
  uint16_t data_off;
  Burst() {
    for (auto& p : m) {
      p = rte_pktmbuf_alloc(g_pool);
      char* data = p == nullptr ? nullptr : rte_pktmbuf_append(p, kFrameLen);
      if (data == nullptr) std::abort();  // a pool of 1023 for a burst of 32: cannot happen
      WriteFrame(reinterpret_cast<uint8_t*>(data), kVip, 0, 0x10);
    }
    data_off = m[0]->data_off;
  }
  ~Burst() { rte_pktmbuf_free_bulk(m, N); }
  // Back to a 64-byte frame from `dst` of flow flows[i]: the bytes encapsulation changed.
  // Every field is stored with the width the parser loads it with: a load that spans two
  // narrower stores cannot be forwarded from the store buffer and stalls for ~15 cycles, a cost
  // a packet DMA'd by a NIC never has (it was measured here first, as pipeline cost).
  void Restore(const uint8_t* dst, const uint32_t* flows, uint8_t tcp_flags) {
    for (int i = 0; i < N; ++i) {
      rte_mbuf* p = m[i];
      p->data_off = data_off;
      p->data_len = kFrameLen;
      p->pkt_len = kFrameLen;
      uint8_t* f = rte_pktmbuf_mtod(p, uint8_t*);
      const uint8_t macs[12] = {2, 0, 0, 0, 0, 0xaa, 2, 0, 0, 0, 0, 0x0c};
      std::memcpy(f, macs, 12);
      const uint16_t ether_type = rte_cpu_to_be_16(0x0800);
      std::memcpy(f + 12, &ether_type, 2);
      const uint32_t flow = flows[i];
      const uint32_t src = rte_cpu_to_be_32(100u << 24 | (flow & 0xffffff));
      std::memcpy(f + 26, &src, 4);
      std::memcpy(f + 30, dst, 4);
      const uint16_t sport =
          rte_cpu_to_be_16(static_cast<uint16_t>(0x8000 | (flow >> 24) << 8 | (flow & 0xff)));
      std::memcpy(f + 34, &sport, 2);
      f[14 + 20 + 13] = tcp_flags;
    }
  }
};

void Report(benchmark::State& state, int burst = kBurst) {
  state.SetItemsProcessed(state.iterations() * burst);
  state.counters["ns_per_pkt"] =
      benchmark::Counter(static_cast<double>(state.iterations()) * burst,
                         benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}

// The reference: restoring the burst and swapping every packet's MACs.
void BM_RestoreOnly(benchmark::State& state) {
  Burst b;
  uint32_t flows[kBurst];
  for (int i = 0; i < kBurst; ++i) flows[i] = static_cast<uint32_t>(i);
  for (auto _ : state) {
    b.Restore(kVip, flows, 0x10);
    benchmark::ClobberMemory();
  }
  Report(state);
}
BENCHMARK(BM_RestoreOnly);

void BM_Reference_RestoreAndMacSwap(benchmark::State& state) {
  Burst b;
  uint32_t flows[kBurst];
  for (int i = 0; i < kBurst; ++i) flows[i] = static_cast<uint32_t>(i);
  for (auto _ : state) {
    b.Restore(kVip, flows, 0x10);
    for (rte_mbuf* p : b.m) {
      uint8_t* f = rte_pktmbuf_mtod(p, uint8_t*);
      uint8_t tmp[6];
      std::memcpy(tmp, f, 6);
      std::memcpy(f, f + 6, 6);
      std::memcpy(f + 6, tmp, 6);
    }
    benchmark::ClobberMemory();
  }
  Report(state);
}
BENCHMARK(BM_Reference_RestoreAndMacSwap);

// The core's delivered clock: a chain of dependent adds, one a cycle on any x86 core, so adds
// per nanosecond is the clock this thread ran at in this run. A VM's vCPU wanders: on one
// whose TSC ticks at 2.45 GHz this read 2.7 to 3.1 GHz within one hour. Reported as the
// counter Gadds (per second: GHz); a case's ns_per_pkt times it is its cycles per packet,
// which compares hours and machines where nanoseconds do not. It does not see a sibling
// hyperthread taking the core's other ports: for that, the restore reference is the one to read.
void BM_Reference_CoreClock(benchmark::State& state) {
  constexpr int kAdds = 4096;
  uint64_t x = 0;
  // The empty asm makes each add depend on the one before and keeps the compiler from folding
  // the chain into one add.
  const auto add = [&x] {
    x += 1;
    asm volatile("" : "+r"(x));
  };
  for (auto _ : state) {
    for (int i = 0; i < kAdds / 8; ++i) {
      add(), add(), add(), add(), add(), add(), add(), add();
    }
  }
  benchmark::DoNotOptimize(x);
  state.counters["Gadds"] = benchmark::Counter(
      static_cast<double>(state.iterations()) * kAdds / 1e9, benchmark::Counter::kIsRate);
}
BENCHMARK(BM_Reference_CoreClock);

// The memory system alone, the reference for the 1 Mi case: per packet, a random bucket line
// of a region laid out as that case's flow table (4 Mi flows requested, transparent huge
// pages: the bucket array, then the IPv6 address array), 32 at a time, each prefetched for
// every packet of the burst and then read, as the pipeline does with bucket lines (an IPv4 hit
// needs no other line). With lines = 2 a 32-byte IPv6 address pair of the same group is then
// prefetched and read, at an offset that depends on the bucket's bytes, as an IPv6 hit reads
// the matching way's addresses. No table logic: how fast this machine delivers random lines
// from beyond its caches, which is what the 1 Mi case adds to the hot one (docs/dataplane.md
// "Where the floors stand").
void BM_Reference_RandomTableLines(benchmark::State& state) {
  const auto lines = static_cast<int>(state.range(0));
  static const size_t bytes = FlowTable::BytesNeeded(kManyFlowsCapacity).value();
  static uint8_t* const region = [] {
    constexpr size_t kHugePage = size_t{2} << 20;
    const size_t mapped = (bytes + kHugePage - 1) / kHugePage * kHugePage;
    auto* p = static_cast<uint8_t*>(std::aligned_alloc(kHugePage, mapped));
    if (p == nullptr) std::abort();
    (void)madvise(p, mapped, MADV_HUGEPAGE);  // advice only, as for MmapFlowTable
    std::memset(p, 1, mapped);                // faulted in before the timing
    return p;
  }();
  // As in the table: one 64-byte bucket per group, then 3 address pairs of 32 bytes per group.
  static const size_t group_count = bytes / flow_table_internal::kGroupBytes;
  static const std::vector<uint32_t> groups = [] {
    std::vector<uint32_t> g(kManyFlows);
    std::mt19937_64 rng(4);
    for (uint32_t& x : g) x = static_cast<uint32_t>(rng() % group_count);
    return g;
  }();
  const uint8_t* const v6 = region + group_count * 64;
  size_t pos = 0;
  uint64_t sum = 0;
  for (auto _ : state) {
    const uint32_t* g = &groups[pos];
    for (int i = 0; i < kBurst; ++i) __builtin_prefetch(region + size_t{g[i]} * 64);
    size_t second[kBurst];
    for (int i = 0; i < kBurst; ++i) {
      const uint8_t first = region[size_t{g[i]} * 64];
      sum += first;
      second[i] = size_t{g[i]} * 96 + (first & 0x40);  // way 0, unless the bucket said otherwise
      if (lines == 2) __builtin_prefetch(v6 + second[i]);
    }
    if (lines == 2) {
      for (int i = 0; i < kBurst; ++i) sum += v6[second[i]];
    }
    benchmark::DoNotOptimize(sum);
    pos += kBurst;
    if (pos + kBurst > groups.size()) pos = 0;
  }
  Report(state);
}
BENCHMARK(BM_Reference_RandomTableLines)->ArgName("lines")->Arg(1)->Arg(2);

// ProcessBurst on n packets from the benchmark's port, counted for instructions.sh.
void Process(const ForwardingState& fs, rte_mbuf* const* m, uint16_t n, uint32_t now,
             LcoreContext& ctx, BurstOutput& out) {
  out.n_tx = out.n_kernel = 0;
  ProcessBurst(&fs, m, n, {2, 0, 0, 0, 0, 0xaa}, now, 0, ctx, out);
  ++g_bursts;
  g_packets += n;
}

template <int N = kBurst>
void Run(benchmark::State& state, const uint8_t* dst, const std::vector<uint32_t>& order,
         uint8_t tcp_flags, Lcore& lcore, const ForwardingState& fs, uint32_t cycle_seconds = 0) {
  Burst<N> b;
  BurstOutput out;
  // The worker applies each generation's timeouts to its flow table; so does the benchmark.
  if (!lcore.ctx.flows->SetTimeouts(fs.timeouts()).ok()) std::abort();
  // Each run starts over at the first tuple: with a cycle, the previous runs' flows expire.
  lcore.now += cycle_seconds;
  size_t pos = 0;
  for (auto _ : state) {
    b.Restore(dst, &order[pos], tcp_flags);
    Process(fs, b.m, N, lcore.now, lcore.ctx, out);
    benchmark::DoNotOptimize(out.n_tx + out.n_kernel);
    pos += N;
    if (pos + N > order.size()) {
      pos = 0;
      lcore.now += cycle_seconds;
    }
  }
  if (out.n_tx + out.n_kernel != N) state.SkipWithError("packets were dropped");
  Report(state, N);
}

void BM_Established_Hot(benchmark::State& state) {
  static Lcore lcore(1 << 16);
  static const auto fs = State();
  const std::vector<uint32_t> one(kBurst, 7);
  Run(state, kVip, one, 0x10, lcore, *fs);
}
BENCHMARK(BM_Established_Hot);

// 32 tracked flows, every packet of a burst another one: a cached hit for each packet, without the
// runs of one flow that the hot case is (pipeline.cc takes a repeat of the previous packet's flow
// without a lookup; docs/dataplane.md "Runs of a flow").
void BM_Established_HotInterleaved(benchmark::State& state) {
  static Lcore lcore(1 << 16);
  static const auto fs = State();
  static const std::vector<uint32_t> flows = [] {
    std::vector<uint32_t> f(kBurst);
    for (int i = 0; i < kBurst; ++i) f[i] = static_cast<uint32_t>(i);
    Burst b;  // tracked first, a SYN each
    BurstOutput out;
    b.Restore(kVip, f.data(), 0x02);
    Process(*fs, b.m, kBurst, lcore.now, lcore.ctx, out);
    return f;
  }();
  Run(state, kVip, flows, 0x10, lcore, *fs);
}
BENCHMARK(BM_Established_HotInterleaved);

// 1 Mi flows in a table of 4 Mi (the load docs/flow-table.md recommends), all tracked (a SYN
// each, outside the timing), and the random order they are then sent in. Shared by the cases
// that differ only in burst size.
struct ManyFlows {
  Lcore lcore{kManyFlowsCapacity};
  std::unique_ptr<ForwardingState> fs = State();
  std::vector<uint32_t> order = std::vector<uint32_t>(kManyFlows);
  ManyFlows() {
    for (uint32_t i = 0; i < kManyFlows; ++i) order[i] = i;
    std::shuffle(order.begin(), order.end(), std::mt19937(1));
    Burst b;
    BurstOutput out;
    for (size_t i = 0; i < order.size(); i += kBurst) {
      b.Restore(kVip, &order[i], 0x02);
      Process(*fs, b.m, kBurst, 10, lcore.ctx, out);
    }
    std::shuffle(order.begin(), order.end(), std::mt19937(2));
  }
};

template <int N>
void BM_Established_1M_RandomOrder(benchmark::State& state) {
  static ManyFlows w;
  Run<N>(state, kVip, w.order, 0x10, w.lcore, *w.fs);
  state.counters["flows"] = static_cast<double>(w.lcore.flows.table().used());
}
BENCHMARK(BM_Established_1M_RandomOrder<kBurst>)->Name("BM_Established_1M_RandomOrder");
// The same in bursts of 64, fulcrumd's default RX burst (docs/dataplane.md "Burst size"): a
// stage that waits for memory waits once a burst for its last lines, spread over twice the
// packets.
BENCHMARK(BM_Established_1M_RandomOrder<64>)->Name("BM_Established_1M_RandomOrder_Burst64");

void BM_NewFlowEveryPacket(benchmark::State& state) {
  // 1 Mi distinct tuples, cycled; the TCP timeout of 1 s and a clock that advances 2 s per
  // cycle make every packet a miss and an insert into an expired way.
  static Lcore lcore(kManyFlowsCapacity);
  static const auto fs = State(/*tcp_timeout_s=*/1);
  static std::vector<uint32_t> order = [] {
    std::vector<uint32_t> o(kManyFlows);
    for (uint32_t i = 0; i < kManyFlows; ++i) o[i] = i;
    std::shuffle(o.begin(), o.end(), std::mt19937(3));
    return o;
  }();
  auto& new_flows = lcore.stats->counters[static_cast<size_t>(shm::LcoreCounter::kNewFlows)];
  const uint64_t before = new_flows.load();
  Run(state, kVip, order, 0x10, lcore, *fs, /*cycle_seconds=*/2);
  const double share = static_cast<double>(new_flows.load() - before) /
                       static_cast<double>(state.iterations() * kBurst);
  state.counters["new_flow_share"] = share;
  // The first pass over the tuples inserts into empty ways, later ones into expired ways: every
  // packet a new flow, or the benchmark measures something else.
  if (share < 0.99) state.SkipWithError("not every packet was a new flow");
}
BENCHMARK(BM_NewFlowEveryPacket);

void BM_NotForAVip(benchmark::State& state) {
  static Lcore lcore(1 << 16);
  static const auto fs = State();
  std::vector<uint32_t> flows(4096);
  for (uint32_t i = 0; i < flows.size(); ++i) flows[i] = i;
  Run(state, kHost, flows, 0x10, lcore, *fs);
}
BENCHMARK(BM_NotForAVip);

bool HugepagesFree() {
  if (std::getenv("FULCRUM_NO_HUGE") != nullptr) return false;  // e.g. under valgrind
  std::ifstream in("/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages");
  int free = 0;
  in >> free;
  return free >= 64 && std::filesystem::exists("/dev/hugepages");
}

}  // namespace
}  // namespace fulcrum

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  const std::string prefix = "fulcrum_pipeline_bench_" + std::to_string(getpid());
  fulcrum::g_hugepages = fulcrum::HugepagesFree();
  std::vector<std::string> args = {
      "pipeline_bench",         "-l", "0", "--no-pci", "--no-telemetry", "--log-level=error",
      "--file-prefix=" + prefix};
  if (fulcrum::g_hugepages) {
    args.insert(args.end(), {"--in-memory", "-m", "256"});
  } else {
    args.insert(args.end(), {"--no-huge", "-m", "256", "--no-shconf"});
  }
  std::vector<char*> argv_eal;
  for (std::string& a : args) argv_eal.push_back(a.data());
  if (rte_eal_init(static_cast<int>(argv_eal.size()), argv_eal.data()) < 0) {
    std::fprintf(stderr, "rte_eal_init: %s\n", rte_strerror(rte_errno));
    return 1;
  }
  fulcrum::g_pool =
      rte_pktmbuf_pool_create("bench_mbufs", 1023, 0, 0, RTE_MBUF_DEFAULT_BUF_SIZE, 0);
  std::printf("mbufs in %s\n", fulcrum::g_hugepages ? "hugepages" : "--no-huge memory");
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  // valgrind --tool=callgrind --toggle-collect='fulcrum::ProcessBurst(*BurstOutput&)' divides
  // by this (docs/dataplane.md "Cost").
  if (std::getenv("FULCRUM_PRINT_BURSTS") != nullptr) {
    std::printf("bursts %lu packets %lu\n", static_cast<unsigned long>(fulcrum::g_bursts),
                static_cast<unsigned long>(fulcrum::g_packets));
  }
  rte_eal_cleanup();
  std::error_code ec;
  std::filesystem::remove_all("/var/run/dpdk/" + prefix, ec);
  return 0;
}
