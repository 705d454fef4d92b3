// IdRegistry: ids are stable, come back with their key, and pass to another key only after
// every fresh id is used and the quarantine has passed.
#include "controlplane/id_registry.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace fulcrum::controlplane {
namespace {

TEST(IdRegistry, KeysKeepTheirIdsAcrossAssignments) {
  IdRegistry r(16, 1000);
  const auto first = *r.Assign({"a", "b", "c"}, 0);
  const auto second = *r.Assign({"c", "a", "d"}, 10);
  EXPECT_EQ(second.at("a"), first.at("a"));
  EXPECT_EQ(second.at("c"), first.at("c"));
  EXPECT_EQ(second.at("d"), 3);  // fresh, not b's released id
}

TEST(IdRegistry, ARemovedKeyGetsItsIdBack) {
  IdRegistry r(16, 1000);
  const uint16_t b = r.Assign({"a", "b"}, 0)->at("b");
  ASSERT_TRUE(r.Assign({"a"}, 10).ok());
  EXPECT_EQ(r.Assign({"a", "b"}, 20)->at("b"), b);
}

TEST(IdRegistry, AReleasedIdIsReusedOnlyAfterQuarantineWhenNoFreshOneIsLeft) {
  IdRegistry r(2, 1000);
  ASSERT_TRUE(r.Assign({"a", "b"}, 0).ok());
  ASSERT_TRUE(r.Assign({"a"}, 100).ok());  // b released at 100
  EXPECT_TRUE(absl::IsResourceExhausted(r.Assign({"a", "c"}, 500).status()));
  const auto later = r.Assign({"a", "c"}, 1100);
  ASSERT_TRUE(later.ok());
  EXPECT_EQ(later->at("c"), 1);  // b's id, a second after its release
  EXPECT_FALSE(r.Find("b").has_value());
}

TEST(IdRegistry, JsonRoundTripKeepsEveryAssignment) {
  IdRegistry r(64, 1000);
  ASSERT_TRUE(r.Assign({"x", "y", "z"}, 0).ok());
  ASSERT_TRUE(r.Assign({"x", "z"}, 5).ok());
  absl::StatusOr<IdRegistry> back = IdRegistry::FromJson(r.ToJson(), 64, 1000);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->ToJson(), r.ToJson());
  EXPECT_EQ(back->Assign({"w"}, 6)->at("w"), 3);
}

TEST(IdRegistry, FromJsonRejectsRepeatedIds) {
  const nlohmann::json j = {
      {"next_fresh", 2},
      {"entries",
       {{"a", {{"id", 1}, {"released_ms", 0}}}, {"b", {{"id", 1}, {"released_ms", 0}}}}}};
  EXPECT_FALSE(IdRegistry::FromJson(j, 16, 0).ok());
}

}  // namespace
}  // namespace fulcrum::controlplane
