// Maglev: the properties the rest of Fulcrum relies on, one test each.
#include "dataplane/core/maglev.h"

#include <array>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/unit/maglev_testing.h"

namespace fulcrum {
namespace {

using ::fulcrum::testing::Digest;
using ::fulcrum::testing::GenerateBackends;
using ::testing::HasSubstr;

MaglevTable Build(const std::vector<MaglevBackend>& backends, uint32_t m) {
  auto table = BuildMaglevTable(backends, m);
  EXPECT_TRUE(table.ok()) << table.status();
  return table.ok() ? *std::move(table) : MaglevTable{};
}

// Slot -> the owner's identity, for comparing tables built from different backend lists.
std::vector<std::pair<IpAddress, uint16_t>> Owners(const std::vector<MaglevBackend>& backends,
                                                   const MaglevTable& table) {
  std::vector<std::pair<IpAddress, uint16_t>> owners;
  owners.reserve(table.slots.size());
  for (uint32_t s : table.slots) owners.emplace_back(backends[s].address, backends[s].port);
  return owners;
}

TEST(MaglevTest, TableSizeMustBeAPrimeInRange) {
  for (uint64_t ok : {251u, 65537u, 655373u, 16777213u}) {
    EXPECT_TRUE(CheckMaglevTableSize(ok).ok()) << ok;
  }
  EXPECT_THAT(std::string(CheckMaglevTableSize(65536).message()),
              HasSubstr("65536 is not prime; the nearest primes are 65521 or 65537"));
  EXPECT_THAT(std::string(CheckMaglevTableSize(252).message()), HasSubstr("251 or 257"));
  for (uint64_t bad : {0ull, 1ull, 241ull, 16777259ull, 1ull << 32}) {
    const absl::Status s = CheckMaglevTableSize(bad);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_THAT(std::string(s.message()), HasSubstr("out of range")) << bad;
  }
  std::vector<MaglevBackend> one = GenerateBackends(1, 0);
  EXPECT_EQ(BuildMaglevTable(one, 65535).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(MaglevTest, EqualWeightsGiveEveryBackendFloorOrCeilOfMOverN) {
  for (uint32_t m : {251u, 65537u, 655373u}) {
    for (uint32_t n : {1u, 2u, 3u, 7u, 100u, 251u, 1000u}) {
      if (n > m) continue;
      const auto backends = GenerateBackends(n, 0);
      const MaglevTable table = Build(backends, m);
      ASSERT_EQ(table.slots.size(), m);
      std::vector<uint32_t> counted(n, 0);
      for (uint32_t s : table.slots) ++counted[s];
      EXPECT_EQ(counted, table.slot_counts) << "slot_counts disagrees with slots";
      for (uint32_t i = 0; i < n; ++i) {
        EXPECT_TRUE(counted[i] == m / n || counted[i] == m / n + 1)
            << "M=" << m << " N=" << n << " backend " << i << " owns " << counted[i];
      }
    }
  }
}

TEST(MaglevTest, EveryBackendOwnsItsWeightShareWithinOneSlot) {
  std::mt19937 rng(7);
  for (uint32_t m : {251u, 65537u, 655373u}) {
    for (int round = 0; round < 5; ++round) {
      auto backends = GenerateBackends(50, 0);
      uint64_t total = 0;
      for (auto& b : backends)
        total += b.weight = std::uniform_int_distribution<uint32_t>(1, 1000)(rng);
      const MaglevTable table = Build(backends, m);
      for (size_t i = 0; i < backends.size(); ++i) {
        const double exact =
            static_cast<double>(m) * backends[i].weight / static_cast<double>(total);
        EXPECT_LT(std::abs(table.slot_counts[i] - exact), 1.0)
            << "M=" << m << " weight " << backends[i].weight << " owns " << table.slot_counts[i];
      }
    }
  }
}

TEST(MaglevTest, WithMAtLeast100NEveryShareIsWithinOnePercentOfItsWeightShare) {
  struct Case {
    uint32_t n, m, max_weight;
  };
  std::mt19937 rng(11);
  for (const Case c :
       {Case{655, 65537, 1}, Case{100, 65537, 4}, Case{1000, 655373, 3}, Case{6553, 655373, 1}}) {
    ASSERT_GE(c.m, 100 * c.n);
    auto backends = GenerateBackends(c.n, 0);
    uint64_t total = 0;
    for (auto& b : backends) {
      total += b.weight = std::uniform_int_distribution<uint32_t>(1, c.max_weight)(rng);
    }
    const MaglevTable table = Build(backends, c.m);
    double worst = 0;
    for (size_t i = 0; i < backends.size(); ++i) {
      const double share = static_cast<double>(table.slot_counts[i]) / c.m;
      const double weight_share =
          static_cast<double>(backends[i].weight) / static_cast<double>(total);
      worst = std::max(worst, std::abs(share / weight_share - 1));
    }
    EXPECT_LE(worst, 0.01) << "N=" << c.n << " M=" << c.m;
  }
}

TEST(MaglevTest, ZeroWeightAndInactiveBackendsOwnNoSlots) {
  auto backends = GenerateBackends(10, 0);
  backends[3].weight = 0;
  backends[7].active = false;
  const MaglevTable table = Build(backends, 251);
  EXPECT_EQ(table.slot_counts[3], 0u);
  EXPECT_EQ(table.slot_counts[7], 0u);
  for (uint32_t s : table.slots) EXPECT_TRUE(s != 3 && s != 7);
  for (uint32_t i : {0u, 1u, 2u, 4u, 5u, 6u, 8u, 9u}) {
    EXPECT_TRUE(table.slot_counts[i] == 31 || table.slot_counts[i] == 32) << i;
  }
}

TEST(MaglevTest, NoEligibleBackendGivesAnExplicitlyEmptyTable) {
  EXPECT_TRUE(Build({}, 65537).empty());
  auto backends = GenerateBackends(3, 0);
  backends[0].weight = 0;
  backends[1].active = false;
  backends[2].active = false;
  const MaglevTable table = Build(backends, 65537);
  EXPECT_TRUE(table.empty());
  EXPECT_TRUE(table.slots.empty());
  EXPECT_THAT(table.slot_counts, ::testing::ElementsAre(0, 0, 0));
}

TEST(MaglevTest, ABackendMayAppearOnlyOnce) {
  auto backends = GenerateBackends(5, 0);
  backends[4].address = backends[1].address;
  backends[4].port = backends[1].port;
  backends[4].weight = 3;  // a different weight does not make it a different backend
  const auto table = BuildMaglevTable(backends, 251);
  EXPECT_EQ(table.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(table.status().message()),
              HasSubstr("backends 1 and 4 are both 10.0.0.1"));
}

TEST(MaglevTest, PortIsPartOfTheIdentity) {
  std::vector<MaglevBackend> backends(2);
  backends[0].address = backends[1].address = IpAddress::V4(10, 0, 0, 1);
  backends[0].port = 8080;
  backends[1].port = 8081;
  const MaglevTable table = Build(backends, 251);
  EXPECT_GE(table.slot_counts[0], 125u);
  EXPECT_GE(table.slot_counts[1], 125u);
}

TEST(MaglevTest, InputOrderDoesNotChangeTheTable) {
  for (uint32_t n : {3u, 100u, 1000u}) {
    const auto sorted = GenerateBackends(n, 0);
    const auto reference = Owners(sorted, Build(sorted, 65537));
    for (uint32_t seed : {1u, 2u, 3u}) {
      const auto shuffled = GenerateBackends(n, seed);
      EXPECT_EQ(Owners(shuffled, Build(shuffled, 65537)), reference) << "N=" << n;
    }
  }
}

TEST(MaglevTest, Ipv6BackendsAndMixedFamiliesSpreadEvenly) {
  std::vector<MaglevBackend> backends;
  for (int i = 1; i <= 4; ++i) {
    MaglevBackend b;
    b.address =
        IpAddress::Parse(i % 2 ? "fd00::" + std::to_string(i) : "10.0.0." + std::to_string(i))
            .value();
    backends.push_back(b);
  }
  const MaglevTable table = Build(backends, 65537);
  for (uint32_t c : table.slot_counts) EXPECT_TRUE(c == 16384 || c == 16385) << c;
}

// The paper's resilience property, with M ≥ 100·N: removing a backend moves its own slots
// and only a little more.
TEST(MaglevTest, RemovingOneBackendMovesOnlyItsSlotsAndFewOthers) {
  for (const auto& [n, m] :
       {std::pair{100u, 65537u}, std::pair{1000u, 65537u}, std::pair{1000u, 655373u}}) {
    const auto backends = GenerateBackends(n, 0);
    const auto before = Owners(backends, Build(backends, m));
    for (uint32_t removed : {0u, n / 3, n - 1}) {
      auto fewer = backends;
      fewer.erase(fewer.begin() + removed);
      const auto after = Owners(fewer, Build(fewer, m));
      const std::pair gone{backends[removed].address, backends[removed].port};
      uint32_t own = 0;
      uint32_t others = 0;
      for (uint32_t s = 0; s < m; ++s) {
        if (before[s] == gone) {
          ++own;
        } else if (before[s] != after[s]) {
          ++others;
        }
      }
      EXPECT_GT(own, 0u);
      EXPECT_LE(others, 0.02 * m) << "N=" << n << ": removing one moved " << others
                                  << " slots of other backends";
    }
  }
}

TEST(MaglevTest, AddingOneBackendMovesAtMostItsShareAndFewOthers) {
  for (const auto& [n, m] :
       {std::pair{100u, 65537u}, std::pair{1000u, 65537u}, std::pair{1000u, 655373u}}) {
    const auto all = GenerateBackends(n + 1, 0);
    for (uint32_t added : {0u, n / 2, n}) {
      auto fewer = all;
      fewer.erase(fewer.begin() + added);
      const auto before = Owners(fewer, Build(fewer, m));
      const auto after = Owners(all, Build(all, m));
      uint32_t changed = 0;
      for (uint32_t s = 0; s < m; ++s) changed += before[s] != after[s];
      EXPECT_LE(changed, m / (n + 1) + 0.02 * m) << "N=" << n << " changed " << changed;
    }
  }
}

TEST(MaglevTest, ChangingOneWeightMovesSlotsMostlyToAndFromThatBackend) {
  auto backends = GenerateBackends(100, 0);
  const MaglevTable before = Build(backends, 65537);
  backends[42].weight = 2;
  const MaglevTable after = Build(backends, 65537);
  uint32_t changed = 0;
  for (uint32_t s = 0; s < 65537; ++s) changed += before.slots[s] != after.slots[s];
  const uint32_t gained = after.slot_counts[42] - before.slot_counts[42];
  EXPECT_NEAR(static_cast<double>(after.slot_counts[42]), 65537.0 * 2 / 101, 1.0);
  EXPECT_LE(changed, gained + 0.02 * 65537);
}

// Two processes (own address space, own ASLR, own allocator state) build the same table, each
// from a differently shuffled input.
TEST(MaglevTest, TwoProcessesBuildIdenticalTables) {
  const char* tool = std::getenv("FULCRUM_MAGLEV_DIGEST");
  ASSERT_NE(tool, nullptr) << "run through meson test, which sets FULCRUM_MAGLEV_DIGEST";
  const auto backends = GenerateBackends(1000, 0);
  char expected[32];
  std::snprintf(expected, sizeof(expected), "%016llx\n",
                static_cast<unsigned long long>(Digest(backends, Build(backends, 65537))));
  for (int seed : {5, 6}) {
    const std::string cmd = std::string(tool) + " 1000 65537 " + std::to_string(seed);
    std::unique_ptr<FILE, int (*)(FILE*)> pipe(popen(cmd.c_str(), "r"), pclose);
    ASSERT_NE(pipe, nullptr);
    char line[64] = {};
    ASSERT_NE(std::fgets(line, sizeof(line), pipe.get()), nullptr) << cmd;
    EXPECT_STREQ(line, expected) << cmd;
  }
}

// Hosts running different Fulcrum releases during a rolling upgrade must build identical
// tables, so the permutation function may never change silently. The digest below was
// recorded when the function was defined (docs/maglev.md); a change to it is a breaking change
// to the cluster contract and must be announced, not re-recorded.
TEST(MaglevTest, TablesAreStableAcrossReleases) {
  const auto backends = GenerateBackends(10, 0);
  EXPECT_EQ(Digest(backends, Build(backends, 251)), 0x037e7d541bacb2c6u);
}

}  // namespace
}  // namespace fulcrum
