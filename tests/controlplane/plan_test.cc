// Plan: its numbers against computations that do not share its code: slot counts by walking
// the table, weight shares from the config, the moved fraction by comparing slot owners one
// by one (equal sizes) and by hashing random flows the way the data plane picks (different
// sizes, a new hash key); then the guards' verdicts.
#include "controlplane/plan.h"

#include <cmath>
#include <map>
#include <memory>
#include <random>
#include <string>

#include "absl/strings/str_format.h"
#include "controlplane/config_parser.h"
#include "controlplane/id_registry.h"
#include "dataplane/core/flow_hash.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace fulcrum::controlplane {
namespace {

using ::testing::HasSubstr;

// A config with one VIP `web` and the given backends (weights), table size and guards.
std::string Yaml(const std::vector<std::pair<std::string, int>>& backends, uint32_t table_size,
                 const std::string& extra_backend_fields = "",
                 const std::string& hash_key = "0123456789abcdef0123456789abcdef",
                 const std::string& guards = "max_backend_share: 0.5, max_moved_fraction: 0.3") {
  std::string s = absl::StrFormat(R"(dataplane:
  source_ipv4: 10.10.3.2
  gateway_mac: 02:00:00:00:03:01
  hash_key: %s
vips:
  - name: web
    address: 10.10.0.100
    port: 80
    table_size: %d
    guards: { %s }
    backends:
)",
                                  hash_key, table_size, guards);
  for (const auto& [address, weight] : backends) {
    s += absl::StrFormat("      - { address: %s, weight: %d%s }\n", address, weight,
                         extra_backend_fields);
  }
  return s;
}

// A config built into what a plan compares; ids come from one registry shared by the sides,
// as the server's are.
struct Built {
  Config config;
  EffectiveState state;
  shm::Snapshot snapshot;
  PlanSide side() const { return {&config, &state, &snapshot}; }
};

class PlanTest : public ::testing::Test {
 protected:
  std::unique_ptr<Built> Build(const std::string& yaml, const Overrides& overrides = {}) {
    ParsedConfig p = ParseConfig(yaml);
    EXPECT_TRUE(p.ok()) << FormatErrors("test", p.errors);
    auto b = std::make_unique<Built>();
    b->config = p.config;
    Ids ids;
    ids.vips = *vips_.Assign(VipKeys(b->config), 0);
    ids.backends = *backends_.Assign(BackendKeys(b->config), 0);
    b->state = *BuildEffective(b->config, ids, overrides, {});
    b->snapshot =
        *shm::BuildSnapshot(++generation_, ToSettings(b->config.dataplane), ToSpecs(b->state));
    return b;
  }

  IdRegistry vips_{shm::kMaxVips, 0};
  IdRegistry backends_{shm::kMaxBackends, 0};
  uint64_t generation_ = 0;
};

Plan Compare(const Built& before, const Built& after, const std::map<std::string, double>& rates,
             uint64_t generation) {
  const PlanSide side = before.side();
  return ComputePlan(&side, after.side(), rates, generation);
}

std::string BackendAt(const Built& b, size_t vip, uint32_t slot) {
  return b.state.vips[vip].backends[(*b.snapshot.tables[vip])[slot]].name;
}

TEST_F(PlanTest, SlotsAndSharesMatchACountOfTheTable) {
  const auto after =
      Build(Yaml({{"10.0.0.1", 3}, {"10.0.0.2", 1}, {"10.0.0.3", 1}, {"10.0.0.4", 5}}, 65537));
  const Plan plan = ComputePlan(nullptr, after->side(), {}, 0);
  ASSERT_EQ(plan.vips.size(), 1u);
  const shm::Table& table = *after->snapshot.tables[0];
  std::map<std::string, uint32_t> counted;
  for (uint32_t slot = 0; slot < table.size(); ++slot) ++counted[BackendAt(*after, 0, slot)];
  const std::map<std::string, double> weights = {
      {"10.0.0.1", 3}, {"10.0.0.2", 1}, {"10.0.0.3", 1}, {"10.0.0.4", 5}};
  uint32_t total = 0;
  for (const BackendPlan& b : plan.vips[0].backends) {
    EXPECT_EQ(b.slots, counted[b.name]) << b.name;
    EXPECT_DOUBLE_EQ(b.table_share, counted[b.name] / 65537.0) << b.name;
    EXPECT_DOUBLE_EQ(b.weight_share, weights.at(b.name) / 10.0) << b.name;
    // Largest-remainder apportionment: within one slot of M·w/W.
    EXPECT_LE(std::abs(counted[b.name] - 65537.0 * weights.at(b.name) / 10.0), 1.0) << b.name;
    total += b.slots;
  }
  EXPECT_EQ(total, 65537u);
  EXPECT_TRUE(plan.vips[0].inconsistencies.empty());
}

