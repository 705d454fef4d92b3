// FlowTable: full-key hits, exact expiry, insert failure and reuse, and a differential test.
#include "dataplane/core/flow_table.h"

#include <cstdint>
#include <random>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "dataplane/core/flow_hash.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/testing.h"

namespace fulcrum {
namespace {

using ::testing::HasSubstr;

constexpr FlowHashKey kKey{0x0123456789abcdefull, 0xfedcba9876543210ull};
constexpr uint8_t kTcp = 6;
constexpr uint8_t kUdp = 17;
constexpr FlowTimeouts kTimeouts{.tcp_s = 100, .tcp_closing_s = 10, .udp_s = 30};

using ::fulcrum::testing::Tuple;

FlowTuple ClientV4(uint16_t sport, uint8_t proto = kTcp) {
  return Tuple("198.51.100.7", "203.0.113.10", sport, 80, proto);
}

// A hash that lands in `group` with signature `sig` (1..127): collisions on demand.
uint64_t Crafted(uint32_t group, uint8_t sig) { return uint64_t{sig} << 57 | group; }

// Bit i set when refs[i] is a hit.
uint64_t HitMask(std::span<const FlowRef> refs) {
  uint64_t mask = 0;
  for (size_t i = 0; i < refs.size(); ++i) mask |= uint64_t{refs[i].hit()} << i;
  return mask;
}

MmapFlowTable NewTable(uint64_t capacity, const FlowTimeouts& timeouts = kTimeouts) {
  absl::StatusOr<MmapFlowTable> table = MmapFlowTable::Create(capacity, timeouts);
  EXPECT_TRUE(table.ok()) << table.status();
  return *std::move(table);
}

TEST(FlowTableTest, HitReturnsTheInsertedBackendForIpv4AndIpv6) {
  MmapFlowTable t = NewTable(1024);
  const FlowTuple v4 = ClientV4(40000);
  const FlowTuple v6 = Tuple("2001:db8::1234", "2001:db8::100", 40000, 443, kTcp);
  ASSERT_EQ(t->Insert(v4, FlowHash(v4, kKey), 7, 1000).status, FlowInsert::kInserted);
  ASSERT_EQ(t->Insert(v6, FlowHash(v6, kKey), 9, 1000).status, FlowInsert::kInserted);
  const FlowRef r4 = t->Lookup(v4, FlowHash(v4, kKey), 1000);
  const FlowRef r6 = t->Lookup(v6, FlowHash(v6, kKey), 1000);
  ASSERT_TRUE(r4.hit());
  ASSERT_TRUE(r6.hit());
  EXPECT_EQ(t->Backend(r4), 7u);
  EXPECT_EQ(t->Backend(r6), 9u);
  EXPECT_EQ(t->Key(r4), v4);
  EXPECT_EQ(t->Key(r6), v6);
  const FlowTuple absent = ClientV4(40001);
  EXPECT_FALSE(t->Lookup(absent, FlowHash(absent, kKey), 1000).hit());
}

// Every variant differs from the base in exactly one field, and all of them are given the
// base's hash: same bucket, same signature. Only the full-key comparison can tell them apart.
// An IPv4 address is bytes 0..3 (the other twelve are always zero), so only those vary.
std::vector<std::pair<std::string, FlowTuple>> SingleFieldVariants(const FlowTuple& base) {
  std::vector<std::pair<std::string, FlowTuple>> variants;
  for (int i = 0; i < (base.v6 ? 16 : 4); ++i) {
    FlowTuple s = base;
    s.src[i] ^= 0x01;
    variants.emplace_back("src byte " + std::to_string(i), s);
    FlowTuple d = base;
    d.dst[i] ^= 0x80;
    variants.emplace_back("dst byte " + std::to_string(i), d);
  }
  FlowTuple sp = base;
  sp.src_port ^= 0x0100;
  variants.emplace_back("src_port", sp);
  FlowTuple dp = base;
  dp.dst_port ^= 0x0001;
  variants.emplace_back("dst_port", dp);
  FlowTuple swapped_ports = base;
  std::swap(swapped_ports.src_port, swapped_ports.dst_port);
  variants.emplace_back("ports swapped", swapped_ports);
  FlowTuple pr = base;
  pr.proto = base.proto == kTcp ? kUdp : kTcp;
  variants.emplace_back("proto", pr);
  FlowTuple fam = base;
  fam.v6 = !base.v6;
  variants.emplace_back("family", fam);
  return variants;
}

TEST(FlowTableTest, AKeyDifferingInAnySingleFieldIsAMissEvenWithTheSameHash) {
  for (const FlowTuple& base : {Tuple("2001:db8:1:2:3:4:5:6", "2001:db8::100", 40000, 443, kTcp),
                                Tuple("10.1.2.3", "10.9.8.7", 1234, 53, kUdp)}) {
    for (const auto& [what, variant] : SingleFieldVariants(base)) {
      MmapFlowTable t = NewTable(48);
      const uint64_t hash = Crafted(5, 0x5e);
      ASSERT_EQ(t->Insert(base, hash, 1, 100).status, FlowInsert::kInserted);
      EXPECT_FALSE(t->Lookup(variant, hash, 100).hit()) << what;
      FlowRef ref;
      t->LookupBurst({&variant, 1}, {&hash, 1}, 100, {&ref, 1});
      EXPECT_FALSE(ref.hit()) << what;
      // Insert verifies the whole key too: the variant gets its own entry.
      const FlowInsertResult r = t->Insert(variant, hash, 2, 100);
      EXPECT_EQ(r.status, FlowInsert::kInserted) << what;
      EXPECT_EQ(t->Backend(t->Lookup(base, hash, 100)), 1u) << what;
      EXPECT_EQ(t->Backend(t->Lookup(variant, hash, 100)), 2u) << what;
    }
  }
}

TEST(FlowTableTest, IdleTimeoutExpiresExactlyAfterTheTimeoutPerProtocol) {
  MmapFlowTable t = NewTable(1024);
  const FlowTuple tcp = ClientV4(1, kTcp);
  const FlowTuple udp = ClientV4(2, kUdp);
  const FlowTuple sctp = ClientV4(3, 132);  // any protocol but TCP has the UDP timeout
  for (const FlowTuple* k : {&tcp, &udp, &sctp}) t->Insert(*k, FlowHash(*k, kKey), 1, 1000);
  auto live = [&](const FlowTuple& k, uint32_t now) {
    return t->Lookup(k, FlowHash(k, kKey), now).hit();
  };
  EXPECT_TRUE(live(tcp, 1000 + kTimeouts.tcp_s));
  EXPECT_FALSE(live(tcp, 1000 + kTimeouts.tcp_s + 1));
  EXPECT_TRUE(live(udp, 1000 + kTimeouts.udp_s));
  EXPECT_FALSE(live(udp, 1000 + kTimeouts.udp_s + 1));
  EXPECT_TRUE(live(sctp, 1000 + kTimeouts.udp_s));
  EXPECT_FALSE(live(sctp, 1000 + kTimeouts.udp_s + 1));
}

TEST(FlowTableTest, FinOrRstShortensOnlyTcpTimeouts) {
  MmapFlowTable t = NewTable(1024);
  const FlowTuple tcp = ClientV4(1, kTcp);
  const FlowTuple udp = ClientV4(2, kUdp);
  const FlowRef rt = t->Insert(tcp, FlowHash(tcp, kKey), 1, 1000).ref;
  const FlowRef ru = t->Insert(udp, FlowHash(udp, kKey), 1, 1000).ref;
  t->At(rt).MarkClosing();
  t->At(ru).MarkClosing();
  t->At(rt).MarkClosing();  // a second FIN changes nothing
  EXPECT_TRUE(t->Lookup(tcp, FlowHash(tcp, kKey), 1000 + kTimeouts.tcp_closing_s).hit());
  EXPECT_FALSE(t->Lookup(tcp, FlowHash(tcp, kKey), 1000 + kTimeouts.tcp_closing_s + 1).hit());
  EXPECT_TRUE(t->Lookup(udp, FlowHash(udp, kKey), 1000 + kTimeouts.udp_s).hit());
}

TEST(FlowTableTest, RefreshExtendsTheLifeFromTheRefreshTime) {
  MmapFlowTable t = NewTable(1024);
  const FlowTuple k = ClientV4(1);
  const uint64_t h = FlowHash(k, kKey);
  t->Insert(k, h, 1, 1000);
  const FlowRef ref = t->Lookup(k, h, 1050);
  ASSERT_TRUE(ref.hit());
  t->At(ref).Refresh(1050);
  EXPECT_TRUE(t->Lookup(k, h, 1050 + kTimeouts.tcp_s).hit());
  EXPECT_FALSE(t->Lookup(k, h, 1050 + kTimeouts.tcp_s + 1).hit());
  // A closing flow that keeps sending (the server is still answering) stays alive.
  t->At(ref).MarkClosing();
  t->At(ref).Refresh(1100);
  EXPECT_TRUE(t->Lookup(k, h, 1100 + kTimeouts.tcp_closing_s).hit());
  EXPECT_FALSE(t->Lookup(k, h, 1100 + kTimeouts.tcp_closing_s + 1).hit());
}

TEST(FlowTableTest, ATimeoutChangeAppliesToExistingEntries) {
  MmapFlowTable t = NewTable(1024);
  const FlowTuple k = ClientV4(1);
  const uint64_t h = FlowHash(k, kKey);
  t->Insert(k, h, 1, 1000);
  EXPECT_FALSE(t->Lookup(k, h, 1150).hit());
  ASSERT_TRUE(t->SetTimeouts({.tcp_s = 200, .tcp_closing_s = 10, .udp_s = 30}).ok());
  EXPECT_TRUE(t->Lookup(k, h, 1150).hit());
  ASSERT_TRUE(t->SetTimeouts({.tcp_s = 40, .tcp_closing_s = 10, .udp_s = 30}).ok());
  EXPECT_TRUE(t->Lookup(k, h, 1040).hit());
  EXPECT_FALSE(t->Lookup(k, h, 1041).hit());
}

TEST(FlowTableTest, SetTimeoutsRejectsBadValuesAndKeepsTheOldOnes) {
  MmapFlowTable t = NewTable(48);
  absl::Status zero = t->SetTimeouts({.tcp_s = 0, .tcp_closing_s = 0, .udp_s = 30});
  EXPECT_EQ(zero.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(zero.message()), HasSubstr("tcp_s must be in [1, 1073741824]"));
  absl::Status huge = t->SetTimeouts({.tcp_s = 100, .tcp_closing_s = 10, .udp_s = 1u << 31});
  EXPECT_THAT(std::string(huge.message()), HasSubstr("udp_s must be in [1, 1073741824] seconds, "
                                                     "got 2147483648"));
  absl::Status longer = t->SetTimeouts({.tcp_s = 100, .tcp_closing_s = 101, .udp_s = 30});
  EXPECT_THAT(std::string(longer.message()),
              HasSubstr("tcp_closing_s (101) must not exceed tcp_s (100)"));
  EXPECT_EQ(t->timeouts(), kTimeouts);
}

// Capacity 48 = 16 groups of 3. Distinct flows (source ports) that Crafted() hashes put in one
// group.
std::vector<FlowTuple> KeysForOneGroup(int n) {
  std::vector<FlowTuple> keys;
  for (int i = 0; i < n; ++i) keys.push_back(ClientV4(static_cast<uint16_t>(1000 + i)));
  return keys;
}

TEST(FlowTableTest, AFullBucketOverflowsIntoItsNeighbourOnlyThenInsertFailsAndSaysSo) {
  MmapFlowTable t = NewTable(48);
  const std::vector<FlowTuple> keys = KeysForOneGroup(7);
  for (uint8_t i = 0; i < 6; ++i) {
    const FlowInsertResult r = t->Insert(keys[i], Crafted(3, static_cast<uint8_t>(i + 1)), i, 0);
    ASSERT_EQ(r.status, FlowInsert::kInserted) << int{i};
    EXPECT_EQ(r.ref.group, i < 3 ? 3u : 4u) << int{i};  // home first, then home + 1, nowhere else
  }
  const FlowInsertResult full = t->Insert(keys[6], Crafted(3, 7), 6, 0);
  EXPECT_EQ(full.status, FlowInsert::kFull);
  EXPECT_FALSE(full.ref.hit());
  EXPECT_EQ(t->used(), 6u);
  for (uint8_t i = 0; i < 6; ++i) {
    const FlowRef ref = t->Lookup(keys[i], Crafted(3, static_cast<uint8_t>(i + 1)), 0);
    ASSERT_TRUE(ref.hit()) << int{i};
    EXPECT_EQ(t->Backend(ref), i);
  }
  EXPECT_FALSE(t->Lookup(keys[6], Crafted(3, 7), 0).hit());
  // Other buckets still accept, including group 4 whose ways group 3 took (it overflows to 5).
  EXPECT_EQ(t->Insert(keys[6], Crafted(4, 7), 6, 0).ref.group, 5u);
  EXPECT_EQ(t->Insert(keys[6], Crafted(9, 7), 6, 0).status, FlowInsert::kInserted);
}

TEST(FlowTableTest, TheLastGroupOverflowsIntoTheFirst) {
  MmapFlowTable t = NewTable(48);
  const std::vector<FlowTuple> keys = KeysForOneGroup(4);
  for (uint8_t i = 0; i < 4; ++i) {
    t->Insert(keys[i], Crafted(15, static_cast<uint8_t>(i + 1)), i, 0);
  }
  const FlowRef ref = t->Lookup(keys[3], Crafted(15, 4), 0);
  ASSERT_TRUE(ref.hit());
  EXPECT_EQ(ref.group, 0u);
}

TEST(FlowTableTest, ExpiredWaysAreReusedWithoutGrowingOccupancy) {
  MmapFlowTable t = NewTable(48);
  const std::vector<FlowTuple> old_keys = KeysForOneGroup(6);
  for (uint8_t i = 0; i < 6; ++i) {
    t->Insert(old_keys[i], Crafted(3, static_cast<uint8_t>(i + 1)), i, 0);
  }
  const uint32_t later = kTimeouts.tcp_s + 1;
  for (uint8_t i = 0; i < 6; ++i) {
    FlowTuple k = old_keys[i];
    k.dst_port = 8080;  // new flows, same bucket
    const FlowInsertResult r = t->Insert(k, Crafted(3, static_cast<uint8_t>(100 + i)), 50, later);
    EXPECT_EQ(r.status, FlowInsert::kInserted) << int{i};
    EXPECT_EQ(r.ref.group, i < 3 ? 3u : 4u) << int{i};
  }
  EXPECT_EQ(t->used(), 6u);
  EXPECT_EQ(t->CountLive(later), 6u);
}

TEST(FlowTableTest, ReinsertingALiveKeyReportsItAndAnExpiredKeyReusesItsOwnWay) {
  MmapFlowTable t = NewTable(48);
  const std::vector<FlowTuple> keys = KeysForOneGroup(3);  // a, b, k
  const FlowTuple& k = keys[2];
  const uint64_t hk = Crafted(3, 3);
  t->Insert(keys[0], Crafted(3, 1), 1, 0);
  t->Insert(keys[1], Crafted(3, 2), 2, 0);
  const FlowRef first = t->Insert(k, hk, 3, 0).ref;
  ASSERT_EQ(first.way, 2);
  // Two packets of one new flow in a burst: the second insert finds the first's entry.
  const FlowInsertResult again = t->Insert(k, hk, 99, 0);
  EXPECT_EQ(again.status, FlowInsert::kPresent);
  EXPECT_EQ(again.ref.way, first.way);
  EXPECT_EQ(t->Backend(again.ref), 3u);

  t->Remove(t->Lookup(keys[0], Crafted(3, 1), 0));  // way 0 is now empty
  t->At(t->Lookup(keys[1], Crafted(3, 2), 50)).Refresh(50);
  const uint32_t later = kTimeouts.tcp_s + 1;  // k expired, b live
  const FlowInsertResult re = t->Insert(k, hk, 4, later);
  EXPECT_EQ(re.status, FlowInsert::kInserted);
  EXPECT_EQ(re.ref.way, first.way) << "took a free way and left a stale copy of the key";
  // With a much longer timeout a stale copy would come back to life; there is none.
  ASSERT_TRUE(t->SetTimeouts({.tcp_s = 100000, .tcp_closing_s = 10, .udp_s = 30}).ok());
  EXPECT_EQ(t->CountLive(later), 2u);
  EXPECT_EQ(t->Backend(t->Lookup(k, hk, later)), 4u);
}

TEST(FlowTableTest, SetBackendReplacesTheBackendOfAnEntry) {
  MmapFlowTable t = NewTable(1024);
  const FlowTuple k = ClientV4(1);
  const uint64_t h = FlowHash(k, kKey);
  t->Insert(k, h, 1, 0);
  t->At(t->Lookup(k, h, 0)).SetBackend(42);
  EXPECT_EQ(t->Backend(t->Lookup(k, h, 5)), 42u);
  // Every id up to kMaxBackend survives the 16-bit store, in Insert and in SetBackend.
  t->At(t->Lookup(k, h, 5)).SetBackend(FlowTable::kMaxBackend);
  EXPECT_EQ(t->Backend(t->Lookup(k, h, 5)), FlowTable::kMaxBackend);
  const FlowTuple k2 = ClientV4(2);
  const uint64_t h2 = FlowHash(k2, kKey);
  t->Insert(k2, h2, FlowTable::kMaxBackend - 1, 0);
  EXPECT_EQ(t->Backend(t->Lookup(k2, h2, 5)), FlowTable::kMaxBackend - 1);
}

// IPv4 keys live whole in the bucket line, IPv6 addresses in the separate v6 array: flows of
// both families in the same and in adjacent groups must each keep exactly their own key.
TEST(FlowTableTest, IpV4AndIpv6FlowsShareAGroupAndKeepTheirWholeKeys) {
  MmapFlowTable t = NewTable(48);
  std::vector<std::pair<FlowTuple, uint64_t>> flows;
  for (uint32_t group : {6u, 7u}) {
    for (uint8_t w = 0; w < 3; ++w) {
      const auto port = static_cast<uint16_t>(1000 + group * 10 + w);
      const FlowTuple k = w != 1  // IPv6 in ways 0 and 2 of both groups, IPv4 in way 1
                              ? Tuple("2001:db8::" + std::to_string(group * 10 + w),
                                      "2001:db8::100", port, 443, kTcp)
                              : ClientV4(port, kUdp);
      flows.emplace_back(k, Crafted(group, 9));  // one signature (but the family bit)
    }
  }
  for (size_t i = 0; i < flows.size(); ++i) {
    const FlowInsertResult r =
        t->Insert(flows[i].first, flows[i].second, static_cast<uint32_t>(100 + i), 0);
    ASSERT_EQ(r.status, FlowInsert::kInserted) << i;
    EXPECT_EQ(r.ref.group, i < 3 ? 6u : 7u) << i;
  }
  for (size_t i = 0; i < flows.size(); ++i) {
    const FlowRef ref = t->Lookup(flows[i].first, flows[i].second, 0);
    ASSERT_TRUE(ref.hit()) << i;
    EXPECT_EQ(t->Backend(ref), 100 + i) << i;
    EXPECT_EQ(t->Key(ref), flows[i].first) << i;
  }
  // The IPv6 key of one way, asked for as another way's address: a miss.
  FlowTuple other = flows[0].first;
  other.src = flows[2].first.src;
  EXPECT_FALSE(t->Lookup(other, flows[0].second, 0).hit());
}

TEST(FlowTableTest, RemoveMakesAMissAndFreesTheWay) {
  MmapFlowTable t = NewTable(48);
  const std::vector<FlowTuple> keys = KeysForOneGroup(7);
  for (uint8_t i = 0; i < 6; ++i) {
    t->Insert(keys[i], Crafted(3, static_cast<uint8_t>(i + 1)), i, 0);
  }
  ASSERT_EQ(t->Insert(keys[6], Crafted(3, 7), 6, 0).status, FlowInsert::kFull);
  t->Remove(t->Lookup(keys[4], Crafted(3, 5), 0));  // a displaced entry, in group 4
  EXPECT_FALSE(t->Lookup(keys[4], Crafted(3, 5), 0).hit());
  EXPECT_EQ(t->used(), 5u);
  const FlowInsertResult r = t->Insert(keys[6], Crafted(3, 7), 6, 0);
  EXPECT_EQ(r.status, FlowInsert::kInserted);
  EXPECT_EQ(t->Backend(t->Lookup(keys[6], Crafted(3, 7), 0)), 6u);
}

TEST(FlowTableTest, OccupancyCountsEntriesUntilReusedOrSwept) {
  MmapFlowTable t = NewTable(1024);
  std::vector<FlowTuple> keys;
  for (uint16_t i = 0; i < 10; ++i) keys.push_back(ClientV4(i, i < 4 ? kUdp : kTcp));
  for (const FlowTuple& k : keys) t->Insert(k, FlowHash(k, kKey), 1, 0);
  EXPECT_EQ(t->used(), 10u);
  const uint32_t now = kTimeouts.udp_s + 1;  // the 4 UDP flows expired
  EXPECT_EQ(t->used(), 10u) << "expiry is lazy";
  EXPECT_EQ(t->CountLive(now), 6u);
  // Reinserting one expired flow reuses its way: occupancy stays.
  t->Insert(keys[0], FlowHash(keys[0], kKey), 1, now);
  EXPECT_EQ(t->used(), 10u);
  EXPECT_EQ(t->Sweep(now, 1u << 20), 3u);
  EXPECT_EQ(t->used(), 7u);
  EXPECT_EQ(t->CountLive(now), 7u);
}

TEST(FlowTableTest, SweepIsIncrementalAndKeepsDisplacedLiveEntriesReachable) {
  MmapFlowTable t = NewTable(48);  // 16 groups
  const std::vector<FlowTuple> keys = KeysForOneGroup(4);
  for (uint8_t i = 0; i < 4; ++i) {
    t->Insert(keys[i], Crafted(3, static_cast<uint8_t>(i + 1)), i, 0);
  }
  EXPECT_EQ(t->Sweep(0, 1000), 0u);
  ASSERT_TRUE(t->Lookup(keys[3], Crafted(3, 4), 0).hit()) << "overflow flag cleared too early";
  // Keep the home flows alive, let the displaced one expire.
  for (uint8_t i = 0; i < 3; ++i) {
    t->At(t->Lookup(keys[i], Crafted(3, static_cast<uint8_t>(i + 1)), 90)).Refresh(90);
  }
  const uint32_t now = kTimeouts.tcp_s + 1;
  EXPECT_EQ(t->Sweep(now, 3), 0u);  // groups 0..2: nothing there
  EXPECT_EQ(t->Sweep(now, 1), 1u);  // group 3 frees its displaced entry in group 4
  EXPECT_EQ(t->used(), 3u);
  ASSERT_TRUE(t->SetTimeouts({.tcp_s = 100000, .tcp_closing_s = 10, .udp_s = 30}).ok());
  EXPECT_FALSE(t->Lookup(keys[3], Crafted(3, 4), now).hit()) << "swept entry came back";
}

TEST(FlowTableTest, BurstLookupResolvesSeveralKeysOfOneBucketAndDuplicates) {
  MmapFlowTable t = NewTable(48);
  const std::vector<FlowTuple> keys = KeysForOneGroup(6);
  std::vector<uint64_t> hashes;
  for (uint8_t i = 0; i < 6; ++i) hashes.push_back(Crafted(7, static_cast<uint8_t>(i % 2 + 1)));
  for (uint16_t i = 0; i < 5; ++i) t->Insert(keys[i], hashes[i], i, 0);  // 4th, 5th overflow
  std::vector<FlowTuple> burst = {keys[4], keys[5], keys[0], keys[4], keys[3]};
  std::vector<uint64_t> burst_hashes = {hashes[4], hashes[5], hashes[0], hashes[4], hashes[3]};
  std::vector<FlowRef> refs(burst.size());
  t->LookupBurst(burst, burst_hashes, 0, refs);
  EXPECT_EQ(HitMask(refs), 0b11101u);
  EXPECT_EQ(t->Backend(refs[0]), 4u);
  EXPECT_EQ(t->Backend(refs[2]), 0u);
  EXPECT_EQ(t->Backend(refs[3]), 4u);
  EXPECT_EQ(t->Backend(refs[4]), 3u);
  EXPECT_EQ(refs[1].group, 7u) << "a miss names the home group";
}

// --- Differential test ------------------------------------------------------------------

struct ModelEntry {
  uint32_t backend;
  uint32_t last_seen;
  bool closing;
  FlowRef at;  // where the table said it put the entry
};

struct TupleHash {
  size_t operator()(const FlowTuple& t) const { return FlowHash(t, kKey); }
};

// A random workload of bursts against a small table (many full buckets and overflows),
// checked op by op against a std::unordered_map model: every lookup (batched and single),
// every insert outcome and where it went, refresh, close, replace, remove, expiry, sweep.
void RunDifferential(uint32_t seed, bool colliding_signatures) {
  constexpr uint64_t kCapacity = 192;  // 64 groups
  MmapFlowTable t = NewTable(kCapacity);
  const uint32_t groups = kCapacity / flow_table_internal::kWays;
  std::mt19937 rng(seed);
  auto uniform = [&](uint32_t n) { return static_cast<uint32_t>(rng() % n); };

  std::vector<FlowTuple> pool;
  std::vector<uint64_t> pool_hash;
  std::unordered_set<FlowTuple, TupleHash> distinct;
  while (pool.size() < 600) {
    FlowTuple k;
    k.v6 = uniform(3) == 0;
    for (int b = 0; b < (k.v6 ? 16 : 4); ++b) {
      k.src[b] = static_cast<uint8_t>(uniform(4));  // small alphabet: near-miss keys
      k.dst[b] = static_cast<uint8_t>(uniform(2));
    }
    k.src_port = static_cast<uint16_t>(uniform(8));
    k.dst_port = static_cast<uint16_t>(80 + uniform(2));
    k.proto = uniform(2) == 0 ? kTcp : kUdp;
    uint64_t h = FlowHash(k, kKey);
    if (colliding_signatures) h = (h & 0xffffffffull) | (h >> 57 & 3) << 57;
    if (!distinct.insert(k).second) continue;
    pool.push_back(k);
    pool_hash.push_back(h);
  }
  std::unordered_map<FlowTuple, ModelEntry, TupleHash> model;
  auto timeout = [&](const FlowTuple& k, const ModelEntry& e) {
    if (k.proto != kTcp) return kTimeouts.udp_s;
    return e.closing ? kTimeouts.tcp_closing_s : kTimeouts.tcp_s;
  };
  uint32_t now = 1000;
  auto model_live = [&](const FlowTuple& k) -> ModelEntry* {
    auto it = model.find(k);
    if (it == model.end()) return nullptr;
    if (now - it->second.last_seen > timeout(k, it->second)) {
      model.erase(it);
      return nullptr;
    }
    return &it->second;
  };
  auto live_in_group = [&](uint32_t group) {
    int n = 0;
    for (auto it = model.begin(); it != model.end(); ++it) {
      n += it->second.at.group == group &&
           now - it->second.last_seen <= timeout(it->first, it->second);
    }
    return n;
  };

  int hits = 0, inserted = 0, full = 0, present = 0, overflowed = 0;
  for (int round = 0; round < 4000; ++round) {
    now += uniform(10) == 0 ? 25 : uniform(3);
    const size_t n = 1 + uniform(FlowTable::kMaxBurst);
    std::vector<FlowTuple> keys(n);
    std::vector<uint64_t> hashes(n);
    // First a table under its capacity (mostly hits), then overloaded (many full buckets).
    const uint32_t active = round < 2000 ? 200 : static_cast<uint32_t>(pool.size());
    for (size_t i = 0; i < n; ++i) {
      const uint32_t p = uniform(active);
      keys[i] = pool[p];
      hashes[i] = pool_hash[p];
    }
    std::vector<FlowRef> refs(n);
    t->LookupBurst(keys, hashes, now, refs);
    // The other prefetch order must agree exactly.
    std::vector<FlowRef> refs_whole(n);
    t->LookupBurst<FlowPrefetch::kWholeGroup>(keys, hashes, now, refs_whole);
    for (size_t i = 0; i < n; ++i) {
      ASSERT_EQ(refs_whole[i].group, refs[i].group);
      ASSERT_EQ(refs_whole[i].way, refs[i].way);
    }
    // The pipeline's order: its prefetches for the burst, then one Lookup per key as it goes
    // (the `single` lookups below, each checked against the burst's ref and the model).
    for (size_t i = 0; i < n; ++i) {
      t->PrefetchBucket(hashes[i]);
      if (keys[i].v6) t->PrefetchV6Key(hashes[i]);
    }
    // Keys an earlier packet of this burst inserted or removed: their burst refs are stale.
    std::unordered_set<FlowTuple, TupleHash> inserted_now;
    std::unordered_set<FlowTuple, TupleHash> removed_now;
    for (size_t i = 0; i < n; ++i) {
      const FlowTuple& k = keys[i];
      const uint64_t h = hashes[i];
      const FlowRef single = t->Lookup(k, h, now);
      ModelEntry* e = model_live(k);
      ASSERT_EQ(single.hit(), e != nullptr) << "round " << round << " key " << i;
      FlowRef ref = refs[i];
      if (removed_now.count(k) != 0) {
        ref = single;
      } else if (inserted_now.count(k) != 0) {
        // What the pipeline does: the burst said miss, so it inserts, and learns the entry.
        ASSERT_FALSE(ref.hit());
        const FlowInsertResult r = t->Insert(k, h, 12345, now);
        ASSERT_EQ(r.status, FlowInsert::kPresent);
        ref = r.ref;
        ++present;
      } else {
        ASSERT_EQ(ref.hit(), single.hit()) << "round " << round;
      }
      ASSERT_EQ(ref.group, single.group);
      ASSERT_EQ(ref.way, single.way);
      if (e != nullptr) {
        ++hits;
        ASSERT_EQ(t->Backend(ref), e->backend);
        ASSERT_EQ(ref.group, e->at.group);
        ASSERT_EQ(ref.way, e->at.way);
        ASSERT_EQ(t->Key(ref), k);
        t->At(ref).Refresh(now);
        e->last_seen = now;
        switch (uniform(16)) {
          case 0:
            t->At(ref).MarkClosing();
            e->closing = true;
            break;
          case 1:
            e->backend = uniform(1000);
            t->At(ref).SetBackend(e->backend);
            break;
          case 2:
            t->Remove(ref);
            model.erase(k);
            removed_now.insert(k);
            break;
          default:
            break;
        }
        continue;
      }
      ASSERT_EQ(ref.group, static_cast<uint32_t>(h) % groups);
      const uint32_t backend = uniform(1000);
      const FlowInsertResult r = t->Insert(k, h, backend, now);
      const uint32_t home = static_cast<uint32_t>(h) % groups;
      const uint32_t next = (home + 1) % groups;
      switch (r.status) {
        case FlowInsert::kInserted:
          ++inserted;
          ASSERT_TRUE(r.ref.group == home || r.ref.group == next);
          if (r.ref.group == next) {
            ++overflowed;
            ASSERT_EQ(live_in_group(home), 3) << "overflowed while home had room";
          }
          ASSERT_EQ(t->Backend(r.ref), backend);
          model[k] = ModelEntry{backend, now, false, r.ref};
          inserted_now.insert(k);
          break;
        case FlowInsert::kPresent:
          FAIL() << "the lookup just missed, and no packet of this burst inserted it since";
          break;
        case FlowInsert::kFull:
          ++full;
          ASSERT_FALSE(r.ref.hit());
          ASSERT_EQ(live_in_group(home), 3);
          ASSERT_EQ(live_in_group(next), 3);
          break;
      }
      // A second packet of the same new flow right away: must not make a second entry.
      if (r.status == FlowInsert::kInserted && uniform(8) == 0) {
        const FlowInsertResult dup = t->Insert(k, h, backend + 1, now);
        ASSERT_EQ(dup.status, FlowInsert::kPresent);
        ASSERT_EQ(dup.ref.group, r.ref.group);
        ASSERT_EQ(dup.ref.way, r.ref.way);
        ++present;
      }
    }
    if (uniform(50) == 0) t->Sweep(now, uniform(groups));
    if (round % 100 == 0) {
      size_t live = 0;
      for (const FlowTuple& k : pool) live += model_live(k) != nullptr;
      ASSERT_EQ(t->CountLive(now), live) << "round " << round;
      ASSERT_GE(t->used(), live);
    }
  }
  // The workload reached the cases it is meant to check.
  EXPECT_GT(hits, 20000);
  EXPECT_GT(inserted, 5000);
  EXPECT_GT(full, 200);
  EXPECT_GT(overflowed, 200);
  EXPECT_GT(present, 200);
  ::testing::Test::RecordProperty("hits", hits);
  ::testing::Test::RecordProperty("full", full);
  ::testing::Test::RecordProperty("overflowed", overflowed);
  ::testing::Test::RecordProperty("present", present);
  ::testing::Test::RecordProperty("inserted", inserted);
}

TEST(FlowTableTest, BurstAndSingleLookupsAgreeWithAMapModelOnARandomWorkload) {
  RunDifferential(1, false);
}

TEST(FlowTableTest, BurstAndSingleLookupsAgreeWithAMapModelWhenSignaturesCollide) {
  RunDifferential(2, true);
}

TEST(FlowTableTest, CapacityIsRoundedUpToThreeTimesAPowerOfTwo) {
  EXPECT_EQ(*FlowTable::RoundedCapacity(3), 3u);
  EXPECT_EQ(*FlowTable::RoundedCapacity(4), 6u);
  EXPECT_EQ(*FlowTable::RoundedCapacity(6), 6u);
  EXPECT_EQ(*FlowTable::RoundedCapacity(7), 12u);
  EXPECT_EQ(*FlowTable::RoundedCapacity(1000000), 3u << 19);
  EXPECT_EQ(*FlowTable::RoundedCapacity(1u << 24), 3u << 23);
  EXPECT_EQ(*FlowTable::RoundedCapacity(FlowTable::kMaxCapacity), FlowTable::kMaxCapacity);
  EXPECT_EQ(NewTable(1000)->capacity(), 1536u);
  EXPECT_EQ(NewTable(3)->capacity(), 3u);
}

TEST(FlowTableTest, CreateRejectsBadCapacityMemoryAndTimeoutsWithSpecificMessages) {
  absl::StatusOr<uint64_t> zero = FlowTable::RoundedCapacity(0);
  EXPECT_EQ(zero.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(zero.status().message()),
              HasSubstr("capacity must be in [3, 201326592] flows, got 0"));
  EXPECT_FALSE(FlowTable::BytesNeeded(FlowTable::kMaxCapacity + 1).ok());
  EXPECT_FALSE(MmapFlowTable::Create(2).ok());

  // Capacity 16 rounds up to 8 groups of 3 flows, 160 bytes each.
  alignas(64) static uint8_t memory[8 * 160 + 64];
  EXPECT_TRUE(FlowTable::Create(memory, 8 * 160, 16).ok());
  absl::StatusOr<FlowTable> small = FlowTable::Create(memory, 8 * 160 - 1, 16);
  EXPECT_THAT(std::string(small.status().message()),
              HasSubstr("capacity 24 (rounded up from 16) needs 1280 bytes, got 1279"));
  absl::StatusOr<FlowTable> misaligned = FlowTable::Create(memory + 8, 8 * 160, 16);
  EXPECT_THAT(std::string(misaligned.status().message()), HasSubstr("64-byte aligned"));
  EXPECT_THAT(std::string(FlowTable::Create(nullptr, 0, 16).status().message()), HasSubstr("null"));
  absl::StatusOr<FlowTable> bad_timeouts =
      FlowTable::Create(memory, sizeof(memory), 16, {.tcp_s = 1, .tcp_closing_s = 2});
  EXPECT_EQ(bad_timeouts.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(FlowTableTest, AtMost64BytesPerFlowAt12MiCapacity) {
  using flow_table_internal::Bucket;
  static_assert(sizeof(Bucket) == 64 && alignof(Bucket) == 64);
  static_assert(flow_table_internal::kGroupBytes == 64 + 3 * 32);
  constexpr uint64_t k12M = uint64_t{3} << 22;
  const size_t bytes = FlowTable::BytesNeeded(k12M).value();
  EXPECT_EQ(bytes, k12M / flow_table_internal::kWays * flow_table_internal::kGroupBytes);
  const double per_flow = static_cast<double>(bytes) / static_cast<double>(k12M);
  EXPECT_LE(per_flow, 64.0);
  EXPECT_NEAR(per_flow, 160.0 / 3, 1e-9);
  // The table object itself is the only other memory, and it is tiny.
  EXPECT_LE(sizeof(FlowTable), 64u);
}

TEST(FlowTableTest, MmapFlowTableIsHugePageAlignedAndMovable) {
  MmapFlowTable a = NewTable(1u << 16);
  EXPECT_EQ(a.mapped_bytes() % (2u << 20), 0u);
  const FlowTuple k = ClientV4(1);
  a->Insert(k, FlowHash(k, kKey), 5, 0);
  MmapFlowTable b = std::move(a);
  EXPECT_EQ(b->Backend(b->Lookup(k, FlowHash(k, kKey), 0)), 5u);
  EXPECT_EQ(b->used(), 1u);
  MmapFlowTable c = NewTable(48);
  c = std::move(b);
  EXPECT_EQ(c->capacity(), 3u << 15);
  EXPECT_EQ(c->Backend(c->Lookup(k, FlowHash(k, kKey), 0)), 5u);
}

}  // namespace
}  // namespace fulcrum
