// HealthState: rise / fall hysteresis.
#include "controlplane/health_state.h"

#include "gtest/gtest.h"

namespace fulcrum::controlplane {
namespace {

TEST(HealthState, GoesDownAfterFallConsecutiveFailures) {
  HealthState h(Health::kUp, 2, 3);
  EXPECT_FALSE(h.Record(false));
  EXPECT_FALSE(h.Record(false));
  EXPECT_TRUE(h.Record(false));
  EXPECT_EQ(h.health(), Health::kDown);
}

TEST(HealthState, ComesUpAfterRiseConsecutiveSuccesses) {
  HealthState h(Health::kDown, 2, 3);
  EXPECT_FALSE(h.Record(true));
  EXPECT_TRUE(h.Record(true));
  EXPECT_EQ(h.health(), Health::kUp);
}

TEST(HealthState, AlternatingResultsNeverChangeTheHealth) {
  HealthState up(Health::kUp, 2, 2);
  HealthState down(Health::kDown, 2, 2);
  for (int i = 0; i < 20; ++i) {
    EXPECT_FALSE(up.Record(i % 2 == 0));
    EXPECT_FALSE(down.Record(i % 2 == 1));
  }
  EXPECT_EQ(up.health(), Health::kUp);
  EXPECT_EQ(down.health(), Health::kDown);
}

}  // namespace
}  // namespace fulcrum::controlplane
