// FlowTable costs (batched hits and misses, inserts, insert-failure rates) against DPDK rte_hash.
//
// Keys are random IPv4 5-tuples (TCP or UDP); the V6 rows repeat the hit lookups with random
// IPv6 keys. The lookup benchmarks fill a table created for 1 Mi or 16 Mi flows with kLoad
// times that many flows (the table rounds its capacity up to 3 times a power of two, 1.5 Mi
// and 24 Mi, so its own load is a third), then look the inserted keys up in random order, 32
// at a time with their precomputed FlowHash, as the pipeline does. The reference is rte_hash
// (DPDK's cuckoo table) created for the same capacity, holding the same keys, looked up in the
// same order, in this same process: the machines are shared and noisy, and only a ratio from
// one run means much. The summary at the end prints medians side by side and the ratios.
//
// Memory: rte_hash lives in the EAL heap, which under --no-huge is a memfd with 4 KiB pages
// (shmem never gets transparent huge pages here). So the same-memory comparison places a
// FlowTable in that heap too (rte_malloc: also the data plane's way of placing it); a second
// FlowTable in MmapFlowTable's anonymous memory shows what 2 MiB pages add (what production,
// with hugepages for both tables, gets).
//
// Run: build/bench/flow_table_bench   (60-75 s here; 3.6 GiB resident; no root, no hugepages)
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_hash.h>
#include <rte_hash_crc.h>
#include <rte_lcore.h>
#include <rte_malloc.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <numeric>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "benchmark/benchmark.h"
#include "dataplane/core/flow_hash.h"
#include "dataplane/core/flow_table.h"

namespace fulcrum {
namespace {

constexpr FlowHashKey kKey{0x0123456789abcdefull, 0xfedcba9876543210ull};
constexpr size_t kBurst = 32;
constexpr double kLoad = 0.5;  // flows / requested capacity in the lookup and insert benchmarks
constexpr uint32_t kNow = 1000;
constexpr uint64_t k1M = uint64_t{1} << 20;
constexpr uint64_t k16M = uint64_t{1} << 24;

enum class Mem { kEalHeap, kThp };

// rte_hash's copy of a key: the same 38 bytes, 8-byte aligned, because rte_hash_crc reads
// 8-byte words (FlowTuple is only 2-byte aligned; UBSan flags the misaligned loads).
struct alignas(8) RteKey {
  FlowTuple tuple;
};

struct Keys {
  std::vector<FlowTuple> tuples;
  std::vector<uint64_t> hashes;
  std::vector<RteKey> rte_keys;
  std::vector<uint32_t> crc;      // rte_hash's own hash of each key, for the with_hash variant
  std::vector<const void*> ptrs;  // into rte_keys

  size_t size() const { return tuples.size(); }
  void Add(const FlowTuple& t) {
    tuples.push_back(t);
    hashes.push_back(FlowHash(t, kKey));
  }
  void Finish() {  // once the vectors stop growing
    rte_keys.resize(tuples.size());
    crc.resize(tuples.size());
    ptrs.resize(tuples.size());
    for (size_t i = 0; i < tuples.size(); ++i) {
      rte_keys[i].tuple = tuples[i];
      crc[i] = rte_hash_crc(&rte_keys[i], sizeof(FlowTuple), 0);
      ptrs[i] = &rte_keys[i];
    }
  }
};

FlowTuple RandomTuple(std::mt19937_64& rng, bool v6 = false) {
  FlowTuple t;
  if (v6) {
    for (auto* addr : {&t.src, &t.dst}) {
      const uint64_t w[2] = {rng(), rng()};
      std::memcpy(addr->data(), w, 16);
    }
    t.v6 = true;
  } else {
    const uint64_t a = rng();
    std::memcpy(t.src.data(), &a, 4);
    std::memcpy(t.dst.data(), reinterpret_cast<const char*>(&a) + 4, 4);
  }
  const uint64_t b = rng();
  t.src_port = static_cast<uint16_t>(b);
  t.dst_port = static_cast<uint16_t>(b >> 16);
  t.proto = (b >> 32 & 1) != 0 ? 6 : 17;
  return t;
}

uint64_t AnonHugeKiB() {
  std::ifstream in("/proc/self/smaps_rollup");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("AnonHugePages:", 0) == 0) return std::stoull(line.substr(14));
  }
  return 0;
}

