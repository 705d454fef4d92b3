// Maglev table build time, against the paper's Pseudocode 1 implemented literally (same run).
#include <benchmark/benchmark.h>

#include <cstdint>
#include <vector>

#include "dataplane/core/maglev.h"
#include "tests/unit/maglev_testing.h"

namespace fulcrum {
namespace {

// Reference: NSDI 2016 Pseudocode 1 as printed, with the permutation precomputed per backend
// (offset, skip) and entries initialised to -1; equal weights only.
std::vector<int32_t> PaperPopulate(const std::vector<std::pair<uint32_t, uint32_t>>& perm,
                                   uint32_t m) {
  const size_t n = perm.size();
  std::vector<uint32_t> next(n, 0);
  std::vector<int32_t> entry(m, -1);
  uint32_t filled = 0;
  while (true) {
    for (size_t i = 0; i < n; ++i) {
      uint32_t c = static_cast<uint32_t>((perm[i].first + uint64_t{next[i]} * perm[i].second) % m);
      while (entry[c] >= 0) {
        ++next[i];
        c = static_cast<uint32_t>((perm[i].first + uint64_t{next[i]} * perm[i].second) % m);
      }
      entry[c] = static_cast<int32_t>(i);
      ++next[i];
      if (++filled == m) return entry;
    }
  }
}

void BM_MaglevBuild(benchmark::State& state) {
  const auto m = static_cast<uint32_t>(state.range(0));
  const auto backends = testing::GenerateBackends(static_cast<uint32_t>(state.range(1)), 0);
  for (auto _ : state) {
    auto table = BuildMaglevTable(backends, m);
    benchmark::DoNotOptimize(table->slots.data());
  }
}

void BM_MaglevBuildWeighted(benchmark::State& state) {
  const auto m = static_cast<uint32_t>(state.range(0));
  auto backends = testing::GenerateBackends(static_cast<uint32_t>(state.range(1)), 0);
  for (uint32_t i = 0; i < backends.size(); ++i) backends[i].weight = 1 + i % 10;
  for (auto _ : state) {
    auto table = BuildMaglevTable(backends, m);
    benchmark::DoNotOptimize(table->slots.data());
  }
}

void BM_PaperReference(benchmark::State& state) {
  const auto m = static_cast<uint32_t>(state.range(0));
  std::vector<std::pair<uint32_t, uint32_t>> perm;
  for (int64_t i = 0; i < state.range(1); ++i) {
    perm.emplace_back(static_cast<uint32_t>(i * 7919 % m),
                      static_cast<uint32_t>(i * 104729 % (m - 1) + 1));
  }
  for (auto _ : state) benchmark::DoNotOptimize(PaperPopulate(perm, m).data());
}

#define MAGLEV_SIZES         \
  ArgNames({"M", "N"})       \
      ->Args({65537, 10})    \
      ->Args({65537, 100})   \
      ->Args({65537, 1000})  \
      ->Args({655373, 1000}) \
      ->Unit(benchmark::kMillisecond)
BENCHMARK(BM_MaglevBuild)->MAGLEV_SIZES;
BENCHMARK(BM_MaglevBuildWeighted)->MAGLEV_SIZES;
BENCHMARK(BM_PaperReference)->MAGLEV_SIZES;

}  // namespace
}  // namespace fulcrum

BENCHMARK_MAIN();
