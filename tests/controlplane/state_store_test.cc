// StateStore and durable files: records round-trip, a crash's temporaries are cleaned, one
// server per directory, unreadable records are skipped and named, pruning keeps the newest.
#include "controlplane/state_store.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>

#include "controlplane/durable_file.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace fulcrum::controlplane {
namespace {

class StateStoreTest : public ::testing::Test {
 protected:
  StateStoreTest() {
    char tmpl[] = "/tmp/fulcrum-state-test-XXXXXX";
    dir_ = mkdtemp(tmpl);
  }
  ~StateStoreTest() override { std::system(("rm -rf " + dir_).c_str()); }
  std::string dir_;
};

GenerationRecord Record(uint64_t g) {
  GenerationRecord r;
  r.generation = g;
  r.cause = Cause::kApply;
  r.created_unix_ms = 1000 + static_cast<int64_t>(g);
  r.who.user = "root";
  r.config_yaml = "vips: []\n";
  r.overrides["web 10.0.0.1 0"] = {OperatorState::kDraining, 3};
  r.origin = g;
  r.result = AckResult::kAcked;
  return r;
}

TEST_F(StateStoreTest, RecordsRoundTrip) {
  auto store = *StateStore::Open(dir_);
  ASSERT_TRUE(store->Write(Record(2)).ok());
  ASSERT_TRUE(store->Write(Record(1)).ok());
  std::vector<std::string> warnings;
  const std::vector<GenerationRecord> h = store->LoadHistory(warnings);
  ASSERT_EQ(h.size(), 2u);
  EXPECT_EQ(h[0].generation, 1u);
  EXPECT_EQ(RecordToJson(h[1]), RecordToJson(Record(2)));
  EXPECT_TRUE(warnings.empty());
}

TEST_F(StateStoreTest, ASecondOpenOfTheSameDirectoryIsRefused) {
  auto first = StateStore::Open(dir_);
  ASSERT_TRUE(first.ok());
  auto second = StateStore::Open(dir_);
  EXPECT_TRUE(absl::IsFailedPrecondition(second.status())) << second.status();
  first->reset();
  EXPECT_TRUE(StateStore::Open(dir_).ok());
}

TEST_F(StateStoreTest, TemporariesLeftByACrashAreRemovedAtOpen) {
  ASSERT_TRUE(EnsureDirectory(dir_ + "/generations", 0750).ok());
  std::ofstream(dir_ + "/generations/00000000000000000003.json.123.tmp") << "{half";
  std::ofstream(dir_ + "/ids.json.123.tmp") << "{half";
  auto store = *StateStore::Open(dir_);
  struct stat st;
  EXPECT_NE(stat((dir_ + "/generations/00000000000000000003.json.123.tmp").c_str(), &st), 0);
  EXPECT_NE(stat((dir_ + "/ids.json.123.tmp").c_str(), &st), 0);
}

TEST_F(StateStoreTest, AnUnreadableRecordIsSkippedAndNamed) {
  auto store = *StateStore::Open(dir_);
  ASSERT_TRUE(store->Write(Record(1)).ok());
  std::ofstream(store->RecordPath(2)) << "not json";
  std::vector<std::string> warnings;
  EXPECT_EQ(store->LoadHistory(warnings).size(), 1u);
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_THAT(warnings[0], ::testing::HasSubstr("00000000000000000002.json"));
}

TEST_F(StateStoreTest, PruneKeepsTheNewestAndTheProtectedOne) {
  auto store = *StateStore::Open(dir_);
  for (uint64_t g = 1; g <= 6; ++g) ASSERT_TRUE(store->Write(Record(g)).ok());
  ASSERT_TRUE(store->Prune(3, 2).ok());
  std::vector<std::string> warnings;
  std::vector<uint64_t> left;
  for (const GenerationRecord& r : store->LoadHistory(warnings)) left.push_back(r.generation);
  EXPECT_THAT(left, ::testing::ElementsAre(2, 5, 6));
}

TEST_F(StateStoreTest, DurableWriteReplacesContentsWholly) {
  const std::string path = dir_ + "/f";
  ASSERT_TRUE(WriteFileDurably(path, "old").ok());
  ASSERT_TRUE(WriteFileDurably(path, "new contents").ok());
  EXPECT_EQ(*ReadWholeFile(path), "new contents");
  struct stat st;
  ASSERT_EQ(stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0640u);
}

TEST_F(StateStoreTest, IdsRoundTripAndAreAbsentAtFirst) {
  auto store = *StateStore::Open(dir_);
  EXPECT_FALSE(store->LoadIds()->has_value());
  ASSERT_TRUE(store->WriteIds({{"vips", 1}}).ok());
  EXPECT_EQ(**store->LoadIds(), nlohmann::json({{"vips", 1}}));
}

}  // namespace
}  // namespace fulcrum::controlplane
