// ParsePacket: agrees with scapy on every fixture, never reads past the frame, keeps its codes.
#include "dataplane/core/parse.h"

#include <algorithm>
#include <cstdlib>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/testing/testing.h"

namespace fulcrum {
namespace {

using ::fulcrum::testing::FromHex;
using ::fulcrum::testing::PacketFixtures;
using nlohmann::json;

const json& ParseCase(const std::string& name) {
  for (const json& c : PacketFixtures()["parse"]) {
    if (c["name"] == name) return c;
  }
  ADD_FAILURE() << "no parse fixture named " << name;
  static const json empty;
  return empty;
}

// Parses a copy of data[0, n) held in a heap buffer of exactly n bytes, so that AddressSanitizer
// reports any read past the end (a vector's capacity could hide one).
ParseResult ParseExact(const uint8_t* data, size_t n, ParsedPacket& out) {
  std::unique_ptr<uint8_t[]> buf(new uint8_t[n]);
  if (n > 0) std::memcpy(buf.get(), data, n);
  return ParsePacket(buf.get(), static_cast<uint32_t>(n), out);
}

const std::map<std::string, uint16_t>& FlagBits() {
  static const auto* bits = new std::map<std::string, uint16_t>{
      {"vlan", kPacketVlan},
      {"ipv4_options", kPacketIpv4Options},
      {"fragment", kPacketFragment},
      {"first_fragment", kPacketFirstFragment},
      {"dont_fragment", kPacketDontFragment},
      {"ports", kPacketPorts},
      {"icmp_error", kPacketIcmpError},
      {"ipv6_ext_headers", kPacketIpv6ExtHeaders},
  };
  return *bits;
}

std::array<uint8_t, 16> AddressBytes(const std::string& text) {
  auto ip = IpAddress::Parse(text);
  EXPECT_TRUE(ip.ok()) << text;
  return ip.ok() ? ip->bytes : std::array<uint8_t, 16>{};
}

// The expected ParsedPacket a fixture describes.
ParsedPacket Expected(const json& e) {
  ParsedPacket p;
  p.l3_offset = e["l3_offset"];
  p.vlan_tci = e["vlan_tci"];
  for (const json& name : e["flags"]) {
    const auto it = FlagBits().find(name.get<std::string>());
    EXPECT_NE(it, FlagBits().end()) << "unknown flag in fixture: " << name;
    if (it != FlagBits().end()) p.flags |= it->second;
  }
  if (!e.contains("tuple")) return p;  // not IP: only the L2 fields
  const json& t = e["tuple"];
  p.tuple.src = AddressBytes(t["src"]);
  p.tuple.dst = AddressBytes(t["dst"]);
  p.tuple.src_port = t["sport"];
  p.tuple.dst_port = t["dport"];
  p.tuple.proto = t["proto"];
  p.tuple.v6 = t["v6"];
  p.l4_offset = e["l4_offset"];
  p.l3_length = e["l3_length"];
  p.icmp_mtu = e["icmp_mtu"];
  p.tos = e["tos"];
  p.ttl = e["ttl"];
  p.tcp_flags = e["tcp_flags"];
  p.icmp_type = e["icmp_type"];
  p.icmp_code = e["icmp_code"];
  return p;
}

std::string Describe(const ParsedPacket& p) {
  std::string s = "tuple{" + IpAddress{p.tuple.src, p.tuple.v6}.ToString() + ":" +
                  std::to_string(p.tuple.src_port) + " -> " +
                  IpAddress{p.tuple.dst, p.tuple.v6}.ToString() + ":" +
                  std::to_string(p.tuple.dst_port) + " proto " + std::to_string(p.tuple.proto) +
                  "} flags=";
  for (const auto& [name, bit] : FlagBits()) {
    if (p.Has(bit)) s += name + ",";
  }
  s += " l3_offset=" + std::to_string(p.l3_offset) + " l4_offset=" + std::to_string(p.l4_offset) +
       " l3_length=" + std::to_string(p.l3_length) + " tos=" + std::to_string(p.tos) +
       " ttl=" + std::to_string(p.ttl) + " tcp_flags=" + std::to_string(p.tcp_flags) +
       " icmp=" + std::to_string(p.icmp_type) + "/" + std::to_string(p.icmp_code) +
       " mtu=" + std::to_string(p.icmp_mtu) + " vlan_tci=" + std::to_string(p.vlan_tci);
  return s;
}

// Results whose ParsedPacket fields carry meaning (see ParsedPacket).
bool HasFields(ParseResult r) {
  return r == ParseResult::kOk || r == ParseResult::kNotIp || r == ParseResult::kStackedVlan;
}

TEST(ParseResultTest, ValuesAndNamesNeverChange) {
  // Counters in shared memory and dashboards key on these: append-only, never renumbered.
  const std::vector<std::pair<ParseResult, std::string_view>> pinned = {
      {ParseResult::kOk, "ok"},
      {ParseResult::kNotIp, "not_ip"},
      {ParseResult::kTruncatedEthernet, "truncated_ethernet"},
      {ParseResult::kStackedVlan, "stacked_vlan"},
      {ParseResult::kBadIpVersion, "bad_ip_version"},
      {ParseResult::kTruncatedIpv4Header, "truncated_ipv4_header"},
      {ParseResult::kBadIpv4HeaderLength, "bad_ipv4_header_length"},
      {ParseResult::kBadIpv4TotalLength, "bad_ipv4_total_length"},
      {ParseResult::kIpv4TotalLengthBeyondFrame, "ipv4_total_length_beyond_frame"},
      {ParseResult::kTruncatedIpv6Header, "truncated_ipv6_header"},
      {ParseResult::kIpv6PayloadLengthBeyondFrame, "ipv6_payload_length_beyond_frame"},
      {ParseResult::kTruncatedIpv6ExtHeader, "truncated_ipv6_ext_header"},
      {ParseResult::kIpv6ExtChainTooLong, "ipv6_ext_chain_too_long"},
      {ParseResult::kTruncatedTcp, "truncated_tcp"},
      {ParseResult::kTruncatedUdp, "truncated_udp"},
      {ParseResult::kTruncatedIcmp, "truncated_icmp"},
      {ParseResult::kIcmpInnerTruncated, "icmp_inner_truncated"},
      {ParseResult::kIcmpInnerMalformed, "icmp_inner_malformed"},
      {ParseResult::kIcmpInnerUnsupported, "icmp_inner_unsupported"},
  };
  ASSERT_EQ(pinned.size(), kParseResultCount) << "a new result needs a pinned entry here";
  for (size_t i = 0; i < pinned.size(); ++i) {
    EXPECT_EQ(static_cast<size_t>(pinned[i].first), i);
    EXPECT_EQ(ReasonName(pinned[i].first), pinned[i].second);
  }
}

TEST(ParseResultTest, NamesAreUniqueSnakeCaseAndEveryResultHasHelp) {
  std::set<std::string_view> seen;
  for (size_t i = 0; i < kParseResultCount; ++i) {
    const auto r = static_cast<ParseResult>(i);
    const std::string_view name = ReasonName(r);
    EXPECT_TRUE(seen.insert(name).second) << "duplicate name " << name;
    EXPECT_FALSE(name.empty());
    EXPECT_TRUE(std::all_of(
        name.begin(), name.end(),
        [](char c) { return (c >= 'a' && c <= 'z') || c == '_' || (c >= '0' && c <= '9'); }))
        << name << " is not a valid snake_case metric label";
    EXPECT_GT(ReasonHelp(r).size(), 10u) << name;
  }
  EXPECT_EQ(ReasonName(static_cast<ParseResult>(kParseResultCount)), "unknown");
}

TEST(ParsePacketTest, EveryScapyFixtureGivesItsExpectedResultAndFields) {
  REQUIRE_PACKET_FIXTURES("parse");
  const json& cases = PacketFixtures()["parse"];
  ASSERT_GE(cases.size(), 60u);
  for (const json& c : cases) {
    SCOPED_TRACE(c["name"].get<std::string>());
    const std::vector<uint8_t> frame = FromHex(c["frame"]);
    ParsedPacket p;
    const ParseResult r = ParseExact(frame.data(), frame.size(), p);
    EXPECT_EQ(ReasonName(r), c["result"].get<std::string>());
    if (c.contains("expect")) {
      const ParsedPacket want = Expected(c["expect"]);
      EXPECT_EQ(p, want) << "\n  got:  " << Describe(p) << "\n  want: " << Describe(want);
    }
  }
}

TEST(ParsePacketTest, FixturesExerciseEveryResult) {
  REQUIRE_PACKET_FIXTURES("parse");
  std::set<std::string> seen;
  for (const json& c : PacketFixtures()["parse"]) seen.insert(c["result"].get<std::string>());
  for (size_t i = 0; i < kParseResultCount; ++i) {
    const std::string name(ReasonName(static_cast<ParseResult>(i)));
    EXPECT_TRUE(seen.count(name)) << "no fixture produces " << name;
  }
}

TEST(ParsePacketTest, FixturesWereBuiltForThisExtensionHeaderBound) {
  REQUIRE_PACKET_FIXTURES("parse");
  EXPECT_EQ(PacketFixtures()["ipv6_max_ext_headers"].get<uint32_t>(), kMaxIpv6ExtHeaders)
      << "tests/fixtures/make_packets.py IPV6_MAX_EXT_HEADERS must follow parse.h";
}

TEST(ParsePacketTest, IcmpErrorYieldsTheTupleOfTheClientFlowItIsAbout) {
  REQUIRE_PACKET_FIXTURES("parse");
  // The client's SYN and the frag-needed a router sent about the backend's reply to it.
  for (const auto& [flow, error] : {std::pair{"ipv4_tcp_syn", "icmpv4_frag_needed_tcp"},
                                    {"ipv6_udp", "icmpv6_packet_too_big_udp"}}) {
    SCOPED_TRACE(error);
    const std::vector<uint8_t> flow_frame = FromHex(ParseCase(flow)["frame"]);
    const std::vector<uint8_t> error_frame = FromHex(ParseCase(error)["frame"]);
    ParsedPacket from_flow;
    ParsedPacket from_error;
    ASSERT_EQ(ParsePacket(flow_frame, from_flow), ParseResult::kOk);
    ASSERT_EQ(ParsePacket(error_frame, from_error), ParseResult::kOk);
    EXPECT_TRUE(from_error.Has(kPacketIcmpError));
    EXPECT_FALSE(from_flow.Has(kPacketIcmpError));
    EXPECT_EQ(from_error.tuple, from_flow.tuple);
  }
}

TEST(ParsePacketTest, EmptyBufferIsTruncatedEthernetEvenWithNullData) {
  ParsedPacket p;
  p.tuple.proto = 99;  // stale state from an earlier packet must not survive
  EXPECT_EQ(ParsePacket(nullptr, 0, p), ParseResult::kTruncatedEthernet);
  EXPECT_EQ(p, ParsedPacket{});
  EXPECT_EQ(ParseExact(nullptr, 0, p), ParseResult::kTruncatedEthernet);
  EXPECT_EQ(ParsePacket(std::span<const uint8_t>(), p), ParseResult::kTruncatedEthernet);
}

TEST(ParsePacketTest, NothingFromAPreviousPacketSurvivesTheNextParse) {
  REQUIRE_PACKET_FIXTURES("parse");
  const std::vector<uint8_t> icmp = FromHex(ParseCase("icmpv6_packet_too_big_tcp")["frame"]);
  const std::vector<uint8_t> arp = FromHex(ParseCase("arp")["frame"]);
  ParsedPacket reused;
  ASSERT_EQ(ParsePacket(icmp, reused), ParseResult::kOk);
  ASSERT_EQ(ParsePacket(arp, reused), ParseResult::kNotIp);
  ParsedPacket fresh;
  ASSERT_EQ(ParsePacket(arp, fresh), ParseResult::kNotIp);
  EXPECT_EQ(reused, fresh);
}

TEST(ParsePacketTest, SpanAndPointerOverloadsAgree) {
  REQUIRE_PACKET_FIXTURES("parse");
  for (const json& c : PacketFixtures()["parse"]) {
    const std::vector<uint8_t> frame = FromHex(c["frame"]);
    ParsedPacket a;
    ParsedPacket b;
    EXPECT_EQ(ParsePacket(frame, a),
              ParsePacket(frame.data(), static_cast<uint32_t>(frame.size()), b));
    EXPECT_EQ(a, b) << c["name"];
  }
}

// A frame cut short anywhere either parses exactly as the whole frame does (the cut fell in
// padding, or after the headers of a non-IP frame) or is rejected; an IP packet cut before its
// own end is always rejected. Each length gets its own exact-size buffer (ASan checks reads).
TEST(ParsePacketTest, TruncatedFrameIsRejectedOrParsesExactlyLikeTheWholeFrame) {
  REQUIRE_PACKET_FIXTURES("parse");
  int cuts = 0;
  for (const json& c : PacketFixtures()["parse"]) {
    SCOPED_TRACE(c["name"].get<std::string>());
    const std::vector<uint8_t> frame = FromHex(c["frame"]);
    ParsedPacket whole;
    const ParseResult whole_result = ParseExact(frame.data(), frame.size(), whole);
    for (size_t n = 0; n <= frame.size(); ++n, ++cuts) {
      ParsedPacket cut;
      const ParseResult r = ParseExact(frame.data(), n, cut);
      if (HasFields(r)) {
        ASSERT_EQ(r, whole_result) << "cut at " << n;
        ASSERT_EQ(cut, whole) << "cut at " << n << ": " << Describe(cut);
      }
      if (whole_result == ParseResult::kOk) {
        const size_t ip_end = whole.l3_offset + whole.l3_length;
        ASSERT_EQ(r == ParseResult::kOk, n >= ip_end) << "cut at " << n << " of " << ip_end;
      }
    }
  }
  EXPECT_GT(cuts, 5000);
}

// Builds Ethernet + IPv6 + `kinds` extension headers (8 bytes each) + a TCP header.
std::vector<uint8_t> Ipv6WithChain(const std::vector<uint8_t>& kinds) {
  std::vector<uint8_t> f = {2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 0x86, 0xdd};
  const size_t payload = kinds.size() * 8 + 20;
  const uint8_t first = kinds.empty() ? 6 : kinds[0];
  const std::vector<uint8_t> ip = {
      0x60, 0, 0, 0, static_cast<uint8_t>(payload >> 8), static_cast<uint8_t>(payload), first, 64};
  f.insert(f.end(), ip.begin(), ip.end());
  for (int i = 0; i < 32; ++i) f.push_back(static_cast<uint8_t>(i + 1));  // addresses
  for (size_t i = 0; i < kinds.size(); ++i) {
    const uint8_t next = i + 1 < kinds.size() ? kinds[i + 1] : 6;
    f.insert(f.end(), {next, 0, 0, 0, 0, 0, 0, 0});  // length 0 = 8 bytes; offset 0, M 0
  }
  std::vector<uint8_t> tcp(20);
  tcp[0] = 0x9c;  // source port 40000
  tcp[1] = 0x40;
  tcp[3] = 80;     // destination port 80
  tcp[12] = 0x50;  // data offset 5
  tcp[13] = kTcpSyn;
  f.insert(f.end(), tcp.begin(), tcp.end());
  return f;
}

TEST(ParsePacketTest, Ipv6ChainIsAcceptedUpToTheBoundAndRejectedBeyondIt) {
  for (uint8_t kind : {uint8_t{0}, uint8_t{43}, uint8_t{44}, uint8_t{60}}) {
    for (uint32_t n = 0; n <= kMaxIpv6ExtHeaders + 3; ++n) {
      SCOPED_TRACE(::testing::Message() << "kind " << int{kind} << " x " << n);
      const std::vector<uint8_t> frame = Ipv6WithChain(std::vector<uint8_t>(n, kind));
      ParsedPacket p;
      const ParseResult r = ParseExact(frame.data(), frame.size(), p);
      if (n <= kMaxIpv6ExtHeaders) {
        ASSERT_EQ(r, ParseResult::kOk) << ReasonName(r);
        EXPECT_EQ(p.l4_offset, 14 + 40 + 8 * n);
        EXPECT_EQ(p.tuple.dst_port, 80);
        EXPECT_EQ(p.Has(kPacketIpv6ExtHeaders), n > 0);
      } else {
        EXPECT_EQ(r, ParseResult::kIpv6ExtChainTooLong);
      }
    }
  }
  // A chain far past the bound costs no more than one just past it, and is rejected.
  const std::vector<uint8_t> huge = Ipv6WithChain(std::vector<uint8_t>(1000, 60));
  ParsedPacket p;
  EXPECT_EQ(ParseExact(huge.data(), huge.size(), p), ParseResult::kIpv6ExtChainTooLong);
}

// The invariants a caller relies on after kOk: every offset lies inside the IP packet, the IP
// packet inside the frame, and the flags are consistent with each other and with the tuple.
void ExpectConsistent(ParseResult r, const ParsedPacket& p, size_t len) {
  if (!HasFields(r)) return;
  ASSERT_TRUE(p.l3_offset == 14 || p.l3_offset == 18) << p.l3_offset;
  ASSERT_EQ(p.l3_offset == 18, p.Has(kPacketVlan));
  ASSERT_LE(p.l3_offset, len);
  if (r != ParseResult::kOk) return;
  ASSERT_LE(p.l3_offset + p.l3_length, len);
  ASSERT_GE(p.l4_offset, p.l3_offset + (p.tuple.v6 ? 40u : 20u));
  ASSERT_LE(p.l4_offset, p.l3_offset + p.l3_length);
  ASSERT_TRUE(!p.Has(kPacketFirstFragment) || p.Has(kPacketFragment));
  ASSERT_TRUE(!p.Has(kPacketIcmpError) || p.Has(kPacketPorts));
  ASSERT_TRUE(!p.Has(kPacketPorts) || p.tuple.proto == 6 || p.tuple.proto == 17);
  if (p.tuple.v6) {
    ASSERT_TRUE(p.Has(kPacketDontFragment));
    ASSERT_FALSE(p.Has(kPacketIpv4Options));
  } else {
    ASSERT_TRUE(
        std::all_of(p.tuple.src.begin() + 4, p.tuple.src.end(), [](uint8_t b) { return b == 0; }));
    ASSERT_TRUE(
        std::all_of(p.tuple.dst.begin() + 4, p.tuple.dst.end(), [](uint8_t b) { return b == 0; }));
    ASSERT_FALSE(p.Has(kPacketIpv6ExtHeaders));
  }
}

TEST(ParsePacketTest, RandomMutationsNeverReadOutOfBoundsAndKeepResultsConsistent) {
  REQUIRE_PACKET_FIXTURES("parse");
  std::mt19937 rng(20240611);  // fixed: a failure reproduces
  // Values that hit edges of the fields the parser reads: versions, IHLs, EtherType bytes,
  // walked next-header values, ICMP types.
  const std::vector<uint8_t> interesting = {0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x0f,
                                            0x11, 0x2b, 0x2c, 0x3a, 0x3c, 0x40, 0x45, 0x4f,
                                            0x60, 0x81, 0x86, 0x88, 0xa8, 0xdd, 0xfe, 0xff};
  std::map<ParseResult, int> results;
  int runs = 0;
  for (const json& c : PacketFixtures()["parse"]) {
    const std::vector<uint8_t> original = FromHex(c["frame"]);
    if (original.empty()) continue;
    for (int i = 0; i < 100; ++i, ++runs) {
      std::vector<uint8_t> f = original;
      const int edits = 1 + static_cast<int>(rng() % 4);
      for (int e = 0; e < edits; ++e) {
        // Mostly the headers, where the parser looks.
        const size_t limit = std::min<size_t>(f.size(), rng() % 2 ? 80 : f.size());
        const size_t at = rng() % limit;
        f[at] = rng() % 2 ? interesting[rng() % interesting.size()] : static_cast<uint8_t>(rng());
      }
      const size_t len = rng() % 4 == 0 ? rng() % (f.size() + 1) : f.size();
      ParsedPacket p;
      const ParseResult r = ParseExact(f.data(), len, p);
      ++results[r];
      ExpectConsistent(r, p, len);
      if (HasFailure()) {
        FAIL() << c["name"] << " mutation " << i << " gave " << ReasonName(r) << ": "
               << Describe(p);
      }
    }
  }
  EXPECT_GT(runs, 5000);
  // The mutations reach deep into the parser, not only its first checks.
  EXPECT_GT(results[ParseResult::kOk], runs / 10);
  EXPECT_GT(results.size(), kParseResultCount / 2);
}

TEST(Ipv4HeaderChecksumTest, AcceptsScapyHeadersAndRejectsAnySingleFlippedBit) {
  REQUIRE_PACKET_FIXTURES("parse");
  int checked = 0;
  for (const json& c : PacketFixtures()["parse"]) {
    std::vector<uint8_t> frame = FromHex(c["frame"]);
    ParsedPacket p;
    if (ParsePacket(frame, p) != ParseResult::kOk || p.tuple.v6) continue;
    uint8_t* header = frame.data() + p.l3_offset;
    const uint32_t header_len = p.l4_offset - p.l3_offset;
    EXPECT_TRUE(Ipv4HeaderChecksumOk(header, header_len)) << c["name"];
    for (uint32_t bit = 0; bit < header_len * 8; ++bit) {
      header[bit / 8] ^= static_cast<uint8_t>(1u << (bit % 8));
      EXPECT_FALSE(Ipv4HeaderChecksumOk(header, header_len)) << c["name"] << " bit " << bit;
      header[bit / 8] ^= static_cast<uint8_t>(1u << (bit % 8));
    }
    ++checked;
  }
  EXPECT_GT(checked, 20);
}

}  // namespace
}  // namespace fulcrum