[[noreturn]] void Die(const std::string& what) {
  std::fprintf(stderr, "flow_table_bench: %s\n", what.c_str());
  std::exit(1);
}

// One capacity's tables and keys, built once and shared by that capacity's benchmarks.
struct World {
  uint64_t capacity = 0;
  bool v6 = false;  // IPv6 keys, and no rte_hash (only the FlowTable hit rows use them)
  std::unique_ptr<MmapFlowTable> thp;
  void* heap_memory = nullptr;
  std::optional<FlowTable> heap;
  rte_hash* rte = nullptr;
  Keys present;  // in all three tables, in random lookup order
  Keys absent;   // in none
  uint64_t fill_failures = 0;

  FlowTable& table(Mem mem) { return mem == Mem::kThp ? thp->table() : *heap; }
  ~World() {
    heap.reset();
    rte_free(heap_memory);
    rte_hash_free(rte);
  }
};

std::unique_ptr<World> world;

World& GetWorld(uint64_t capacity, bool v6 = false) {
  if (world != nullptr && world->capacity == capacity && world->v6 == v6) return *world;
  world.reset();  // the previous world's memory first: 16 M needs about 3.5 GiB
  auto w = std::make_unique<World>();
  w->capacity = capacity;
  w->v6 = v6;
  absl::StatusOr<MmapFlowTable> thp = MmapFlowTable::Create(capacity);
  if (!thp.ok()) Die(thp.status().ToString());
  w->thp = std::make_unique<MmapFlowTable>(*std::move(thp));
  const size_t bytes = *FlowTable::BytesNeeded(capacity);
  w->heap_memory = rte_malloc_socket("flow_table", bytes, FlowTable::kAlignment,
                                     static_cast<int>(rte_socket_id()));
  if (w->heap_memory == nullptr) Die("rte_malloc of " + std::to_string(bytes) + " bytes failed");
  absl::StatusOr<FlowTable> heap = FlowTable::Create(w->heap_memory, bytes, capacity);
  if (!heap.ok()) Die(heap.status().ToString());
  w->heap.emplace(*std::move(heap));

  std::mt19937_64 rng(capacity);
  const auto n = static_cast<uint64_t>(static_cast<double>(capacity) * kLoad);
  Keys all;
  all.tuples.reserve(n);
  all.hashes.reserve(n);
  for (uint64_t i = 0; i < n; ++i) all.Add(RandomTuple(rng, v6));
  std::vector<uint32_t> ok;
  ok.reserve(n);
  for (uint32_t i = 0; i < n; ++i) {
    const uint32_t backend = i & FlowTable::kMaxBackend;
    const FlowInsertResult r = w->thp->table().Insert(all.tuples[i], all.hashes[i], backend, kNow);
    w->heap->Insert(all.tuples[i], all.hashes[i], backend, kNow);  // same keys, same layout
    if (r.status == FlowInsert::kInserted) ok.push_back(i);
    w->fill_failures += r.status == FlowInsert::kFull;
  }
  std::shuffle(ok.begin(), ok.end(), rng);
  ok.resize(ok.size() / kBurst * kBurst);
  w->present.tuples.reserve(ok.size());
  w->present.hashes.reserve(ok.size());
  for (uint32_t i : ok) w->present.Add(all.tuples[i]);
  all = Keys();
  w->present.Finish();
  const uint64_t n_absent = std::min<uint64_t>(n, k1M);
  for (uint64_t i = 0; i < n_absent; ++i) w->absent.Add(RandomTuple(rng, v6));
  w->absent.Finish();
  const uint64_t table_capacity = w->thp->table().capacity();
  if (v6) {
    std::printf("# capacity %lu (%lu), IPv6: %zu flows present (%lu of %lu inserts failed)\n",
                capacity, table_capacity, w->present.size(), w->fill_failures, n);
    world = std::move(w);
    return *world;
  }

  const std::string name = "ft_bench_" + std::to_string(capacity);
  rte_hash_parameters params{};
  params.name = name.c_str();
  params.entries = static_cast<uint32_t>(capacity);
  params.key_len = sizeof(FlowTuple);
  params.hash_func = rte_hash_crc;
  params.socket_id = static_cast<int>(rte_socket_id());
  w->rte = rte_hash_create(&params);
  if (w->rte == nullptr) Die(std::string("rte_hash_create: ") + rte_strerror(rte_errno));
  // Add in an order unrelated to the lookup order: rte_hash hands out key-store slots in
  // insertion order, and adding in lookup order would turn its key reads into a sequential
  // stream (that mistake made it look twice as fast at 1 M).
  std::vector<uint32_t> add_order(w->present.size());
  std::iota(add_order.begin(), add_order.end(), 0);
  std::shuffle(add_order.begin(), add_order.end(), rng);
  for (uint32_t i : add_order) {
    const FlowRef ref = w->thp->table().Lookup(w->present.tuples[i], w->present.hashes[i], kNow);
    void* data = reinterpret_cast<void*>(uintptr_t{w->thp->table().Backend(ref)});
    const int rc =
        rte_hash_add_key_with_hash_data(w->rte, w->present.ptrs[i], w->present.crc[i], data);
    if (rc != 0) Die("rte_hash_add_key_with_hash_data: " + std::to_string(rc));
  }
  std::printf(
      "# capacity %lu (FlowTable: %lu): %zu flows present (%lu of %lu inserts failed); "
      "FlowTable %zu MiB each; AnonHugePages %lu MiB\n",
      capacity, table_capacity, w->present.size(), w->fill_failures, n, bytes >> 20,
      AnonHugeKiB() >> 10);
  world = std::move(w);
  return *world;
}

