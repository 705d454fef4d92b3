// WatchEvaluator: fair traffic passes; skew beyond the limit, overload, a backend going down
// and a drop increase are each found and named.
#include "controlplane/watch_evaluator.h"

#include <random>

#include "absl/strings/str_format.h"
#include "controlplane/config_parser.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace fulcrum::controlplane {
namespace {

using ::testing::HasSubstr;

struct World {
  Config config;
  EffectiveState state;
  shm::Snapshot snapshot;
};

World Make(int backends, double capacity) {
  std::string yaml = R"(dataplane:
  source_ipv4: 10.10.3.2
  gateway_mac: 02:00:00:00:03:01
  hash_key: 0123456789abcdef0123456789abcdef
vips:
  - name: web
    address: 10.10.0.100
    port: 80
    table_size: 65537
    backends:
)";
  for (int i = 0; i < backends; ++i) {
    yaml += absl::StrFormat("      - { address: 10.0.0.%d, capacity_cps: %g }\n", i + 1, capacity);
  }
  ParsedConfig p = ParseConfig(yaml);
  EXPECT_TRUE(p.ok()) << FormatErrors("t", p.errors);
  World w;
  w.config = p.config;
  Ids ids;
  ids.vips["web"] = 0;
  uint16_t next = 0;
  for (const std::string& k : BackendKeys(w.config)) ids.backends[k] = next++;
  w.state = *BuildEffective(w.config, ids, {}, {});
  w.snapshot = *shm::BuildSnapshot(1, ToSettings(w.config.dataplane), ToSpecs(w.state));
  return w;
}

// Samples one second apart with `flows[i]` new flows for backend id i in between.
std::pair<StatsSample, StatsSample> Samples(const std::vector<uint64_t>& flows,
                                            uint64_t drops = 0) {
  StatsSample a;
  StatsSample b;
  a.attached = b.attached = true;
  a.mono_ns = 1'000'000'000;
  b.mono_ns = 2'000'000'000;
  for (size_t i = 0; i < flows.size(); ++i) {
    a.backends[static_cast<uint16_t>(i)].new_flows = 100;
    b.backends[static_cast<uint16_t>(i)].new_flows = 100 + flows[i];
  }
  b.drops[0] = drops;
  return {a, b};
}

TEST(SignificantExcess, NoiseOfAFairDrawIsNotAnExcess) {
  std::mt19937_64 rng(7);
  std::binomial_distribution<uint64_t> draw(3000, 1.0 / 3);
  for (int i = 0; i < 1000; ++i) EXPECT_FALSE(SignificantExcess(draw(rng), 3000, 1.0 / 3, 1.5));
}

TEST(SignificantExcess, ARealSkewIsAnExcess) {
  EXPECT_TRUE(SignificantExcess(2000, 3000, 1.0 / 3, 1.5));
  EXPECT_FALSE(SignificantExcess(20, 30, 1.0 / 3, 1.5));  // too few flows to be sure
  EXPECT_TRUE(SignificantExcess(50, 1000, 0, 1.5));       // flows to a backend without slots
}

TEST(WatchEvaluator, FairTrafficWithinCapacityPasses) {
  const World w = Make(3, 5000);
  const auto [a, b] = Samples({1000, 990, 1010});
  const WatchEvaluator e(w.config.watch, 0, {});
  EXPECT_TRUE(e.Evaluate(w.state, w.snapshot, a, b).empty());
}

TEST(WatchEvaluator, OverloadIsFoundAndNamed) {
  const World w = Make(3, 1000);
  const auto [a, b] = Samples({4800, 100, 100});
  const WatchEvaluator e(w.config.watch, 0, {});
  const std::vector<WatchFinding> f = e.Evaluate(w.state, w.snapshot, a, b);
  ASSERT_FALSE(f.empty());
  bool overload = false;
  for (const WatchFinding& x : f) {
    if (x.kind == "overload") {
      overload = true;
      EXPECT_EQ(x.backend, "10.0.0.1");
      EXPECT_THAT(x.message, HasSubstr("4800 new flows/s, 4.80 x its capacity_cps 1000"));
    }
  }
  EXPECT_TRUE(overload);
}

TEST(WatchEvaluator, ABackendJustAtItsCapacityIsNotOverloadedByNoise) {
  const World w = Make(3, 1000);
  // 1040 flows in a second at a capacity of 1000: 1.3 deviations, not an overload.
  const auto [a, b] = Samples({1040, 900, 900});
  EXPECT_TRUE(WatchEvaluator(w.config.watch, 0, {}).Evaluate(w.state, w.snapshot, a, b).empty());
}

TEST(WatchEvaluator, ImbalanceAgainstTheTableIsFound) {
  const World w = Make(3, 1e6);
  const auto [a, b] = Samples({2000, 500, 500});
  const WatchEvaluator e(w.config.watch, 0, {});
  const std::vector<WatchFinding> f = e.Evaluate(w.state, w.snapshot, a, b);
  ASSERT_EQ(f.size(), 1u);
  EXPECT_EQ(f[0].kind, "imbalance");
  EXPECT_NEAR(f[0].value, 2.0, 0.01);
}

TEST(WatchEvaluator, ABackendThatWasHealthyAndIsDownIsFound) {
  World w = Make(3, 1e6);
  w.state.vips[0].backends[1].health = Health::kDown;
  const auto [a, b] = Samples({0, 0, 0});
  const WatchEvaluator e(w.config.watch, 0, {w.state.vips[0].backends[1].key});
  const std::vector<WatchFinding> f = e.Evaluate(w.state, w.snapshot, a, b);
  ASSERT_EQ(f.size(), 1u);
  EXPECT_EQ(f[0].kind, "unhealthy");
}

TEST(WatchEvaluator, DropsAboveTheirRateBeforeTheApplyAreFound) {
  const World w = Make(3, 1e6);
  const auto [a, b] = Samples({0, 0, 0}, 500);
  EXPECT_TRUE(WatchEvaluator(w.config.watch, 450, {}).Evaluate(w.state, w.snapshot, a, b).empty());
  const std::vector<WatchFinding> f =
      WatchEvaluator(w.config.watch, 0, {}).Evaluate(w.state, w.snapshot, a, b);
  ASSERT_EQ(f.size(), 1u);
  EXPECT_EQ(f[0].kind, "drops");
}

}  // namespace
}  // namespace fulcrum::controlplane
