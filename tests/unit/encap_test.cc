// Encap: byte-identical to scapy for every kind, valid checksums, entropy fields in range.
#include "dataplane/core/encap.h"

#include <cstdlib>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "dataplane/core/parse.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/testing/testing.h"

namespace fulcrum {
namespace {

using ::fulcrum::testing::FromHex;
using ::fulcrum::testing::PacketFixtures;
using ::fulcrum::testing::ToHex;
using nlohmann::json;
using ::testing::HasSubstr;

MacAddress Mac(const std::string& text) {
  MacAddress mac{};
  for (size_t i = 0; i < 6; ++i) {
    mac[i] = static_cast<uint8_t>(std::stoul(text.substr(i * 3, 2), nullptr, 16));
  }
  return mac;
}

IpAddress Ip(const std::string& text) {
  auto ip = IpAddress::Parse(text);
  EXPECT_TRUE(ip.ok()) << text;
  return ip.ok() ? *ip : IpAddress{};
}

EncapConfig ConfigOf(const json& c) {
  EncapConfig config;
  config.src_mac = Mac(c["src_mac"]);
  config.gateway_mac = Mac(c["gateway_mac"]);
  if (!c["source_v4"].is_null()) config.source_v4 = Ip(c["source_v4"]);
  if (!c["source_v6"].is_null()) config.source_v6 = Ip(c["source_v6"]);
  config.ttl = c["ttl"];
  config.type = c["type"] == "gue" ? EncapType::kGue : EncapType::kIpip;
  config.gue_port = c["gue_port"];
  return config;
}

uint64_t FlowHashOf(const json& c) {
  return std::stoull(c["flow_hash"].get<std::string>(), nullptr, 16);
}

EncapConfig DefaultConfig() {
  EncapConfig config;
  config.src_mac = {0x02, 0, 0, 0, 1, 1};
  config.gateway_mac = {0x02, 0, 0, 0, 0xfe, 0xfe};
  config.source_v4 = IpAddress::V4(192, 0, 2, 1);
  config.source_v6 = Ip("2001:db8:1b::1");
  return config;
}

// A frame buffer of exactly header + inner bytes on the heap: AddressSanitizer catches a write
// before the header or past the inner packet.
struct Frame {
  Frame(uint32_t header_len, const std::vector<uint8_t>& inner)
      : size(header_len + inner.size()),
        bytes(new uint8_t[size]),
        inner_ip(bytes.get() + header_len) {
    std::memset(bytes.get(), 0xa5, header_len);
    std::memcpy(inner_ip, inner.data(), inner.size());
  }
  size_t size;
  std::unique_ptr<uint8_t[]> bytes;
  uint8_t* inner_ip;
};

// The template's own source MAC (the config's src_mac, which the fixtures expect), as the port
// MAC WriteEncap puts over it.
EncapSourceMac Placeholder(const EncapTemplate& t) {
  MacAddress mac;
  std::memcpy(mac.data(), t.bytes.data() + 6, 6);
  return EncapSourceMac::Of(mac);
}

template <EncapKind kKind>
uint32_t WriteTyped(const EncapTemplate& t, uint8_t* inner, uint32_t len, uint8_t tos,
                    uint64_t hash, const EncapSourceMac& src) {
  return WriteEncap<kKind>(t, inner, len, tos, hash, src);
}

uint32_t WriteWithTemplateParameter(const EncapTemplate& t, uint8_t* inner, uint32_t len,
                                    uint8_t tos, uint64_t hash, const EncapSourceMac& src) {
  switch (t.kind) {
    case EncapKind::kIpip4:
      return WriteTyped<EncapKind::kIpip4>(t, inner, len, tos, hash, src);
    case EncapKind::kIpip6:
      return WriteTyped<EncapKind::kIpip6>(t, inner, len, tos, hash, src);
    case EncapKind::kGue4:
      return WriteTyped<EncapKind::kGue4>(t, inner, len, tos, hash, src);
    case EncapKind::kGue6:
      return WriteTyped<EncapKind::kGue6>(t, inner, len, tos, hash, src);
  }
  return 0;
}

TEST(EncapTest, OutputIsByteForByteWhatScapyBuildsForEveryFixture) {
  REQUIRE_PACKET_FIXTURES("encap");
  const json& cases = PacketFixtures()["encap"];
  ASSERT_GE(cases.size(), 14u);
  for (const json& c : cases) {
    SCOPED_TRACE(c["name"].get<std::string>());
    const std::vector<uint8_t> inner = FromHex(c["inner"]);
    const std::string expected = c["expected"];
    auto t = BuildEncapTemplate(ConfigOf(c), Ip(c["backend"]), c["inner_family"] == "ipv6");
    ASSERT_TRUE(t.ok()) << t.status();
    ASSERT_EQ(t->header_len, c["header_len"].get<uint32_t>());
    ASSERT_EQ(inner.size(), c["inner_len"].get<size_t>());
    // Both entry points: the dispatcher and the kind as a template parameter.
    for (auto write : {&WriteEncap, &WriteWithTemplateParameter}) {
      Frame frame(t->header_len, inner);
      const uint32_t written = write(*t, frame.inner_ip, static_cast<uint32_t>(inner.size()),
                                     c["inner_tos"].get<uint8_t>(), FlowHashOf(c), Placeholder(*t));
      EXPECT_EQ(written, t->header_len);
      EXPECT_EQ(ToHex(frame.bytes.get(), frame.size), expected);
    }
  }
}

TEST(EncapTest, ThePortMacReplacesTheTemplatesSourceMacAndNothingElse) {
  REQUIRE_PACKET_FIXTURES("encap");
  const MacAddress port = {0x02, 0x11, 0x22, 0x33, 0x44, 0x55};
  for (const json& c : PacketFixtures()["encap"]) {
    SCOPED_TRACE(c["name"].get<std::string>());
    const std::vector<uint8_t> inner = FromHex(c["inner"]);
    std::vector<uint8_t> expected = FromHex(c["expected"]);
    ASSERT_NE(std::vector<uint8_t>(expected.begin() + 6, expected.begin() + 12),
              std::vector<uint8_t>(port.begin(), port.end()));
    std::copy(port.begin(), port.end(), expected.begin() + 6);
    auto t = BuildEncapTemplate(ConfigOf(c), Ip(c["backend"]), c["inner_family"] == "ipv6");
    ASSERT_TRUE(t.ok()) << t.status();
    for (auto write : {&WriteEncap, &WriteWithTemplateParameter}) {
      Frame frame(t->header_len, inner);
      write(*t, frame.inner_ip, static_cast<uint32_t>(inner.size()), c["inner_tos"].get<uint8_t>(),
            FlowHashOf(c), EncapSourceMac::Of(port));
      EXPECT_EQ(ToHex(frame.bytes.get(), frame.size), ToHex(expected.data(), expected.size()));
    }
  }
}

TEST(EncapTest, FixturesCoverEveryKindInnerFamilyProtocolAndEcnCodepoint) {
  REQUIRE_PACKET_FIXTURES("encap");
  std::set<std::tuple<std::string, std::string, std::string, std::string>> combos;
  std::set<int> ecn;
  for (const json& c : PacketFixtures()["encap"]) {
    combos.emplace(c["type"], c["outer"], c["inner_family"], c["inner_proto"]);
    ecn.insert(c["inner_tos"].get<int>() & 3);
  }
  for (const char* type : {"ipip", "gue"}) {
    for (const char* outer : {"ipv4", "ipv6"}) {
      for (const char* inner : {"ipv4", "ipv6"}) {
        if (std::string(type) == "ipip" && std::string(outer) == "ipv4" &&
            std::string(inner) == "ipv6") {
          continue;  // unsupported; covered by the rejects
        }
        for (const char* proto : {"tcp", "udp"}) {
          EXPECT_TRUE(combos.count({type, outer, inner, proto}))
              << type << " " << outer << " outer, " << inner << " " << proto << " inner";
        }
      }
    }
  }
  EXPECT_EQ(ecn, (std::set<int>{0, 1, 2, 3}));
}

TEST(EncapTest, StrippingTheHeaderGivesBackTheInnerPacketUntouched) {
  REQUIRE_PACKET_FIXTURES("encap");
  for (const json& c : PacketFixtures()["encap"]) {
    SCOPED_TRACE(c["name"].get<std::string>());
    const std::vector<uint8_t> inner = FromHex(c["inner"]);
    const std::vector<uint8_t> expected = FromHex(c["expected"]);
    const uint32_t header_len = c["header_len"];
    // The fixture itself is self-consistent (the BPF decap tests rely on it)...
    EXPECT_EQ(std::vector<uint8_t>(expected.begin() + header_len, expected.end()), inner);
    // ...and WriteEncap writes only the header bytes.
    auto t = BuildEncapTemplate(ConfigOf(c), Ip(c["backend"]), c["inner_family"] == "ipv6");
    ASSERT_TRUE(t.ok()) << t.status();
    std::vector<uint8_t> buf(16 + header_len + inner.size(), 0x5a);
    std::copy(inner.begin(), inner.end(), buf.begin() + 16 + header_len);
    WriteEncap(*t, buf.data() + 16 + header_len, static_cast<uint32_t>(inner.size()), 0x2a,
               FlowHashOf(c), Placeholder(*t));
    EXPECT_EQ(std::vector<uint8_t>(buf.begin(), buf.begin() + 16), std::vector<uint8_t>(16, 0x5a));
    EXPECT_EQ(std::vector<uint8_t>(buf.begin() + 16 + header_len, buf.end()), inner);
  }
}

TEST(EncapTest, EveryInvalidConfigurationIsRejectedWithTheSettingToFix) {
  REQUIRE_PACKET_FIXTURES("encap");
  const json& cases = PacketFixtures()["encap_rejects"];
  ASSERT_GE(cases.size(), 8u);
  for (const json& c : cases) {
    SCOPED_TRACE(c["name"].get<std::string>());
    auto t = BuildEncapTemplate(ConfigOf(c), Ip(c["backend"]), c["inner_family"] == "ipv6");
    ASSERT_FALSE(t.ok());
    EXPECT_EQ(t.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(t.status().message()),
                HasSubstr(c["message_contains"].get<std::string>()));
  }
}

TEST(EncapTest, Ipv6InIpv4IpipNamesBothWaysOut) {
  auto t = BuildEncapTemplate(DefaultConfig(), IpAddress::V4(10, 1, 0, 5), /*inner_v6=*/true);
  ASSERT_FALSE(t.ok());
  const std::string message(t.status().message());
  EXPECT_THAT(message, HasSubstr("10.1.0.5"));
  EXPECT_THAT(message, HasSubstr("gue"));
  EXPECT_THAT(message, HasSubstr("IPv6 address"));
  // The same packets to the same backend are fine over GUE.
  EncapConfig gue = DefaultConfig();
  gue.type = EncapType::kGue;
  EXPECT_TRUE(BuildEncapTemplate(gue, IpAddress::V4(10, 1, 0, 5), true).ok());
}

TEST(EncapTest, KindFollowsTheBackendFamilyAndTheEncapType) {
  EncapConfig config = DefaultConfig();
  const IpAddress v4 = IpAddress::V4(10, 1, 0, 5);
  const IpAddress v6 = Ip("2001:db8:be::5");
  EXPECT_EQ(BuildEncapTemplate(config, v4, false)->kind, EncapKind::kIpip4);
  EXPECT_EQ(BuildEncapTemplate(config, v6, false)->kind, EncapKind::kIpip6);
  EXPECT_EQ(BuildEncapTemplate(config, v6, true)->kind, EncapKind::kIpip6);
  config.type = EncapType::kGue;
  EXPECT_EQ(BuildEncapTemplate(config, v4, true)->kind, EncapKind::kGue4);
  EXPECT_EQ(BuildEncapTemplate(config, v6, false)->kind, EncapKind::kGue6);
  std::set<std::string_view> names;
  for (EncapKind k : {EncapKind::kIpip4, EncapKind::kIpip6, EncapKind::kGue4, EncapKind::kGue6}) {
    names.insert(EncapKindName(k));
  }
  EXPECT_EQ(names.size(), 4u);
}

// Independent of parse.h and encap.cc: RFC 1071 says a correct header sums to 0xffff.
bool ChecksumValid(const uint8_t* header, size_t len) {
  uint32_t sum = 0;
  for (size_t i = 0; i < len; i += 2) sum += uint32_t{header[i]} << 8 | header[i + 1];
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >> 16);
  return sum == 0xffff;
}

TEST(EncapTest, OuterIpv4ChecksumIsValidForEveryTosAndLength) {
  for (EncapType type : {EncapType::kIpip, EncapType::kGue}) {
    // 192.0.187.186 (IPIP) and 192.0.187.173 (GUE), with TTL 255 and 255.255.255.255, make the
    // template's partial sum 0xffc0: near the longest lengths the per-packet sum passes 0x1ffff,
    // where a single fold would leave a carry behind.
    const IpAddress carry_source = IpAddress::V4(192, 0, 187, type == EncapType::kIpip ? 186 : 173);
    for (const IpAddress& source : {IpAddress::V4(192, 0, 2, 1), IpAddress::V4(0, 0, 0, 1),
                                    IpAddress::V4(255, 255, 255, 254), carry_source}) {
      EncapConfig config = DefaultConfig();
      config.type = type;
      config.source_v4 = source;
      config.ttl = 255;
      auto t = BuildEncapTemplate(config, IpAddress::V4(255, 255, 255, 255), false);
      ASSERT_TRUE(t.ok()) << t.status();
      std::vector<uint8_t> buf(kMaxEncapHeaderLen + 8);
      uint8_t* inner = buf.data() + kMaxEncapHeaderLen;
      const uint32_t max_inner = 0xffff - EncapIpOverhead(t->kind);
      for (uint32_t len = 20; len <= max_inner; len += len < 2000 ? 1 : 97) {
        for (int tos = 0; tos < 256; tos += len < 2000 ? 51 : 1) {
          const uint32_t n =
              WriteEncap(*t, inner, len, static_cast<uint8_t>(tos), len * 31, Placeholder(*t));
          const uint8_t* ip = inner - n + kEncapEthernetLen;
          ASSERT_TRUE(ChecksumValid(ip, 20)) << "len " << len << " tos " << tos;
          ASSERT_EQ(ip[1], tos);
          ASSERT_EQ(uint32_t{ip[2]} << 8 | ip[3], len + EncapIpOverhead(t->kind));
        }
      }
    }
  }
}

TEST(EncapTest, GueSourcePortStaysInTheDynamicRangeAndDependsOnlyOnTheFlowHash) {
  EncapConfig config = DefaultConfig();
  config.type = EncapType::kGue;
  std::mt19937_64 rng(7);
  for (const IpAddress& backend : {IpAddress::V4(10, 1, 0, 5), Ip("2001:db8:be::5")}) {
    auto t = BuildEncapTemplate(config, backend, false);
    ASSERT_TRUE(t.ok());
    const uint32_t udp = kEncapEthernetLen + (backend.v6 ? 40 : 20);
    std::vector<uint8_t> buf(kMaxEncapHeaderLen);
    uint8_t* inner = buf.data() + kMaxEncapHeaderLen;
    std::set<uint16_t> ports;
    for (int i = 0; i < 100000; ++i) {
      const uint64_t hash = rng();
      const uint32_t n = WriteEncap(*t, inner, 100, static_cast<uint8_t>(i), hash, Placeholder(*t));
      const uint8_t* h = inner - n;
      const uint16_t port = static_cast<uint16_t>(h[udp] << 8 | h[udp + 1]);
      ASSERT_GE(port, 49152);
      ASSERT_EQ(port, GueSourcePort(hash));
      ports.insert(port);
      // Same hash (the same flow), any other packet: the same port, so the same RSS queue.
      WriteEncap(*t, inner, 1400, 0, hash, Placeholder(*t));
      ASSERT_EQ(h[udp] << 8 | h[udp + 1], port);
      ASSERT_EQ(h[udp + 2] << 8 | h[udp + 3], 6080);
    }
    EXPECT_GT(ports.size(), 16384u * 99 / 100);  // 100k draws hit nearly all 2^14 ports
  }
}

TEST(EncapTest, Ipv6FlowLabelIsTwentyBitsOfTheFlowHashAndTrafficClassIsTheInnerTos) {
  EncapConfig config = DefaultConfig();
  std::mt19937_64 rng(11);
  for (EncapType type : {EncapType::kIpip, EncapType::kGue}) {
    config.type = type;
    auto t = BuildEncapTemplate(config, Ip("2001:db8:be::5"), true);
    ASSERT_TRUE(t.ok());
    std::vector<uint8_t> buf(kMaxEncapHeaderLen);
    uint8_t* inner = buf.data() + kMaxEncapHeaderLen;
    std::set<uint32_t> labels;
    for (int i = 0; i < 20000; ++i) {
      const uint64_t hash = rng();
      const uint8_t tos = static_cast<uint8_t>(rng());
      const uint8_t* ip =
          inner - WriteEncap(*t, inner, 500, tos, hash, Placeholder(*t)) + kEncapEthernetLen;
      const uint32_t word0 = uint32_t{ip[0]} << 24 | ip[1] << 16 | ip[2] << 8 | ip[3];
      ASSERT_EQ(word0 >> 28, 6u);
      ASSERT_EQ((word0 >> 20) & 0xff, tos);
      ASSERT_EQ(word0 & 0xfffff, hash & 0xfffff);
      labels.insert(word0 & 0xfffff);
    }
    EXPECT_GT(labels.size(), 19000u);
  }
}

TEST(EncapTest, OverheadIsExactlyWhatTheOuterHeadersAddToTheIpPacket) {
  const IpAddress v4 = IpAddress::V4(10, 1, 0, 5);
  const IpAddress v6 = Ip("2001:db8:be::5");
  for (EncapType type : {EncapType::kIpip, EncapType::kGue}) {
    for (const IpAddress& backend : {v4, v6}) {
      EncapConfig config = DefaultConfig();
      config.type = type;
      auto t = BuildEncapTemplate(config, backend, false);
      ASSERT_TRUE(t.ok());
      EXPECT_EQ(t->header_len, EncapHeaderLen(t->kind));
      EXPECT_EQ(EncapHeaderLen(t->kind), kEncapEthernetLen + EncapIpOverhead(t->kind));
      EXPECT_LE(t->header_len, kMaxEncapHeaderLen);
      // The outer IP packet's length, as the next router sees it.
      std::vector<uint8_t> buf(kMaxEncapHeaderLen);
      uint8_t* inner = buf.data() + kMaxEncapHeaderLen;
      const uint8_t* ip =
          inner - WriteEncap(*t, inner, 1000, 0, 0, Placeholder(*t)) + kEncapEthernetLen;
      const uint32_t outer_len =
          backend.v6 ? 40u + (uint32_t{ip[4]} << 8 | ip[5]) : uint32_t{ip[2]} << 8 | ip[3];
      EXPECT_EQ(outer_len - 1000, EncapIpOverhead(t->kind)) << EncapKindName(t->kind);
    }
  }
  EXPECT_EQ(EncapIpOverhead(EncapKind::kIpip4), 20u);
  EXPECT_EQ(EncapIpOverhead(EncapKind::kIpip6), 40u);
  EXPECT_EQ(EncapIpOverhead(EncapKind::kGue4), 28u);
  EXPECT_EQ(EncapIpOverhead(EncapKind::kGue6), 48u);
}

// The parser reads our output as what the network sees: a packet from the load balancer to the
// backend, DF (IPv4) and TTL as configured, DSCP/ECN copied, the GUE ports as documented.
TEST(EncapTest, EncapsulatedFrameParsesAsAPacketFromTheLoadBalancerToTheBackend) {
  REQUIRE_PACKET_FIXTURES("encap");
  for (const json& c : PacketFixtures()["encap"]) {
    SCOPED_TRACE(c["name"].get<std::string>());
    const std::vector<uint8_t> frame = FromHex(c["expected"]);
    ParsedPacket p;
    ASSERT_EQ(ParsePacket(frame, p), ParseResult::kOk);
    const IpAddress backend = Ip(c["backend"]);
    const IpAddress source = Ip(backend.v6 ? c["source_v6"] : c["source_v4"]);
    EXPECT_EQ(p.tuple.src, source.bytes);
    EXPECT_EQ(p.tuple.dst, backend.bytes);
    EXPECT_EQ(p.tuple.v6, backend.v6);
    EXPECT_TRUE(p.Has(kPacketDontFragment));
    EXPECT_FALSE(p.Has(kPacketFragment));
    EXPECT_EQ(p.ttl, c["ttl"].get<uint8_t>());
    EXPECT_EQ(p.tos, c["inner_tos"].get<uint8_t>());
    EXPECT_EQ(p.l3_length, c["inner_len"].get<uint32_t>() + c["header_len"].get<uint32_t>() - 14);
    if (c["type"] == "gue") {
      EXPECT_EQ(p.tuple.proto, 17);
      EXPECT_EQ(p.tuple.src_port, c["gue_sport"].get<uint16_t>());
      EXPECT_EQ(p.tuple.dst_port, c["gue_port"].get<uint16_t>());
    } else {
      EXPECT_EQ(p.tuple.proto, c["inner_family"] == "ipv6" ? 41 : 4);
    }
  }
}

TEST(ParseMacTest, SixHexPairsAndNothingElse) {
  EXPECT_EQ(ParseMac("02:00:00:00:fe:FE"), (MacAddress{0x02, 0, 0, 0, 0xfe, 0xfe}));
  for (const char* bad : {"", "02:00:00:00:fe", "02:00:00:00:fe:fe:01", "02-00-00-00-fe-fe",
                          "2:00:00:00:fe:fe0", "02:00:00:00:fe:fg", "02:00:00:00:fe:fe "}) {
    EXPECT_EQ(ParseMac(bad), std::nullopt) << bad;
  }
}

}  // namespace
}  // namespace fulcrum