void PerKeyCounters(benchmark::State& state, size_t keys_per_iteration) {
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * keys_per_iteration));
  state.counters["keys"] = static_cast<double>(keys_per_iteration);  // read by the summary
}

template <FlowPrefetch kPrefetch>
void BM_FlowTableHitBurst(benchmark::State& state, Mem mem, bool v6) {
  World& w = GetWorld(static_cast<uint64_t>(state.range(0)), v6);
  const FlowTable& t = w.table(mem);
  FlowRef refs[kBurst];
  const size_t n = w.present.size();
  // Correctness once, outside the timing: every key hits, with the backend it was given.
  for (size_t pos = 0; pos < n; pos += kBurst) {
    t.LookupBurst<kPrefetch>({&w.present.tuples[pos], kBurst}, {&w.present.hashes[pos], kBurst},
                             kNow, refs);
    for (const FlowRef& r : refs) {
      if (!r.hit()) state.SkipWithError("a present key missed");
    }
  }
  size_t pos = 0;
  for (auto _ : state) {
    t.LookupBurst<kPrefetch>({&w.present.tuples[pos], kBurst}, {&w.present.hashes[pos], kBurst},
                             kNow, refs);
    uint32_t sum = 0;
    for (const FlowRef& r : refs) sum += t.Backend(r);  // the pipeline reads every backend
    benchmark::DoNotOptimize(sum);
    pos += kBurst;
    if (pos == n) pos = 0;
  }
  PerKeyCounters(state, kBurst);
}

void BM_FlowTableHitOneByOne(benchmark::State& state, Mem mem) {
  World& w = GetWorld(static_cast<uint64_t>(state.range(0)));
  const FlowTable& t = w.table(mem);
  const size_t n = w.present.size();
  size_t pos = 0;
  for (auto _ : state) {
    uint32_t sum = 0;
    for (size_t i = 0; i < kBurst; ++i) {
      sum += t.Backend(t.Lookup(w.present.tuples[pos + i], w.present.hashes[pos + i], kNow));
    }
    benchmark::DoNotOptimize(sum);
    pos += kBurst;
    if (pos == n) pos = 0;
  }
  PerKeyCounters(state, kBurst);
}

void BM_FlowTableMissBurst(benchmark::State& state, Mem mem) {
  World& w = GetWorld(static_cast<uint64_t>(state.range(0)));
  const FlowTable& t = w.table(mem);
  FlowRef refs[kBurst];
  const size_t n = w.absent.size() / kBurst * kBurst;
  size_t pos = 0;
  for (auto _ : state) {
    t.LookupBurst({&w.absent.tuples[pos], kBurst}, {&w.absent.hashes[pos], kBurst}, kNow, refs);
    benchmark::DoNotOptimize(refs);
    pos += kBurst;
    if (pos == n) pos = 0;
  }
  PerKeyCounters(state, kBurst);
}

