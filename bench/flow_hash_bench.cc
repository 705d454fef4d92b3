// Flow hash cost per 5-tuple, against DPDK's jhash (Katran's hash) and hardware CRC32C.
#include <benchmark/benchmark.h>
#include <rte_hash_crc.h>
#include <rte_jhash.h>

#include <random>
#include <vector>

#include "dataplane/core/flow_hash.h"

namespace fulcrum {
namespace {

constexpr size_t kTuples = 1024;  // fits in L1/L2: this measures the hash, not memory

std::vector<FlowTuple> RandomTuples(bool v6) {
  std::mt19937_64 rng(1);
  std::vector<FlowTuple> tuples(kTuples);
  for (FlowTuple& t : tuples) {
    for (auto& b : t.src) b = static_cast<uint8_t>(rng());
    for (auto& b : t.dst) b = static_cast<uint8_t>(rng());
    if (!v6)
      std::fill(t.src.begin() + 4, t.src.end(), 0), std::fill(t.dst.begin() + 4, t.dst.end(), 0);
    t.src_port = static_cast<uint16_t>(rng());
    t.dst_port = 443;
    t.proto = 6;
    t.v6 = v6;
  }
  return tuples;
}

void Report(benchmark::State& state) {
  state.counters["ns_per_tuple"] =
      benchmark::Counter(static_cast<double>(state.iterations() * kTuples),
                         benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}

// One pass over the tuples, kept out of line so that every hash is compiled in the same small
// loop, away from the benchmark framework's register pressure.
template <typename HashFn>
[[gnu::noinline]] uint64_t HashAll(const std::vector<FlowTuple>& tuples, HashFn hash) {
  uint64_t acc = 0;
  for (const FlowTuple& t : tuples) acc += hash(t);
  return acc;
}

template <typename HashFn>
void RunHash(benchmark::State& state, HashFn hash) {
  const auto tuples = RandomTuples(state.range(0) == 6);
  for (auto _ : state) benchmark::DoNotOptimize(HashAll(tuples, hash));
  Report(state);
}

void BM_FlowHash(benchmark::State& state) {
  const FlowHashKey key{0x0123456789abcdefull, 0xfedcba9876543210ull};
  RunHash(state, [&](const FlowTuple& t) { return FlowHash(t, key); });
}

// References called the way their users call them, on the tuple's own words: Katran hashes
// with jhash_2words/3words (jhash over the 16-byte address first for IPv6); a CRC design chains
// 8-byte hardware CRC32C steps (two for IPv4, five for IPv6).
inline uint32_t Word(const std::array<uint8_t, 16>& a, int i) {
  uint32_t w;
  std::memcpy(&w, a.data() + 4 * i, 4);
  return w;
}
inline uint64_t Qword(const std::array<uint8_t, 16>& a, int i) {
  uint64_t w;
  std::memcpy(&w, a.data() + 8 * i, 8);
  return w;
}

void BM_ReferenceJhash(benchmark::State& state) {
  RunHash(state, [](const FlowTuple& t) {
    const uint32_t ports = uint32_t{t.src_port} << 16 | t.dst_port;
    if (!t.v6) return rte_jhash_3words(Word(t.src, 0), Word(t.dst, 0), ports, t.proto);
    const uint32_t src = rte_jhash(t.src.data(), 16, t.proto);
    return rte_jhash_2words(src, ports, rte_jhash(t.dst.data(), 16, 0));
  });
}

void BM_ReferenceCrc32c(benchmark::State& state) {
  RunHash(state, [](const FlowTuple& t) {
    const uint64_t ports = uint64_t{t.src_port} << 16 | t.dst_port | uint64_t{t.proto} << 32;
    if (!t.v6) {
      return rte_hash_crc_8byte(
          ports, rte_hash_crc_8byte(Qword(t.src, 0) | Qword(t.dst, 0) << 32, 0x5eed));
    }
    uint32_t h = rte_hash_crc_8byte(Qword(t.src, 0), 0x5eed);
    h = rte_hash_crc_8byte(Qword(t.src, 1), h);
    h = rte_hash_crc_8byte(Qword(t.dst, 0), h);
    h = rte_hash_crc_8byte(Qword(t.dst, 1), h);
    return rte_hash_crc_8byte(ports, h);
  });
}

BENCHMARK(BM_FlowHash)->ArgName("ipv")->Arg(4)->Arg(6);
BENCHMARK(BM_ReferenceJhash)->ArgName("ipv")->Arg(4)->Arg(6);
BENCHMARK(BM_ReferenceCrc32c)->ArgName("ipv")->Arg(4)->Arg(6);

}  // namespace
}  // namespace fulcrum

BENCHMARK_MAIN();
