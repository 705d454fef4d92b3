// IpAddress: text round trips, family, ordering, and rejection of bad text.
#include "dataplane/core/ip_address.h"

#include "gtest/gtest.h"

namespace fulcrum {
namespace {

TEST(IpAddressTest, Ipv4RoundTripsAndUsesTheFirstFourBytes) {
  const IpAddress ip = IpAddress::Parse("10.10.2.11").value();
  EXPECT_FALSE(ip.v6);
  EXPECT_EQ(ip, IpAddress::V4(10, 10, 2, 11));
  EXPECT_EQ(ip.bytes[12], 0);
  EXPECT_EQ(ip.ToString(), "10.10.2.11");
}

TEST(IpAddressTest, Ipv6RoundTripsInCanonicalForm) {
  const IpAddress ip = IpAddress::Parse("fd00:0:0::0002").value();
  EXPECT_TRUE(ip.v6);
  EXPECT_EQ(ip.bytes[15], 2);
  EXPECT_EQ(ip.ToString(), "fd00::2");
}

TEST(IpAddressTest, FamilyDistinguishesEqualBytes) {
  IpAddress v6 = IpAddress::V4(10, 0, 0, 1);
  v6.v6 = true;
  EXPECT_NE(v6, IpAddress::V4(10, 0, 0, 1));
}

TEST(IpAddressTest, RejectsMalformedText) {
  for (const char* bad :
       {"", "10.0.0", "10.0.0.256", "1.2.3.4 ", "fd00:::1", "host.example", "10.0.0.1/24"}) {
    auto ip = IpAddress::Parse(bad);
    EXPECT_FALSE(ip.ok()) << bad;
    EXPECT_EQ(ip.status().code(), absl::StatusCode::kInvalidArgument) << bad;
  }
}

}  // namespace
}  // namespace fulcrum
