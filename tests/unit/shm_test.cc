// Shared-memory contract: segments, publish / copy / ack, table reuse, and every rejection.
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_format.h"
#include "absl/time/time.h"
#include "dataplane/shm/abi.h"
#include "dataplane/shm/config_channel.h"
#include "dataplane/shm/segment.h"
#include "dataplane/shm/snapshot.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace fulcrum::shm {
namespace {

using ::testing::HasSubstr;

// A prefix of its own for every test, and both segments unlinked when it ends.
class ShmTest : public ::testing::Test {
 protected:
  ShmTest() {
    static int counter = 0;
    prefix_ = "fulcrum-unit-" + std::to_string(getpid()) + "-" + std::to_string(++counter);
  }
  ~ShmTest() override {
    shm_unlink(ConfigSegmentName(prefix_)->c_str());
    shm_unlink(StatsSegmentName(prefix_)->c_str());
  }
  std::string prefix_;
};

SnapshotSettings Settings() {
  SnapshotSettings s{};
  for (int i = 0; i < 16; ++i) s.hash_key[i] = static_cast<uint8_t>(i);
  const uint8_t v4[4] = {10, 10, 3, 2};
  std::memcpy(s.source_v4, v4, 4);
  const uint8_t mac[6] = {0x02, 0, 0, 0, 3, 1};
  std::memcpy(s.gateway_mac, mac, 6);
  s.flags = kSettingsHasSourceV4;
  s.encap = EncapKindSetting::kIpip;
  s.ttl = 64;
  s.gue_port = 6080;
  s.mtu = 1500;
  s.tcp_timeout_s = 300;
  s.tcp_closing_timeout_s = 15;
  s.udp_timeout_s = 30;
  s.icmp_rate_pps = 100;
  return s;
}

// `vips` VIPs 10.10.0.(100+i):80, each with `backends` backends 10.10.2.x (weight = weight).
std::vector<VipSpec> Specs(int vips, int backends, uint32_t weight = 1, uint32_t table = 251) {
  std::vector<VipSpec> out;
  uint16_t backend_id = 0;
  for (int v = 0; v < vips; ++v) {
    VipSpec spec;
    spec.name = "vip" + std::to_string(v);
    spec.address = IpAddress::V4(10, 10, 0, static_cast<uint8_t>(100 + v));
    spec.port = 80;
    spec.id = static_cast<uint16_t>(v);
    spec.table_size = table;
    for (int b = 0; b < backends; ++b) {
      BackendSpec bs;
      bs.address = IpAddress::V4(10, 10, static_cast<uint8_t>(2 + v), static_cast<uint8_t>(11 + b));
      bs.weight = weight;
      bs.id = backend_id++;
      spec.backends.push_back(bs);
    }
    out.push_back(spec);
  }
  return out;
}

Snapshot Build(uint64_t generation, const std::vector<VipSpec>& specs) {
  absl::StatusOr<Snapshot> s = BuildSnapshot(generation, Settings(), specs);
  EXPECT_TRUE(s.ok()) << s.status();
  return s.ok() ? *std::move(s) : Snapshot{};
}

struct Channel {
  ConfigWriter writer;
  ConfigReader reader;
};

Channel Open(const std::string& prefix) {
  absl::StatusOr<MappedSegment> w = CreateConfigSegment(prefix);
  EXPECT_TRUE(w.ok()) << w.status();
  absl::StatusOr<MappedSegment> r = AttachConfigSegment(prefix);
  EXPECT_TRUE(r.ok()) << r.status();
  return Channel{ConfigWriter(*std::move(w)), ConfigReader(*std::move(r))};
}

void ExpectSameSnapshot(const Snapshot& a, const Snapshot& b) {
  EXPECT_EQ(std::memcmp(&a.header, &b.header, sizeof(SnapshotHeader)), 0);
  ASSERT_EQ(a.vips.size(), b.vips.size());
  EXPECT_EQ(std::memcmp(a.vips.data(), b.vips.data(), a.vips.size() * sizeof(VipRecord)), 0);
  ASSERT_EQ(a.backends.size(), b.backends.size());
  EXPECT_EQ(
      std::memcmp(a.backends.data(), b.backends.data(), a.backends.size() * sizeof(BackendRecord)),
      0);
  ASSERT_EQ(a.tables.size(), b.tables.size());
  for (size_t i = 0; i < a.tables.size(); ++i) EXPECT_EQ(*a.tables[i], *b.tables[i]) << i;
}

TEST_F(ShmTest, SegmentNamesAcceptOnlyPlainPrefixes) {
  EXPECT_EQ(*ConfigSegmentName("fulcrum"), "/fulcrum.config");
  EXPECT_EQ(*StatsSegmentName("lb-1.test_a"), "/lb-1.test_a.stats");
  for (const char* bad : {"", "a/b", "a b", "..\n"}) {
    EXPECT_EQ(ConfigSegmentName(bad).status().code(), absl::StatusCode::kInvalidArgument) << bad;
  }
  EXPECT_FALSE(ConfigSegmentName(std::string(201, 'a')).ok());
}

TEST_F(ShmTest, AttachingBeforeTheOwnerCreatedTheSegmentIsNotFound) {
  EXPECT_EQ(AttachConfigSegment(prefix_).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(AttachStatsSegment(prefix_).status().code(), absl::StatusCode::kNotFound);
}

TEST_F(ShmTest, SegmentsAreCreatedWithMode0660) {
  ASSERT_TRUE(CreateConfigSegment(prefix_).ok());
  ASSERT_TRUE(CreateStatsSegment(prefix_).ok());
  for (const std::string& name : {*ConfigSegmentName(prefix_), *StatsSegmentName(prefix_)}) {
    struct stat st;
    ASSERT_EQ(stat(("/dev/shm" + name).c_str(), &st), 0) << name;
    EXPECT_EQ(st.st_mode & 0777, 0660u) << name;
  }
}

TEST_F(ShmTest, AReaderRefusesAnotherAbiNamingBothVersions) {
  absl::StatusOr<MappedSegment> w = CreateConfigSegment(prefix_);
  ASSERT_TRUE(w.ok());
  ConfigHeader& h = ConfigHeaderOf(*w);
  h.abi_major = kAbiMajor + 1;
  absl::Status s = AttachConfigSegment(prefix_).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(s.message()),
              HasSubstr(absl::StrFormat("ABI %d.%d (this build: %d.%d)", kAbiMajor + 1, kAbiMinor,
                                        kAbiMajor, kAbiMinor)));
  h.abi_major = kAbiMajor;
  h.vip_record_size = 48;
  EXPECT_THAT(std::string(AttachConfigSegment(prefix_).status().message()),
              HasSubstr("vip_record_size is 48, this build needs 64"));
  h.vip_record_size = sizeof(VipRecord);
  h.magic = 0x1234;
  EXPECT_THAT(std::string(AttachConfigSegment(prefix_).status().message()), HasSubstr("bad magic"));
  h.magic = kConfigMagic;
  EXPECT_TRUE(AttachConfigSegment(prefix_).ok());
}

TEST_F(ShmTest, ARestartedOwnerKeepsWhatTheSegmentHolds) {
  {
    Channel c = Open(prefix_);
    ASSERT_TRUE(c.writer.Publish(Build(7, Specs(1, 3))).ok());
  }
  Channel again = Open(prefix_);
  EXPECT_EQ(again.writer.published_generation(), 7u);
  ConfigReader::Result r = again.reader.Poll(nullptr);
  EXPECT_EQ(r.kind, ConfigReader::Result::kSnapshot);
  EXPECT_EQ(r.generation, 7u);
}

TEST_F(ShmTest, AnOwnerReplacesASegmentOfAnotherLayoutAndTheOldReaderNotices) {
  absl::StatusOr<MappedSegment> w = CreateConfigSegment(prefix_);
  ASSERT_TRUE(w.ok());
  absl::StatusOr<MappedSegment> r = AttachConfigSegment(prefix_);
  ASSERT_TRUE(r.ok());
  ConfigHeaderOf(*w).slot_size = 1;  // as if another build had made it
  absl::StatusOr<MappedSegment> w2 = CreateConfigSegment(prefix_);
  ASSERT_TRUE(w2.ok());
  EXPECT_TRUE(CheckConfigHeader(ConfigHeaderOf(*w2), w2->size()).ok());
  EXPECT_FALSE(r->SameObjectAs(*ConfigSegmentName(prefix_)));
  EXPECT_TRUE(w2->SameObjectAs(*ConfigSegmentName(prefix_)));
}

TEST_F(ShmTest, PublishedSnapshotArrivesWholeAndTheAckReachesTheWriter) {
  Channel c = Open(prefix_);
  const Snapshot s = Build(1, Specs(3, 5));
  EXPECT_EQ(c.reader.Poll(nullptr).kind, ConfigReader::Result::kNothing);
  ASSERT_TRUE(c.writer.Publish(s).ok());
  ConfigReader::Result r = c.reader.Poll(nullptr);
  ASSERT_EQ(r.kind, ConfigReader::Result::kSnapshot) << r.verdict.detail;
  EXPECT_EQ(r.generation, 1u);
  ExpectSameSnapshot(r.snapshot, s);
  EXPECT_EQ(c.writer.WaitForAck(1, absl::Milliseconds(1)).code(),
            absl::StatusCode::kDeadlineExceeded);
  c.reader.Ack(1);
  EXPECT_TRUE(c.writer.WaitForAck(1, absl::Milliseconds(1)).ok());
  EXPECT_EQ(c.reader.Poll(&r.snapshot).kind, ConfigReader::Result::kNothing) << "handled";
}

TEST_F(ShmTest, PublishRefusesAnUnsealedSnapshotOrAnOldGeneration) {
  Channel c = Open(prefix_);
  Snapshot s = Build(5, Specs(1, 3));
  ASSERT_TRUE(c.writer.Publish(s).ok());
  EXPECT_THAT(std::string(c.writer.Publish(s).message()), HasSubstr("not above"));
  s.header.generation = 6;  // checksum now stale
  EXPECT_THAT(std::string(c.writer.Publish(s).message()), HasSubstr("not sealed"));
  s.Seal();
  EXPECT_TRUE(c.writer.Publish(s).ok());
}

TEST_F(ShmTest, WaitForAckSaysWhetherADataPlaneIsAttached) {
  Channel c = Open(prefix_);
  ASSERT_TRUE(c.writer.Publish(Build(1, Specs(1, 2))).ok());
  EXPECT_THAT(std::string(c.writer.WaitForAck(1, absl::Milliseconds(5)).message()),
              HasSubstr("no data plane is attached"));
  c.reader.Heartbeat();
  EXPECT_THAT(std::string(c.writer.WaitForAck(1, absl::Milliseconds(5)).message()),
              HasSubstr("did not acknowledge generation 1"));
  c.reader.Reject(1, {SnapshotReject::kEncap, "backends[0]: no route"});
  const absl::Status s = c.writer.WaitForAck(1, absl::Milliseconds(5));
  EXPECT_EQ(s.code(), absl::StatusCode::kAborted);
  EXPECT_THAT(std::string(s.message()), HasSubstr("rejected generation 1 (encap): backends[0]"));
}

TEST_F(ShmTest, UnchangedTablesAreSharedAndChangedOnesCopied) {
  Channel c = Open(prefix_);
  auto specs = Specs(4, 6);
  ASSERT_TRUE(c.writer.Publish(Build(1, specs)).ok());
  ConfigReader::Result first = c.reader.Poll(nullptr);
  ASSERT_EQ(first.kind, ConfigReader::Result::kSnapshot);
  EXPECT_THAT(first.reused, ::testing::Each(false));
  c.reader.Ack(1);

  specs[2].backends[3].state = BackendState::kDraining;
  const Snapshot second_written = Build(2, specs);
  ASSERT_TRUE(c.writer.Publish(second_written).ok());
  ConfigReader::Result second = c.reader.Poll(&first.snapshot);
  ASSERT_EQ(second.kind, ConfigReader::Result::kSnapshot) << second.verdict.detail;
  EXPECT_THAT(second.reused, ::testing::ElementsAre(true, true, false, true));
  EXPECT_EQ(second.snapshot.tables[0], first.snapshot.tables[0]) << "the same object";
  ExpectSameSnapshot(second.snapshot, second_written);
  EXPECT_EQ(std::count(second.snapshot.tables[2]->begin(), second.snapshot.tables[2]->end(), 3), 0);
}

TEST_F(ShmTest, BuildSnapshotGivesAVipWithoutEligibleBackendsAnEmptyTable) {
  auto specs = Specs(2, 3);
  for (auto& b : specs[1].backends) b.state = BackendState::kDown;
  const Snapshot s = Build(1, specs);
  EXPECT_EQ(s.vips[1].table_size, 0u);
  EXPECT_TRUE(s.tables[1]->empty());
  EXPECT_EQ(s.vips[0].table_size, 251u);
  EXPECT_TRUE(ValidateSnapshot(s).ok());
}

TEST_F(ShmTest, BuildSnapshotRefusesWhatTheSegmentCannotHold) {
  EXPECT_EQ(BuildSnapshot(1, Settings(), Specs(kMaxVips + 1, 0)).status().code(),
            absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(BuildSnapshot(1, Settings(), Specs(1, kMaxBackendsPerVip + 1)).status().code(),
            absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(BuildSnapshot(1, Settings(), Specs(1, 2, 1, 65536)).status().message()),
              HasSubstr("VIP vip0: table size 65536 is not prime"));
}

// --- Rejections -----------------------------------------------------------------------------
// Each case corrupts one thing in a valid snapshot, reseals the checksum so that the snapshot
// reaches validation (unless the case is about the checksum), publishes it, and expects that
// reason; the reader's previous snapshot stays the one in use.

// A corruption is made either by the writer (a buggy or hostile control plane: the records are
// wrong but the checksum matches them) or by a stray write into the published slot afterwards.
struct Corruption {
  const char* name;
  SnapshotReject reason;
  void (*writer)(Snapshot&);
  void (*stray)(SnapshotSlot&) = nullptr;
  bool redigest = true;       // a writer that gets the records wrong still digests them
  bool fresh_reader = false;  // no previous snapshot whose tables could be reused
};

void ResealTable(Snapshot& s, size_t vip) {
  s.vips[vip].table_digest = TableDigest(s.BackendsOf(s.vips[vip]), *s.tables[vip]);
}
void SetTableEntry(Snapshot& s, size_t vip, size_t slot, TableEntry e) {
  auto t = std::make_shared<Table>(*s.tables[vip]);
  (*t)[slot] = e;
  s.tables[vip] = t;
  ResealTable(s, vip);
}
void Unchanged(Snapshot&) {}

const Corruption kCorruptions[] = {
    {"stray write to a record", SnapshotReject::kChecksum, Unchanged,
     [](SnapshotSlot& slot) { slot.vips[0].port ^= 1; }},
    {"stray write to a table", SnapshotReject::kChecksum, Unchanged,
     [](SnapshotSlot& slot) { slot.table[slot.vips[1].table_begin + 5] ^= 1; }, true, true},
    {"table digest", SnapshotReject::kChecksum, [](Snapshot& s) { s.vips[1].table_digest ^= 1; },
     nullptr, false},
    {"vip count beyond capacity", SnapshotReject::kCounts, Unchanged,
     [](SnapshotSlot& slot) { slot.header.vip_count = kMaxVips + 1; }},
    {"backend count beyond capacity", SnapshotReject::kCounts, Unchanged,
     [](SnapshotSlot& slot) { slot.header.backend_count = kMaxBackends + 1; }},
    {"table entries beyond capacity", SnapshotReject::kCounts, Unchanged,
     [](SnapshotSlot& slot) { slot.header.table_entries = kMaxTableEntries + 1; }},
    {"backend array truncated", SnapshotReject::kBackendRange,
     [](Snapshot& s) { s.backends.pop_back(); }},
    {"vip backend range past the list", SnapshotReject::kBackendRange,
     [](Snapshot& s) { s.vips[2].backend_count += 1; }},
    {"vip backend ranges overlap", SnapshotReject::kBackendRange,
     [](Snapshot& s) { s.vips[1].backend_begin -= 1; }},
    {"table past the entries in use", SnapshotReject::kTableRange,
     [](Snapshot& s) { s.header.table_entries -= 1; }},
    {"ttl zero", SnapshotReject::kSettings, [](Snapshot& s) { s.header.settings.ttl = 0; }},
    {"mtu too small", SnapshotReject::kSettings, [](Snapshot& s) { s.header.settings.mtu = 100; }},
    {"unknown encap", SnapshotReject::kSettings,
     [](Snapshot& s) { s.header.settings.encap = static_cast<EncapKindSetting>(9); }},
    {"gue port zero", SnapshotReject::kSettings,
     [](Snapshot& s) {
       s.header.settings.encap = EncapKindSetting::kGue;
       s.header.settings.gue_port = 0;
     }},
    {"multicast gateway", SnapshotReject::kSettings,
     [](Snapshot& s) { s.header.settings.gateway_mac[0] = 0x01; }},
    {"closing timeout above tcp", SnapshotReject::kSettings,
     [](Snapshot& s) { s.header.settings.tcp_closing_timeout_s = 301; }},
    {"vip family", SnapshotReject::kVip,
     [](Snapshot& s) { s.vips[0].family = static_cast<Family>(5); }},
    {"vip ipv4 with high bytes", SnapshotReject::kVip,
     [](Snapshot& s) { s.vips[0].address[9] = 1; }},
    {"vip protocol", SnapshotReject::kVip, [](Snapshot& s) { s.vips[0].proto = 1; }},
    {"vip id out of range", SnapshotReject::kVip, [](Snapshot& s) { s.vips[0].id = kMaxVips; }},
    {"duplicate vip service", SnapshotReject::kDuplicateVip,
     [](Snapshot& s) { std::memcpy(s.vips[1].address, s.vips[0].address, 16); }},
    {"duplicate vip id", SnapshotReject::kDuplicateVip, [](Snapshot& s) { s.vips[1].id = 0; }},
    {"backend state", SnapshotReject::kBackend,
     [](Snapshot& s) { s.backends[0].state = static_cast<BackendState>(7); }},
    {"backend unspecified address", SnapshotReject::kBackend,
     [](Snapshot& s) { std::memset(s.backends[0].address, 0, 16); }},
    {"backend id out of range", SnapshotReject::kBackend,
     [](Snapshot& s) { s.backends[0].id = kMaxBackends; }},
    {"duplicate backend id", SnapshotReject::kDuplicateBackend,
     [](Snapshot& s) { s.backends[1].id = s.backends[0].id; }},
    {"table size not prime", SnapshotReject::kTableSize,
     [](Snapshot& s) {
       auto t = std::make_shared<Table>(*s.tables[2]);
       t->push_back(0);
       s.tables[2] = t;
       s.vips[2].table_size += 1;
       s.header.table_entries += 1;
       ResealTable(s, 2);
     }},
    {"table entry past the backend list", SnapshotReject::kTableEntry,
     [](Snapshot& s) {
       SetTableEntry(s, 1, 17, static_cast<TableEntry>(s.vips[1].backend_count));
     }},
    {"the table's last entry far past the backend list", SnapshotReject::kTableEntry,
     [](Snapshot& s) { SetTableEntry(s, 1, s.vips[1].table_size - 1, TableEntry{0xffff}); }},
    {"table entry names a draining backend", SnapshotReject::kTableNotEligible,
     [](Snapshot& s) {
       s.backends[s.vips[0].backend_begin + 2].state = BackendState::kDraining;
       ResealTable(s, 0);
     }},
    {"backend without a source of its family", SnapshotReject::kEncap,
     [](Snapshot& s) { s.header.settings.flags = 0; }},
};

TEST_F(ShmTest, EveryCorruptionIsRejectedWithItsReasonAndTheRunningSnapshotStays) {
  Channel c = Open(prefix_);
  const auto specs = Specs(3, 4);
  uint64_t generation = 1;
  ASSERT_TRUE(c.writer.Publish(Build(generation, specs)).ok());
  ConfigReader::Result good = c.reader.Poll(nullptr);
  ASSERT_EQ(good.kind, ConfigReader::Result::kSnapshot);
  c.reader.Ack(generation);
  for (const Corruption& k : kCorruptions) {
    Snapshot s = Build(++generation, specs);
    k.writer(s);
    for (size_t i = 0; k.redigest && i < s.vips.size(); ++i) {
      const VipRecord& v = s.vips[i];
      if (uint64_t{v.backend_begin} + v.backend_count <= s.backends.size()) ResealTable(s, i);
    }
    s.header.backend_count = static_cast<uint32_t>(s.backends.size());
    s.header.checksum = SnapshotChecksum(s.header, s.vips, s.backends);
    ASSERT_TRUE(c.writer.Publish(s).ok()) << k.name;
    if (k.stray != nullptr) {
      const uint64_t word = ConfigHeaderOf(c.writer.segment()).published.load();
      k.stray(SlotOf(c.writer.segment(), PublishedSlot(word)));
    }
    ConfigReader::Result r = c.reader.Poll(k.fresh_reader ? nullptr : &good.snapshot);
    EXPECT_EQ(r.kind, ConfigReader::Result::kRejected) << k.name;
    EXPECT_EQ(ReasonName(r.verdict.reason), ReasonName(k.reason))
        << k.name << ": " << r.verdict.detail;
    EXPECT_FALSE(r.verdict.detail.empty()) << k.name;
    c.reader.Reject(r.generation, r.verdict);
    EXPECT_EQ(c.writer.reader().acked_generation, 1u) << k.name;
    EXPECT_EQ(c.writer.reader().rejected_generation, generation) << k.name;
  }
  // And the next good snapshot is taken as usual.
  ASSERT_TRUE(c.writer.Publish(Build(++generation, specs)).ok());
  EXPECT_EQ(c.reader.Poll(&good.snapshot).kind, ConfigReader::Result::kSnapshot);
}

TEST_F(ShmTest, PublishRefusesTablesThatWouldNotFitTheSlot) {
  Channel c = Open(prefix_);
  Snapshot s = Build(1, Specs(2, 3));
  s.vips[1].table_begin = kMaxTableEntries - 10;
  s.header.checksum = SnapshotChecksum(s.header, s.vips, s.backends);
  EXPECT_EQ(c.writer.Publish(s).code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(ShmTest, ABadSlotIndexOrAStaleSlotIsRejected) {
  Channel c = Open(prefix_);
  ASSERT_TRUE(c.writer.Publish(Build(1, Specs(1, 2))).ok());
  ConfigHeader& h = ConfigHeaderOf(c.writer.segment());
  h.published.store(PackPublished(2, 7));
  EXPECT_EQ(c.reader.Poll(nullptr).verdict.reason, SnapshotReject::kBadSlot);
  h.published.store(PackPublished(3, 0));  // slot 0 holds generation 1
  EXPECT_EQ(c.reader.Poll(nullptr).verdict.reason, SnapshotReject::kGenerationMismatch);
}

// A writer publishing as fast as it can while the reader polls: every snapshot the reader
// accepts is exactly the one written for its generation, and generations only go up. The
// writer only restamps prebuilt variants, so it laps the reader and the seqlock is exercised.
TEST_F(ShmTest, ConcurrentPublishingNeverYieldsATornSnapshot) {
  Channel c = Open(prefix_);
  constexpr uint64_t kGenerations = 20000;
  constexpr uint64_t kVariants = 16;
  std::vector<Snapshot> variants;
  for (uint64_t v = 0; v < kVariants; ++v) {
    auto specs = Specs(4, 8, static_cast<uint32_t>(1 + v), 4099);
    specs[1].backends[v % 8].state = BackendState::kDraining;
    variants.push_back(Build(1, specs));
  }
  auto stamped = [&](uint64_t g) {
    Snapshot s = variants[g % kVariants];
    s.header.generation = g;
    s.header.checksum = SnapshotChecksum(s.header, s.vips, s.backends);
    return s;
  };
  std::atomic<bool> done = false;
  std::thread writer([&] {
    for (uint64_t g = 1; g <= kGenerations; ++g) {
      if (!c.writer.Publish(stamped(g)).ok()) break;
      // Bursts of back-to-back publishes, then a breath: without it the writer laps every copy.
      if (g % 32 == 0) std::this_thread::sleep_for(std::chrono::microseconds(100));
    }
    done = true;
  });
  uint64_t last = 0;
  int accepted = 0;
  int torn = 0;
  while (!done || last < c.writer.published_generation()) {
    // No previous snapshot: every table is copied, which keeps each copy long.
    ConfigReader::Result r = c.reader.Poll(nullptr);
    if (r.kind == ConfigReader::Result::kNothing) continue;
    if (r.kind == ConfigReader::Result::kRejected) {
      ASSERT_EQ(r.verdict.reason, SnapshotReject::kTorn) << r.verdict.detail;
      ++torn;
    } else {
      ASSERT_GT(r.generation, last);
      ExpectSameSnapshot(r.snapshot, stamped(r.generation));
      ++accepted;
    }
    c.reader.Ack(r.generation);
    last = r.generation;
  }
  writer.join();
  EXPECT_EQ(c.writer.published_generation(), kGenerations);
  EXPECT_GT(accepted, 10);
  RecordProperty("accepted", accepted);
  RecordProperty("torn", torn);
}

TEST_F(ShmTest, ASlotLeftMidWriteIsRejectedAsTornAfterRetries) {
  Channel c = Open(prefix_);
  ASSERT_TRUE(c.writer.Publish(Build(1, Specs(1, 2))).ok());
  SnapshotSlot& slot = SlotOf(c.writer.segment(), 0);
  slot.seq.store(slot.seq.load() | 1);  // a writer that died while writing
  const ConfigReader::Result r = c.reader.Poll(nullptr);
  EXPECT_EQ(r.kind, ConfigReader::Result::kRejected);
  EXPECT_EQ(r.verdict.reason, SnapshotReject::kTorn);
}

TEST_F(ShmTest, StatsSegmentIsFreshPerProcessAndReadOnlyForReaders) {
  absl::StatusOr<MappedSegment> w = CreateStatsSegment(prefix_);
  ASSERT_TRUE(w.ok()) << w.status();
  Bump(StatsOf(*w).lcores[0].counters[static_cast<size_t>(LcoreCounter::kRxPackets)], 5);
  absl::StatusOr<MappedSegment> r = AttachStatsSegment(prefix_);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(StatsOf(*r).lcores[0].counters[0].load(), 5u);
  absl::StatusOr<MappedSegment> w2 = CreateStatsSegment(prefix_);  // fulcrumd restarted
  ASSERT_TRUE(w2.ok());
  EXPECT_EQ(StatsOf(*w2).lcores[0].counters[0].load(), 0u);
  EXPECT_EQ(StatsOf(*r).lcores[0].counters[0].load(), 5u) << "the old mapping is untouched";
  StatsOf(*w2).header.abi_major = kAbiMajor + 1;
  EXPECT_THAT(std::string(AttachStatsSegment(prefix_).status().message()),
              HasSubstr("same release as fulcrumd"));
}

TEST(ShmReasonsTest, RejectAndDropNamesAreUniqueAndPinned) {
  EXPECT_EQ(ReasonName(SnapshotReject::kTableEntry), "table_entry");
  EXPECT_EQ(static_cast<int>(SnapshotReject::kResources), 17);
  EXPECT_EQ(ReasonName(DropReason::kMtuExceeded), "mtu_exceeded");
  EXPECT_EQ(static_cast<int>(DropReason::kUnsupportedVipPacket), 7);
  EXPECT_EQ(ReasonName(LcoreCounter::kNoSnapshotPackets), "no_snapshot_packets");
  EXPECT_EQ(static_cast<int>(LcoreCounter::kNoSnapshotPackets), 14);
  EXPECT_EQ(ReasonName(LcoreCounter::kFlowRepeats), "flow_repeats");
  EXPECT_EQ(static_cast<int>(LcoreCounter::kFlowRepeats), 15);
  std::set<std::string_view> names;
  for (size_t i = 0; i < kDropReasonCount; ++i) names.insert(ReasonName(DropReason(i)));
  EXPECT_EQ(names.size(), kDropReasonCount);
}

}  // namespace
}  // namespace fulcrum::shm