// New flows as the pipeline handles them: a burst lookup that misses, then an insert per key
// (kLookupFirst), or inserts alone. Each iteration inserts 4096 new flows; they are removed
// with the clock stopped, so the table stays at kLoad.
template <bool kLookupFirst>
void BM_FlowTableInsert(benchmark::State& state, Mem mem) {
  World& w = GetWorld(static_cast<uint64_t>(state.range(0)));
  FlowTable& t = w.table(mem);
  constexpr size_t kChunk = 4096;
  const size_t n = w.absent.size() / kChunk * kChunk;
  std::vector<FlowRef> inserted(kChunk);
  FlowRef refs[kBurst];
  size_t pos = 0;
  uint64_t full = 0;
  for (auto _ : state) {
    for (size_t b = 0; b < kChunk; b += kBurst) {
      const FlowTuple* keys = &w.absent.tuples[pos + b];
      const uint64_t* hashes = &w.absent.hashes[pos + b];
      if constexpr (kLookupFirst) {
        t.LookupBurst({keys, kBurst}, {hashes, kBurst}, kNow, refs);
        benchmark::DoNotOptimize(refs);
      }
      for (size_t i = 0; i < kBurst; ++i) {
        const FlowInsertResult r = t.Insert(keys[i], hashes[i], 1, kNow);
        inserted[b + i] = r.status == FlowInsert::kInserted ? r.ref : FlowRef{};
        full += r.status == FlowInsert::kFull;
      }
    }
    state.PauseTiming();
    for (const FlowRef& r : inserted) {
      if (r.hit()) t.Remove(r);
    }
    pos += kChunk;
    if (pos == n) pos = 0;
    state.ResumeTiming();
  }
  PerKeyCounters(state, kChunk);
  state.counters["full_%"] =
      100.0 * static_cast<double>(full) / static_cast<double>(state.iterations() * kChunk);
}

template <bool kWithHash>
void BM_RteHashHitBurst(benchmark::State& state) {
  World& w = GetWorld(static_cast<uint64_t>(state.range(0)));
  void* data[kBurst];
  uint64_t hit_mask = 0;
  const size_t n = w.present.size();
  size_t pos = 0;
  for (auto _ : state) {
    int hits;
    if constexpr (kWithHash) {
      hits = rte_hash_lookup_with_hash_bulk_data(w.rte, &w.present.ptrs[pos], &w.present.crc[pos],
                                                 kBurst, &hit_mask, data);
    } else {
      hits = rte_hash_lookup_bulk_data(w.rte, &w.present.ptrs[pos], kBurst, &hit_mask, data);
    }
    if (hits != static_cast<int>(kBurst)) state.SkipWithError("rte_hash: a present key missed");
    uintptr_t sum = 0;
    for (void* d : data) sum += reinterpret_cast<uintptr_t>(d);
    benchmark::DoNotOptimize(sum);
    pos += kBurst;
    if (pos == n) pos = 0;
  }
  PerKeyCounters(state, kBurst);
}

void BM_RteHashMissBurst(benchmark::State& state) {
  World& w = GetWorld(static_cast<uint64_t>(state.range(0)));
  void* data[kBurst];
  uint64_t hit_mask = 0;
  const size_t n = w.absent.size() / kBurst * kBurst;
  size_t pos = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(
        rte_hash_lookup_bulk_data(w.rte, &w.absent.ptrs[pos], kBurst, &hit_mask, data));
    pos += kBurst;
    if (pos == n) pos = 0;
  }
  PerKeyCounters(state, kBurst);
}

// The background work: Sweep over a table where nothing has expired (the common case: the
// scan is the cost), per group; and one CountLive over the whole table.
void BM_FlowTableSweep(benchmark::State& state, Mem mem) {
  World& w = GetWorld(static_cast<uint64_t>(state.range(0)));
  FlowTable& t = w.table(mem);
  constexpr uint32_t kGroups = 4096;
  for (auto _ : state) benchmark::DoNotOptimize(t.Sweep(kNow, kGroups));
  PerKeyCounters(state, kGroups);
}

