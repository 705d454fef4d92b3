// FlowHash: matches the independent reference, depends on every field and on the key, spreads.
#include "dataplane/core/flow_hash.h"

#include <bit>
#include <cstdlib>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/testing/testing.h"

namespace fulcrum {
namespace {

using ::fulcrum::testing::Tuple;

constexpr FlowHashKey kKey{0x0123456789abcdefull, 0xfedcba9876543210ull};

TEST(FlowHashTest, MatchesTheIndependentReferenceImplementation) {
  const char* path = std::getenv("FULCRUM_FLOW_HASH_VECTORS");
  ASSERT_NE(path, nullptr) << "run through meson test, which sets FULCRUM_FLOW_HASH_VECTORS";
  std::ifstream in(path);
  ASSERT_TRUE(in) << path;
  const nlohmann::json vectors = nlohmann::json::parse(in);
  ASSERT_GE(vectors.size(), 200u);
  int v6_count = 0;
  for (const auto& v : vectors) {
    const FlowHashKey key = FlowHashKey::FromHex(v["key"].get<std::string>()).value();
    const FlowTuple t = Tuple(v["src"], v["dst"], v["sport"], v["dport"], v["proto"]);
    v6_count += t.v6;
    const uint64_t h = FlowHash(t, key);
    EXPECT_EQ(h, std::stoull(v["hash"].get<std::string>(), nullptr, 16)) << v.dump();
    EXPECT_EQ(HashToSlot(h, v["table_size"]), v["slot"].get<uint32_t>()) << v.dump();
  }
  EXPECT_GT(v6_count, 50);  // both families are covered
}

TEST(FlowHashTest, KeyFromHexIsLittleEndianPerWord) {
  const FlowHashKey key = FlowHashKey::FromHex("0123456789abcdef00112233445566FF").value();
  EXPECT_EQ(key.k0, 0xefcdab8967452301ull);
  EXPECT_EQ(key.k1, 0xff66554433221100ull);
}

TEST(FlowHashTest, KeyFromHexRejectsWrongLengthAndNonHex) {
  auto short_key = FlowHashKey::FromHex("0123");
  EXPECT_EQ(short_key.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(short_key.status().message()), ::testing::HasSubstr("32 hex digits"));
  auto bad_digit = FlowHashKey::FromHex("0123456789abcdef0123456789abcdeg");
  EXPECT_THAT(std::string(bad_digit.status().message()),
              ::testing::HasSubstr("'g' at position 31"));
  EXPECT_FALSE(FlowHashKey::FromHex("").ok());
}

TEST(FlowHashTest, ADifferentKeyGivesUnrelatedHashes) {
  const FlowHashKey other{kKey.k0 ^ 1, kKey.k1};
  int equal = 0;
  int same_slot = 0;
  for (uint16_t port = 1; port <= 1000; ++port) {
    const FlowTuple t = Tuple("198.51.100.7", "203.0.113.10", port, 80, 6);
    equal += FlowHash(t, kKey) == FlowHash(t, other);
    same_slot += HashToSlot(FlowHash(t, kKey), 251) == HashToSlot(FlowHash(t, other), 251);
  }
  EXPECT_EQ(equal, 0);
  EXPECT_LT(same_slot, 20);  // 1000/251 ≈ 4 expected by chance
}

// Flipping any single input bit flips about half of the output bits (the avalanche property),
// so no field, and no part of a field, is ignored or weakly mixed.
void ExpectAvalanche(const FlowTuple& base) {
  const uint64_t h0 = FlowHash(base, kKey);
  auto flips = [&](FlowTuple t) { return std::popcount(FlowHash(t, kKey) ^ h0); };
  std::vector<int> counts;
  const int addr_bytes = base.v6 ? 16 : 4;
  for (int byte = 0; byte < addr_bytes; ++byte) {
    for (int bit = 0; bit < 8; ++bit) {
      FlowTuple s = base;
      s.src[byte] ^= static_cast<uint8_t>(1 << bit);
      counts.push_back(flips(s));
      FlowTuple d = base;
      d.dst[byte] ^= static_cast<uint8_t>(1 << bit);
      counts.push_back(flips(d));
    }
  }
  for (int bit = 0; bit < 16; ++bit) {
    FlowTuple s = base;
    s.src_port ^= static_cast<uint16_t>(1 << bit);
    counts.push_back(flips(s));
    FlowTuple d = base;
    d.dst_port ^= static_cast<uint16_t>(1 << bit);
    counts.push_back(flips(d));
  }
  for (int bit = 0; bit < 8; ++bit) {
    FlowTuple p = base;
    p.proto ^= static_cast<uint8_t>(1 << bit);
    counts.push_back(flips(p));
  }
  double sum = 0;
  for (int c : counts) {
    EXPECT_GE(c, 12) << "an input bit barely changes the hash";
    sum += c;
  }
  EXPECT_NEAR(sum / static_cast<double>(counts.size()), 32.0, 2.0);
}

TEST(FlowHashTest, EveryIpv4InputBitAvalanches) {
  ExpectAvalanche(Tuple("10.1.2.3", "10.10.0.100", 40000, 80, 6));
}

TEST(FlowHashTest, EveryIpv6InputBitAvalanches) {
  ExpectAvalanche(Tuple("2001:db8::1234", "fd00::100", 40000, 443, 6));
}

TEST(FlowHashTest, SwappingSourceAndDestinationChangesTheHash) {
  for (const auto& [a, b] : {std::pair{"10.0.0.1", "10.0.0.2"}, {"2001:db8::1", "2001:db8::2"}}) {
    EXPECT_NE(FlowHash(Tuple(a, b, 1000, 2000, 6), kKey),
              FlowHash(Tuple(b, a, 2000, 1000, 6), kKey));
  }
}

TEST(FlowHashTest, FamilyIsPartOfTheHash) {
  // An IPv4 tuple and the IPv6 tuple with the same leading address bytes must not collide.
  FlowTuple v4 = Tuple("10.0.0.1", "10.0.0.2", 1000, 80, 6);
  FlowTuple v6 = v4;
  v6.v6 = true;
  EXPECT_NE(FlowHash(v4, kKey), FlowHash(v6, kKey));
}

// Clients that differ only in source port (one client opening many connections), mapped to
// slots of the smallest table: a chi-square test of uniformity.
TEST(FlowHashTest, SequentialSourcePortsSpreadUniformlyOverSlots) {
  constexpr uint32_t kSlots = 251;
  constexpr int kFlows = 251 * 200;
  for (const char* client : {"192.0.2.1", "2001:db8::99"}) {
    const char* vip = IpAddress::Parse(client)->v6 ? "2001:db8::100" : "192.0.2.100";
    std::vector<int> hits(kSlots);
    for (int i = 0; i < kFlows; ++i) {
      const FlowTuple t = Tuple(client, vip, static_cast<uint16_t>(1024 + i % 64000),
                                static_cast<uint16_t>(80 + i / 64000), 6);
      ++hits[HashToSlot(FlowHash(t, kKey), kSlots)];
    }
    double chi2 = 0;
    const double expected = static_cast<double>(kFlows) / kSlots;
    for (int h : hits) chi2 += (h - expected) * (h - expected) / expected;
    // 250 degrees of freedom: mean 250, sd ≈ 22.4; 350 is beyond p = 0.0001.
    EXPECT_LT(chi2, 350) << client;
    EXPECT_GT(chi2, 160) << client << ": suspiciously regular";
  }
}

TEST(FlowHashTest, HashToSlotStaysInRangeAtTheExtremes) {
  for (uint32_t size : {251u, 65537u, 16777213u}) {
    EXPECT_EQ(HashToSlot(0, size), 0u);
    EXPECT_EQ(HashToSlot(~0ull, size), size - 1);
  }
}

}  // namespace
}  // namespace fulcrum