TEST_F(PlanTest, MovedFractionEqualsTheShareOfSlotsWhoseOwnerChanged) {
  const auto before = Build(
      Yaml({{"10.0.0.1", 1}, {"10.0.0.2", 1}, {"10.0.0.3", 1}, {"10.0.0.4", 1}, {"10.0.0.5", 1}},
           65537));
  const auto after = Build(
      Yaml({{"10.0.0.1", 1}, {"10.0.0.2", 1}, {"10.0.0.3", 2}, {"10.0.0.5", 1}, {"10.0.0.6", 1}},
           65537));
  const Plan plan = Compare(*before, *after, {}, 1);
  uint32_t changed = 0;
  for (uint32_t slot = 0; slot < 65537; ++slot) {
    if (BackendAt(*before, 0, slot) != BackendAt(*after, 0, slot)) ++changed;
  }
  // Slots own intervals of 2^32 / M ± 1 hash values: the exact measure and the slot count
  // agree to far better than 1e-6.
  EXPECT_NEAR(plan.vips[0].moved_fraction, changed / 65537.0, 1e-6);
  EXPECT_GT(plan.vips[0].moved_fraction, 0.3);
}

TEST_F(PlanTest, RemovingOneOfTenBackendsMovesItsFlowsAndFewOthers) {
  std::vector<std::pair<std::string, int>> ten;
  for (int i = 1; i <= 10; ++i) ten.push_back({absl::StrFormat("10.0.0.%d", i), 1});
  const auto before = Build(Yaml(ten, 65537));
  ten.pop_back();
  const auto after = Build(Yaml(ten, 65537));
  const Plan plan = Compare(*before, *after, {}, 1);
  EXPECT_GE(plan.vips[0].moved_fraction, 0.0999);
  EXPECT_LE(plan.vips[0].moved_fraction, 0.12);
}

// The data plane's choice for a flow: table[HashToSlot(FlowHash(t, key), M)].
std::string Pick(const Built& b, const FlowTuple& t) {
  FlowHashKey key;
  std::memcpy(&key.k0, b.snapshot.header.settings.hash_key, 8);
  std::memcpy(&key.k1, b.snapshot.header.settings.hash_key + 8, 8);
  const shm::Table& table = *b.snapshot.tables[0];
  return BackendAt(b, 0, HashToSlot(FlowHash(t, key), static_cast<uint32_t>(table.size())));
}

double SampledMovedFraction(const Built& before, const Built& after, int flows) {
  std::mt19937_64 rng(42);
  int moved = 0;
  for (int i = 0; i < flows; ++i) {
    FlowTuple t;
    const uint64_t r = rng();
    std::memcpy(t.src.data(), &r, 4);
    t.dst = {10, 10, 0, 100};
    t.src_port = static_cast<uint16_t>(r >> 32);
    t.dst_port = 80;
    t.proto = 6;
    if (Pick(before, t) != Pick(after, t)) ++moved;
  }
  return static_cast<double>(moved) / flows;
}

TEST_F(PlanTest, MovedFractionAcrossATableSizeChangeMatchesHashedFlows) {
  const auto before = Build(Yaml({{"10.0.0.1", 1}, {"10.0.0.2", 1}, {"10.0.0.3", 1}}, 65537));
  const auto after =
      Build(Yaml({{"10.0.0.1", 1}, {"10.0.0.2", 1}, {"10.0.0.3", 1}, {"10.0.0.4", 1}}, 131071));
  const Plan plan = Compare(*before, *after, {}, 1);
  const double sampled = SampledMovedFraction(*before, *after, 1000000);
  // 1M flows: the standard error is below 0.0005.
  EXPECT_NEAR(plan.vips[0].moved_fraction, sampled, 0.0025);
  EXPECT_THAT(plan.vips[0].changes, ::testing::Contains(HasSubstr("table_size 65537 -> 131071")));
}

TEST_F(PlanTest, MovedFractionOfANewHashKeyMatchesHashedFlows) {
  const auto before = Build(Yaml({{"10.0.0.1", 1}, {"10.0.0.2", 1}, {"10.0.0.3", 1}}, 65537));
  const auto after = Build(Yaml({{"10.0.0.1", 1}, {"10.0.0.2", 1}, {"10.0.0.3", 1}}, 65537, "",
                                "fedcba9876543210fedcba9876543210"));
  const Plan plan = Compare(*before, *after, {}, 1);
  EXPECT_NEAR(plan.vips[0].moved_fraction, SampledMovedFraction(*before, *after, 1000000), 0.0025);
  EXPECT_NEAR(plan.vips[0].moved_fraction, 2.0 / 3.0, 0.001);
  EXPECT_THAT(plan.settings_changes, ::testing::Contains(HasSubstr("hash_key changed")));
}

TEST_F(PlanTest, ASkewedWeightTypoBreaksTheShareGuard) {
  const auto after = Build(Yaml({{"10.0.0.1", 100}, {"10.0.0.2", 1}, {"10.0.0.3", 1}}, 65537));
  const Plan plan = ComputePlan(nullptr, after->side(), {}, 0);
  EXPECT_FALSE(plan.ok());
  EXPECT_THAT(plan.Violations(),
              ::testing::Contains(HasSubstr("max_backend_share: 10.0.0.1 would get 98.04%")));
}