void BM_FlowTableCountLive(benchmark::State& state, Mem mem) {
  World& w = GetWorld(static_cast<uint64_t>(state.range(0)));
  const FlowTable& t = w.table(mem);
  uint64_t live = 0;
  for (auto _ : state) live = t.CountLive(kNow);
  state.counters["live"] = static_cast<double>(live);
}

// The fraction of inserts that fail at a load factor (flows / the table's capacity, 1.5 Mi
// here: a table created for 1 Mi), in two regimes: filling
// an empty table to the load, and then churn at that load (a random flow ends, a new one
// starts; flows whose insert failed still count toward the load, as they are still being
// forwarded). Churn is the steady state of a running load balancer: size tables by it.
void BM_FlowTableInsertFailure(benchmark::State& state) {
  world.reset();
  const double load = static_cast<double>(state.range(0)) / 1000.0;
  for (auto _ : state) {
    MmapFlowTable t = *MmapFlowTable::Create(k1M);
    std::mt19937_64 rng(static_cast<uint64_t>(state.range(0)));
    const auto n = static_cast<size_t>(load * static_cast<double>(t->capacity()));
    std::vector<FlowRef> offered(n);
    uint64_t fill_full = 0;
    for (size_t i = 0; i < n; ++i) {
      const FlowTuple k = RandomTuple(rng);
      const FlowInsertResult r = t->Insert(k, FlowHash(k, kKey), 1, kNow);
      offered[i] = r.status == FlowInsert::kInserted ? r.ref : FlowRef{};
      fill_full += r.status == FlowInsert::kFull;
    }
    const size_t steps = 2 * n;
    uint64_t churn_full = 0;
    for (size_t s = 0; s < steps; ++s) {
      FlowRef& victim = offered[rng() % n];
      if (victim.hit()) t->Remove(victim);
      const FlowTuple k = RandomTuple(rng);
      const FlowInsertResult r = t->Insert(k, FlowHash(k, kKey), 1, kNow);
      victim = r.status == FlowInsert::kInserted ? r.ref : FlowRef{};
      churn_full += r.status == FlowInsert::kFull;
    }
    state.counters["load"] = load;
    state.counters["fill_fail_%"] = 100.0 * static_cast<double>(fill_full) / static_cast<double>(n);
    state.counters["churn_fail_%"] =
        100.0 * static_cast<double>(churn_full) / static_cast<double>(steps);
    state.counters["used_%"] =
        100.0 * static_cast<double>(t->used()) / static_cast<double>(t->capacity());
  }
}

// The alternative the overflow replaced, for comparison: plain buckets of `ways` as in VPP's
// lbhash.h (an insert fails as soon as the home group is full), with the capacity the table
// gets when created for 1 Mi (1.5 Mi for 3 ways, 1 Mi for 4). A model of bucket occupancy
// only, under the same random fill and churn as BM_FlowTableInsertFailure; the same kind of
// model with overflow (not kept) matched the real table's figures to within a few percent.
void BM_PlainModelInsertFailure(benchmark::State& state, uint32_t ways) {
  const double load = static_cast<double>(state.range(0)) / 1000.0;
  const uint32_t groups = ways == 3 ? uint32_t{1} << 19 : uint32_t{1} << 18;
  for (auto _ : state) {
    std::vector<uint8_t> live(groups, 0);
    std::mt19937_64 rng(static_cast<uint64_t>(state.range(0)));
    auto insert = [&]() -> int64_t {
      const auto g = static_cast<uint32_t>(rng() % groups);
      if (live[g] == ways) return -1;
      ++live[g];
      return g;
    };
    const auto n = static_cast<size_t>(load * static_cast<double>(uint64_t{ways} * groups));
    std::vector<int64_t> offered(n);
    uint64_t fill_full = 0;
    for (size_t i = 0; i < n; ++i) {
      offered[i] = insert();
      fill_full += offered[i] < 0;
    }
    const size_t steps = 2 * n;
    uint64_t churn_full = 0;
    for (size_t s = 0; s < steps; ++s) {
      int64_t& victim = offered[rng() % n];
      if (victim >= 0) --live[static_cast<size_t>(victim)];
      victim = insert();
      churn_full += victim < 0;
    }
    state.counters["load"] = load;
    state.counters["fill_fail_%"] = 100.0 * static_cast<double>(fill_full) / static_cast<double>(n);
    state.counters["churn_fail_%"] =
        100.0 * static_cast<double>(churn_full) / static_cast<double>(steps);
  }
}

