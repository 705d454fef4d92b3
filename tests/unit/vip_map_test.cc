// VipMap: exact service matches, the address prefilter, duplicates refused.
#include "dataplane/core/vip_map.h"

#include <random>
#include <set>
#include <tuple>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace fulcrum {
namespace {

VipKey Key(const char* address, uint8_t proto, uint16_t port) {
  const IpAddress ip = IpAddress::Parse(address).value();
  return VipKey{ip.bytes, ip.v6, proto, port};
}

TEST(VipMapTest, FindsEachServiceAndNothingThatDiffersInAnyField) {
  const std::vector<VipKey> keys = {Key("10.0.0.1", 6, 80), Key("10.0.0.1", 6, 443),
                                    Key("10.0.0.1", 17, 53), Key("2001:db8::1", 6, 80)};
  const VipMap m = VipMap::Build(keys).value();
  for (uint32_t i = 0; i < keys.size(); ++i) {
    EXPECT_EQ(m.Find(keys[i].address.data(), keys[i].v6, keys[i].proto, keys[i].port), i);
  }
  const VipKey& k = keys[0];
  EXPECT_EQ(m.Find(k.address.data(), k.v6, 6, 81), VipMap::kNotFound);
  EXPECT_EQ(m.Find(k.address.data(), k.v6, 17, 80), VipMap::kNotFound);
  EXPECT_EQ(m.Find(k.address.data(), true, 6, 80), VipMap::kNotFound) << "family is part of it";
  const VipKey other = Key("10.0.0.2", 6, 80);
  EXPECT_EQ(m.Find(other.address.data(), false, 6, 80), VipMap::kNotFound);
}

TEST(VipMapTest, AddressPrefilterKnowsExactlyTheVipAddresses) {
  const std::vector<VipKey> keys = {Key("10.0.0.1", 6, 80), Key("10.0.0.1", 6, 443),
                                    Key("2001:db8::1", 17, 53)};
  const VipMap m = VipMap::Build(keys).value();
  EXPECT_TRUE(m.IsVipAddress(Key("10.0.0.1", 0, 0).address.data(), false));
  EXPECT_TRUE(m.IsVipAddress(Key("2001:db8::1", 0, 0).address.data(), true));
  EXPECT_FALSE(m.IsVipAddress(Key("10.0.0.2", 0, 0).address.data(), false));
  EXPECT_FALSE(m.IsVipAddress(Key("2001:db8::2", 0, 0).address.data(), true));
  // IPv4 10.0.0.1 has the same first bytes as ... an IPv6 address starting 0a00:0001::
  EXPECT_FALSE(m.IsVipAddress(Key("a00:1::", 0, 0).address.data(), true));
}

TEST(VipMapTest, FragmentsOfAnAddressBelongToItsFirstVipOfThatProtocol) {
  const std::vector<VipKey> keys = {Key("10.0.0.1", 17, 53), Key("10.0.0.1", 6, 443),
                                    Key("10.0.0.1", 6, 80), Key("10.0.0.9", 6, 80)};
  const VipMap m = VipMap::Build(keys).value();
  const auto a = Key("10.0.0.1", 0, 0).address;
  EXPECT_EQ(m.FindByAddress(a.data(), false, 6), 1u);
  EXPECT_EQ(m.FindByAddress(a.data(), false, 17), 0u);
  EXPECT_EQ(m.FindByAddress(a.data(), false, 1), VipMap::kNotFound);
  EXPECT_EQ(m.FindByAddress(a.data(), true, 6), VipMap::kNotFound);
  EXPECT_EQ(m.FindByAddress(Key("10.0.0.9", 0, 0).address.data(), false, 6), 3u);
}

TEST(VipMapTest, AnAddressWithMoreServicesThanInlineFindsThemAll) {
  std::vector<VipKey> keys;
  for (uint16_t port = 1; port <= 40; ++port) keys.push_back(Key("10.0.0.1", 6, port));
  keys.push_back(Key("10.0.0.1", 17, 7));
  const VipMap m = VipMap::Build(keys).value();
  for (uint32_t i = 0; i < keys.size(); ++i) {
    EXPECT_EQ(m.Find(keys[i].address.data(), false, keys[i].proto, keys[i].port), i);
  }
  EXPECT_EQ(m.Find(keys[0].address.data(), false, 6, 41), VipMap::kNotFound);
  EXPECT_EQ(m.FindByAddress(keys[0].address.data(), false, 17), 40u);
  EXPECT_FALSE(VipMap::Build(std::vector<VipKey>{keys[30], keys[30]}).ok());
  std::vector<VipKey> dup = keys;
  dup.push_back(keys[35]);  // a duplicate of an overflowed service
  EXPECT_FALSE(VipMap::Build(dup).ok());
}

TEST(VipMapTest, AnEmptyMapFindsNothing) {
  const VipMap empty;
  EXPECT_FALSE(empty.IsVipAddress(Key("10.0.0.1", 0, 0).address.data(), false));
  EXPECT_EQ(empty.Find(Key("10.0.0.1", 0, 0).address.data(), false, 6, 80), VipMap::kNotFound);
  const VipMap built = VipMap::Build({}).value();
  EXPECT_EQ(built.Find(Key("10.0.0.1", 0, 0).address.data(), false, 6, 80), VipMap::kNotFound);
}

TEST(VipMapTest, DuplicateServicesAreRefused) {
  const std::vector<VipKey> keys = {Key("10.0.0.1", 6, 80), Key("10.0.0.1", 6, 80)};
  const absl::StatusOr<VipMap> m = VipMap::Build(keys);
  EXPECT_EQ(m.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(m.status().message()), ::testing::HasSubstr("VIPs 0 and 1"));
}

TEST(VipMapTest, AThousandRandomServicesAgreeWithASetModel) {
  std::mt19937 rng(3);
  std::vector<VipKey> keys;
  std::set<std::tuple<std::array<uint8_t, 16>, bool, uint8_t, uint16_t>> model;
  while (keys.size() < 1000) {
    VipKey k;
    k.v6 = rng() % 2;
    for (int i = 0; i < (k.v6 ? 16 : 4); ++i) k.address[i] = static_cast<uint8_t>(rng() % 4);
    k.proto = rng() % 2 ? 6 : 17;
    k.port = static_cast<uint16_t>(rng() % 8);
    if (model.emplace(k.address, k.v6, k.proto, k.port).second) keys.push_back(k);
  }
  const VipMap m = VipMap::Build(keys).value();
  for (int probe = 0; probe < 20000; ++probe) {
    VipKey k;
    k.v6 = rng() % 2;
    for (int i = 0; i < (k.v6 ? 16 : 4); ++i) k.address[i] = static_cast<uint8_t>(rng() % 4);
    k.proto = rng() % 2 ? 6 : 17;
    k.port = static_cast<uint16_t>(rng() % 8);
    const uint32_t found = m.Find(k.address.data(), k.v6, k.proto, k.port);
    const bool present = model.count({k.address, k.v6, k.proto, k.port}) > 0;
    ASSERT_EQ(found != VipMap::kNotFound, present);
    if (present) {
      EXPECT_EQ(keys[found].address, k.address);
      EXPECT_EQ(keys[found].port, k.port);
    }
  }
}

}  // namespace
}  // namespace fulcrum
