// EffectiveState: operator state, overrides, health and the panic threshold give the published
// backend states.
#include "controlplane/effective_state.h"

#include "absl/strings/str_format.h"
#include "controlplane/config_parser.h"
#include "gtest/gtest.h"

namespace fulcrum::controlplane {
namespace {

Config ConfigWith(const std::string& backends, double min_healthy) {
  ParsedConfig p = ParseConfig(absl::StrFormat(R"(dataplane:
  source_ipv4: 10.10.3.2
  gateway_mac: 02:00:00:00:03:01
  hash_key: 0123456789abcdef0123456789abcdef
vips:
  - name: web
    address: 10.10.0.100
    port: 80
    health_check: { type: tcp }
    guards: { min_healthy: %g }
    backends:
%s)",
                                               min_healthy, backends));
  EXPECT_TRUE(p.ok()) << FormatErrors("t", p.errors);
  return p.config;
}

EffectiveState Build(const Config& c, const Overrides& o, const HealthMap& h) {
  Ids ids;
  uint16_t next = 0;
  for (const std::string& k : BackendKeys(c)) ids.backends[k] = next++;
  ids.vips["web"] = 0;
  return *BuildEffective(c, ids, o, h);
}

IpAddress Ip(int last) { return IpAddress::V4(10, 0, 0, static_cast<uint8_t>(last)); }

constexpr char kFour[] =
    "      - { address: 10.0.0.1 }\n      - { address: 10.0.0.2 }\n"
    "      - { address: 10.0.0.3, state: draining }\n      - { address: 10.0.0.4, state: disabled "
    "}\n";

TEST(EffectiveState, OperatorStatesAndHealthGiveThePublishedStates) {
  const Config c = ConfigWith(kFour, 0.5);
  const EffectiveState s = Build(c, {}, {{{Ip(2), 80}, Health::kDown}});
  const auto& b = s.vips[0].backends;
  EXPECT_EQ(b[0].published, shm::BackendState::kActive);
  EXPECT_EQ(b[1].published, shm::BackendState::kDown);
  EXPECT_EQ(b[2].published, shm::BackendState::kDraining);
  EXPECT_EQ(b[3].published, shm::BackendState::kDisabled);
  EXPECT_EQ(b[3].health, Health::kUnchecked);  // a disabled backend is not probed
  EXPECT_FALSE(s.vips[0].panic);               // half the serving weight is healthy: not below
}

TEST(EffectiveState, ADownDrainingBackendIsDownSoItsFlowsRepick) {
  const EffectiveState s = Build(ConfigWith(kFour, 0.5), {}, {{{Ip(3), 80}, Health::kDown}});
  EXPECT_EQ(s.vips[0].backends[2].published, shm::BackendState::kDown);
}

TEST(EffectiveState, BelowMinHealthyDownBackendsStayActive) {
  const Config c = ConfigWith(
      "      - { address: 10.0.0.1 }\n      - { address: 10.0.0.2 }\n"
      "      - { address: 10.0.0.3 }\n",
      0.5);
  const EffectiveState s =
      Build(c, {}, {{{Ip(1), 80}, Health::kDown}, {{Ip(2), 80}, Health::kDown}});
  EXPECT_TRUE(s.vips[0].panic);
  EXPECT_NEAR(s.vips[0].healthy_fraction, 1.0 / 3, 1e-9);
  for (const EffectiveBackend& b : s.vips[0].backends) {
    EXPECT_EQ(b.published, shm::BackendState::kActive) << b.name;
  }
}

TEST(EffectiveState, MinHealthyZeroNeverFailsOpen) {
  const Config c = ConfigWith("      - { address: 10.0.0.1 }\n      - { address: 10.0.0.2 }\n", 0);
  const EffectiveState s =
      Build(c, {}, {{{Ip(1), 80}, Health::kDown}, {{Ip(2), 80}, Health::kDown}});
  EXPECT_FALSE(s.vips[0].panic);
  EXPECT_EQ(s.vips[0].backends[0].published, shm::BackendState::kDown);
}

TEST(EffectiveState, OverridesWinOverTheFile) {
  const Config c = ConfigWith(kFour, 0.5);
  Overrides o;
  o[BackendKey("web", Ip(1), 0)] = {OperatorState::kDraining, 7};
  o[BackendKey("web", Ip(3), 0)] = {OperatorState::kActive, std::nullopt};
  const EffectiveState s = Build(c, o, {});
  EXPECT_EQ(s.vips[0].backends[0].published, shm::BackendState::kDraining);
  EXPECT_EQ(s.vips[0].backends[0].weight, 7u);
  EXPECT_TRUE(s.vips[0].backends[0].overridden);
  EXPECT_EQ(s.vips[0].backends[2].published, shm::BackendState::kActive);
}

TEST(EffectiveState, AnUnprobedTargetCountsAsUp) {
  const EffectiveState s = Build(ConfigWith(kFour, 0.5), {}, {});
  EXPECT_EQ(s.vips[0].backends[0].health, Health::kUp);
}

}  // namespace
}  // namespace fulcrum::controlplane