// --- Summary: medians side by side and the ratios to rte_hash, from this run. -------------

constexpr const char* kRows[] = {
    "FlowTable/HitBurst/heap4K",
    "FlowTable/HitBurstWholeGroup/heap4K",
    "FlowTable/HitBurst/thp",
    "FlowTable/HitBurstWholeGroup/thp",
    "FlowTable/HitBurstV6/thp",
    "FlowTable/HitBurstWholeGroupV6/thp",
    "FlowTable/HitOneByOne/thp",
    "RteHash/LookupBulkData/heap4K",
    "RteHash/LookupWithHashBulkData/heap4K",
    "FlowTable/MissBurst/heap4K",
    "FlowTable/MissBurst/thp",
    "RteHash/MissBulkData/heap4K",
    "FlowTable/Insert/thp",
    "FlowTable/MissBurstThenInsert/thp",
    "FlowTable/SweepPerGroup/thp",
};

class SummaryReporter : public benchmark::ConsoleReporter {
 public:
  void ReportRuns(const std::vector<Run>& runs) override {
    for (const Run& run : runs) {
      if (run.aggregate_name != "median" || run.counters.count("keys") == 0) continue;
      ns_per_key_[run.run_name.function_name + "/" + run.run_name.args] =
          run.GetAdjustedRealTime() / run.counters.at("keys").value;
    }
    ConsoleReporter::ReportRuns(runs);
  }

  void PrintSummary() const {
    std::printf(
        "\nMedian ns per key (burst %zu, flows = %.2f x the requested capacity, random IPv4 "
        "flows but in the V6 rows), this run:\n",
        kBurst, kLoad);
    std::printf("%-52s %8s %8s\n", "", "1M", "16M");
    for (const char* row : kRows) {
      std::printf("%-52s %8.1f %8.1f\n", row, Get(row, k1M), Get(row, k16M));
    }
    std::printf(
        "%-52s %8.1f %8.1f\n", "insert after a miss (MissThenInsert - MissBurst)",
        Get("FlowTable/MissBurstThenInsert/thp", k1M) - Get("FlowTable/MissBurst/thp", k1M),
        Get("FlowTable/MissBurstThenInsert/thp", k16M) - Get("FlowTable/MissBurst/thp", k16M));
    std::printf("\nRatios, same memory (EAL heap, 4 KiB pages):\n");
    Ratio("FlowTable/HitBurst/heap4K", "RteHash/LookupBulkData/heap4K");
    Ratio("FlowTable/HitBurst/heap4K", "RteHash/LookupWithHashBulkData/heap4K");
    Ratio("FlowTable/MissBurst/heap4K", "RteHash/MissBulkData/heap4K");
    std::printf("Ratio, FlowTable on 2 MiB pages to rte_hash on 4 KiB:\n");
    Ratio("FlowTable/HitBurst/thp", "RteHash/LookupBulkData/heap4K");
  }

 private:
  double Get(const std::string& row, uint64_t capacity) const {
    auto it = ns_per_key_.find(row + "/" + std::to_string(capacity));
    return it == ns_per_key_.end() ? std::nan("") : it->second;
  }
  void Ratio(const std::string& a, const std::string& b) const {
    std::printf("  %-72s %6.2f %6.2f\n", (a + " / " + b).c_str(), Get(a, k1M) / Get(b, k1M),
                Get(a, k16M) / Get(b, k16M));
  }

  std::map<std::string, double> ns_per_key_;
};

// Loads of the insert-failure rows; 167 and 333 are capacity = 6 and 3 x the flows.
constexpr int kLoadsPermille[] = {125, 167, 250, 333, 375, 500, 625, 750, 875, 1000};