TEST_F(PlanTest, TheCapacityGuardUsesTheCurrentNewFlowRate) {
  const std::string fields = ", capacity_cps: 1000";
  const auto before = Build(Yaml({{"10.0.0.1", 1}, {"10.0.0.2", 1}, {"10.0.0.3", 1}}, 65537, fields,
                                 "0123456789abcdef0123456789abcdef", "max_moved_fraction: 1"));
  const auto after =
      Build(Yaml({{"10.0.0.1", 100}, {"10.0.0.2", 1}, {"10.0.0.3", 1}}, 65537, fields,
                 "0123456789abcdef0123456789abcdef", "max_moved_fraction: 1"));
  // 2400 new flows/s: 800 each today; 98 % of it, 2353/s, would go to 10.0.0.1.
  const Plan plan = Compare(*before, *after, {{"web", 2400.0}}, 1);
  const BackendPlan& heavy = plan.vips[0].backends[0];
  ASSERT_TRUE(heavy.expected_cps.has_value());
  EXPECT_NEAR(*heavy.expected_cps, 2400.0 * heavy.slots / 65537.0, 1e-6);
  EXPECT_THAT(
      plan.Violations(),
      ::testing::ElementsAre(HasSubstr("capacity: 10.0.0.1 would receive 2353 new flows/s")));
  // Without traffic data the same plan passes: the guard cannot judge, and says so.
  const Plan blind = Compare(*before, *after, {}, 1);
  EXPECT_TRUE(blind.ok());
  EXPECT_THAT(blind.vips[0].guards.back().detail, HasSubstr("not judged"));
}

TEST_F(PlanTest, TooManyMovedFlowsBreakTheMovedGuard) {
  const auto before = Build(Yaml({{"10.0.0.1", 1}, {"10.0.0.2", 1}}, 65537));
  const auto after = Build(Yaml({{"10.0.0.3", 1}, {"10.0.0.4", 1}}, 65537));
  const Plan plan = Compare(*before, *after, {}, 1);
  EXPECT_DOUBLE_EQ(plan.vips[0].moved_fraction, 1.0);
  EXPECT_THAT(plan.Violations(), ::testing::Contains(HasSubstr("max_moved_fraction: 100.00%")));
}

TEST_F(PlanTest, AnUnchangedConfigHasNoChangesAndNoGuards) {
  const std::string yaml = Yaml({{"10.0.0.1", 100}, {"10.0.0.2", 1}}, 65537);
  const auto before = Build(yaml);
  const auto after = Build(yaml);
  const Plan plan = Compare(*before, *after, {}, 1);
  EXPECT_FALSE(plan.HasChanges());
  EXPECT_TRUE(plan.vips[0].guards.empty());
  EXPECT_TRUE(plan.ok());  // the running skew is not this plan's doing
}

TEST_F(PlanTest, DrainingTheLastActiveBackendIsRefused) {
  const std::string yaml =
      Yaml({{"10.0.0.1", 1}}, 251, "", "0123456789abcdef0123456789abcdef", "max_moved_fraction: 1");
  const auto before = Build(yaml);
  const auto after = Build(yaml, {{BackendKey("web", IpAddress::V4(10, 0, 0, 1), 0),
                                   BackendOverride{OperatorState::kDraining, std::nullopt}}});
  const Plan plan = Compare(*before, *after, {}, 1);
  EXPECT_THAT(plan.Violations(),
              ::testing::Contains(HasSubstr("eligible_backends: no backend would get new flows")));
}

TEST_F(PlanTest, AddedAndRemovedBackendsAreListed) {
  const auto before = Build(Yaml({{"10.0.0.1", 1}, {"10.0.0.2", 1}}, 65537));
  const auto after = Build(Yaml({{"10.0.0.1", 1}, {"10.0.0.3", 1}}, 65537));
  const Plan plan = Compare(*before, *after, {}, 1);
  std::map<std::string, Change> changes;
  for (const BackendPlan& b : plan.vips[0].backends) changes[b.name] = b.change;
  EXPECT_EQ(changes["10.0.0.1"], Change::kUnchanged);
  EXPECT_EQ(changes["10.0.0.2"], Change::kRemoved);
  EXPECT_EQ(changes["10.0.0.3"], Change::kAdded);
  EXPECT_EQ(plan.vips[0].change, Change::kChanged);
}

TEST(MovedFraction, EmptyTablesMoveNothingFromAndEverythingTo) {
  const std::vector<shm::TableEntry> empty;
  const std::vector<shm::TableEntry> one(251, 0);
  const std::vector<int64_t> owner = {0};
  EXPECT_EQ(MovedFraction(empty, owner, one, owner), 0);
  EXPECT_EQ(MovedFraction(one, owner, empty, owner), 1);
  EXPECT_EQ(MovedFraction(one, owner, one, owner), 0);
}

}  // namespace
}  // namespace fulcrum::controlplane