void Register() {
  using benchmark::RegisterBenchmark;
  for (uint64_t cap : {k1M, k16M}) {
    auto timed = [cap](benchmark::internal::Benchmark* b) {
      b->Arg(static_cast<int64_t>(cap))
          ->Repetitions(5)
          ->MinTime(cap == k1M ? 0.1 : 0.2)
          ->ReportAggregatesOnly(true);
    };
    for (Mem mem : {Mem::kThp, Mem::kEalHeap}) {
      const std::string m = mem == Mem::kThp ? "/thp" : "/heap4K";
      timed(RegisterBenchmark(("FlowTable/HitBurst" + m).c_str(),
                              BM_FlowTableHitBurst<FlowPrefetch::kBucketThenKey>, mem, false));
      timed(RegisterBenchmark(("FlowTable/HitBurstWholeGroup" + m).c_str(),
                              BM_FlowTableHitBurst<FlowPrefetch::kWholeGroup>, mem, false));
      timed(RegisterBenchmark(("FlowTable/MissBurst" + m).c_str(), BM_FlowTableMissBurst, mem));
    }
    timed(RegisterBenchmark("FlowTable/HitOneByOne/thp", BM_FlowTableHitOneByOne, Mem::kThp));
    timed(RegisterBenchmark("RteHash/LookupBulkData/heap4K", BM_RteHashHitBurst<false>));
    timed(RegisterBenchmark("RteHash/LookupWithHashBulkData/heap4K", BM_RteHashHitBurst<true>));
    timed(RegisterBenchmark("RteHash/MissBulkData/heap4K", BM_RteHashMissBurst));
    timed(RegisterBenchmark("FlowTable/SweepPerGroup/thp", BM_FlowTableSweep, Mem::kThp));
    RegisterBenchmark("FlowTable/CountLive/thp", BM_FlowTableCountLive, Mem::kThp)
        ->Arg(static_cast<int64_t>(cap))
        ->Iterations(3)
        ->Unit(benchmark::kMillisecond);
    timed(RegisterBenchmark("FlowTable/Insert/thp", BM_FlowTableInsert<false>, Mem::kThp));
    timed(RegisterBenchmark("FlowTable/MissBurstThenInsert/thp", BM_FlowTableInsert<true>,
                            Mem::kThp));
    // Last for this capacity: they build the IPv6 world in place of the IPv4 one.
    timed(RegisterBenchmark("FlowTable/HitBurstV6/thp",
                            BM_FlowTableHitBurst<FlowPrefetch::kBucketThenKey>, Mem::kThp, true));
    timed(RegisterBenchmark("FlowTable/HitBurstWholeGroupV6/thp",
                            BM_FlowTableHitBurst<FlowPrefetch::kWholeGroup>, Mem::kThp, true));
  }
  for (int load_permille : kLoadsPermille) {
    RegisterBenchmark("FlowTable/InsertFailure", BM_FlowTableInsertFailure)
        ->Arg(load_permille)
        ->ArgName("load_permille")
        ->Iterations(1)
        ->Unit(benchmark::kMillisecond);
  }
  for (uint32_t ways : {3u, 4u}) {
    const std::string name = ways == 3 ? "PlainThreeWayModel" : "PlainFourWayModel";
    for (int load_permille : kLoadsPermille) {
      RegisterBenchmark((name + "/InsertFailure").c_str(), BM_PlainModelInsertFailure, ways)
          ->Arg(load_permille)
          ->ArgName("load_permille")
          ->Iterations(1)
          ->Unit(benchmark::kMillisecond);
    }
  }
}

}  // namespace
}  // namespace fulcrum

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  const std::string prefix = "fulcrum_ft_bench_" + std::to_string(getpid());
  const std::string file_prefix = "--file-prefix=" + prefix;
  // At 16 Mi: rte_hash about 1 GiB (key store, buckets, free-slot ring) + a FlowTable 768 MiB.
  const char* eal_args[] = {
      "flow_table_bench", "--no-huge",      "-m", "3072", "--no-pci",         file_prefix.c_str(),
      "--no-shconf",      "--no-telemetry", "-l", "0",    "--log-level=error"};
  constexpr int kEalArgc = sizeof(eal_args) / sizeof(eal_args[0]);
  if (rte_eal_init(kEalArgc, const_cast<char**>(eal_args)) < 0) {
    std::fprintf(stderr, "rte_eal_init: %s\n", rte_strerror(rte_errno));
    return 1;
  }
  fulcrum::Register();
  fulcrum::SummaryReporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  reporter.PrintSummary();
  fulcrum::world.reset();
  benchmark::Shutdown();
  rte_eal_cleanup();
  std::error_code ec;
  std::filesystem::remove_all("/var/run/dpdk/" + prefix, ec);
  return 0;
}
