// fulcrum-decap through BPF_PROG_TEST_RUN, XDP and tc variants alike: decapsulating what the
// data plane's encapsulation produces gives back the original packet for every encap fixture;
// every case of the decap fixture table gives its verdict, output bytes and counters; frames
// cut at every length are passed untouched or dropped as docs/bpf.md specifies.
#include "bpf/decap.h"

#include <linux/bpf.h>
#include <linux/pkt_cls.h>

#include <map>
#include <set>
#include <string>
#include <vector>

#include "bpf/abi.h"
#include "bpf/counters.h"
#include "dataplane/core/parse.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/bpf/bpf_testing.h"
#include "tests/testing/testing.h"

namespace fulcrum::bpf {
namespace {

using ::fulcrum::testing::FromHex;
using ::fulcrum::testing::PacketFixtures;
using ::fulcrum::testing::RunProgram;
using ::fulcrum::testing::ToHex;
using nlohmann::json;

static_assert(FULCRUM_IPV6_MAX_EXT_HEADERS == kMaxIpv6ExtHeaders,
              "the decapsulator and the data plane's parser walk the same IPv6 chains");

IpAddress Ip(const std::string& text) {
  absl::StatusOr<IpAddress> ip = IpAddress::Parse(text);
  EXPECT_TRUE(ip.ok()) << text;
  return ip.ok() ? *ip : IpAddress{};
}

size_t CounterIndex(const std::string& name) {
  for (const CounterDef& def : kDecapCounters) {
    if (def.name == name) return static_cast<size_t>(def.value);
  }
  ADD_FAILURE() << "no decap counter named " << name;
  return 0;
}

std::string Hex(const std::vector<uint8_t>& v) { return ToHex(v.data(), v.size()); }

// The packets each counter gained between two readings, by name, zeros left out: compared as a
// whole, so an unexpected counter shows up by name in the failure.
std::map<std::string, uint64_t> Gained(const CounterValues& before, const CounterValues& after) {
  std::map<std::string, uint64_t> out;
  for (const CounterDef& def : kDecapCounters) {
    const size_t i = static_cast<size_t>(def.value);
    const uint64_t d = after.packets(i) - before.packets(i);
    if (d != 0) out[std::string(def.name)] = d;
  }
  return out;
}

class DecapTest : public ::testing::TestWithParam<DecapMode> {
 protected:
  void SetUp() override {
    SKIP_UNLESS_ROOT();
    REQUIRE_PACKET_FIXTURES("decap");
  }

  DecapMode mode() const { return GetParam(); }
  uint32_t PassVerdict() const { return mode() == DecapMode::kXdp ? XDP_PASS : TC_ACT_OK; }
  uint32_t DropVerdict() const { return mode() == DecapMode::kXdp ? XDP_DROP : TC_ACT_SHOT; }
  uint32_t VerdictFor(const std::string& outcome) const {
    return outcome.starts_with("drop_") ? DropVerdict() : PassVerdict();
  }

  // The configuration of the "decap" table, or every backend of the "encap" table with
  // `gue_port`.
  DecapProgram LoadTableProgram() {
    const json& c = PacketFixtures()["decap_config"];
    DecapConfig config;
    for (const json& a : c["addresses"]) config.addresses.push_back(Ip(a));
    config.gue_port = c["gue_port"];
    return Load(config);
  }
  DecapProgram LoadEncapProgram(uint16_t gue_port) {
    DecapConfig config;
    std::set<std::string> seen;
    for (const json& c : PacketFixtures()["encap"]) {
      if (seen.insert(c["backend"]).second) config.addresses.push_back(Ip(c["backend"]));
    }
    config.gue_port = gue_port;
    return Load(config);
  }
  DecapProgram Load(const DecapConfig& config) {
    absl::StatusOr<DecapProgram> p = DecapProgram::Load(mode(), config);
    if (!p.ok()) {
      ADD_FAILURE() << "load failed (a verifier rejection shows its log above): " << p.status();
      std::abort();
    }
    return *std::move(p);
  }
  static CounterValues Read(const DecapProgram& p) {
    absl::StatusOr<CounterValues> c = p.Counters();
    EXPECT_TRUE(c.ok()) << c.status();
    return c.ok() ? *c : CounterValues{};
  }
};

// The frame a backend's kernel must get from an encap fixture: the outer frame's own Ethernet
// addresses, the inner family's EtherType, the inner packet unchanged.
std::vector<uint8_t> DecapsulatedFrame(const json& c) {
  std::vector<uint8_t> frame = FromHex(c["expected"]);
  const std::vector<uint8_t> inner = FromHex(c["inner"]);
  std::vector<uint8_t> out(frame.begin(), frame.begin() + 12);
  const bool inner_v6 = c["inner_family"] == "ipv6";
  out.push_back(inner_v6 ? 0x86 : 0x08);
  out.push_back(inner_v6 ? 0xdd : 0x00);
  out.insert(out.end(), inner.begin(), inner.end());
  return out;
}

std::string EncapOutcome(const json& c) {
  if (c["type"] == "gue") return c["outer"] == "ipv4" ? "decap_gue4" : "decap_gue6";
  if (c["outer"] == "ipv4") return "decap_4in4";
  return c["inner_family"] == "ipv4" ? "decap_4in6" : "decap_6in6";
}

TEST_P(DecapTest, DecapsulatingEveryEncapFixtureGivesBackTheInnerPacketExactly) {
  REQUIRE_PACKET_FIXTURES("encap");
  std::map<uint16_t, DecapProgram> by_port;
  size_t cases = 0;
  for (const json& c : PacketFixtures()["encap"]) {
    SCOPED_TRACE(c["name"].get<std::string>());
    const uint16_t port = c["gue_port"];
    if (!by_port.contains(port)) by_port.emplace(port, LoadEncapProgram(port));
    const DecapProgram& prog = by_port.at(port);
    const std::vector<uint8_t> in = FromHex(c["expected"]);
    const CounterValues before = Read(prog);
    const ::fulcrum::testing::TestRun r = RunProgram(prog.prog_fd(), in);
    ASSERT_EQ(r.err, 0);
    EXPECT_EQ(r.retval, PassVerdict());
    EXPECT_EQ(Hex(r.out), Hex(DecapsulatedFrame(c)));
    const CounterValues after = Read(prog);
    // The fixtures copy the inner TOS to the outer header, CE included, so no ECN rewrite.
    EXPECT_EQ(Gained(before, after), (std::map<std::string, uint64_t>{{EncapOutcome(c), 1}}));
    const size_t i = CounterIndex(EncapOutcome(c));
    EXPECT_EQ(after.values[i].bytes - before.values[i].bytes, in.size());
    ++cases;
  }
  EXPECT_GE(cases, 14u);  // every (type, outer, inner) combination, TCP and UDP
}

TEST_P(DecapTest, EveryFixtureCaseGivesItsVerdictOutputAndCounters) {
  const DecapProgram prog = LoadTableProgram();
  std::set<std::string> outcomes_seen;
  for (const json& c : PacketFixtures()["decap"]) {
    SCOPED_TRACE(c["name"].get<std::string>());
    std::string outcome = c["outcome"];
    bool has_output = c.contains("output");
    std::vector<uint8_t> output = has_output ? FromHex(c["output"]) : std::vector<uint8_t>{};
    const std::vector<uint8_t> in = FromHex(c["frame"]);
    if (mode() == DecapMode::kTc && c.contains("tc_outcome")) {
      outcome = c["tc_outcome"];
      output = in;  // the tc variant passes these untouched
      has_output = true;
    }
    outcomes_seen.insert(outcome);
    const CounterValues before = Read(prog);
    const ::fulcrum::testing::TestRun r = RunProgram(prog.prog_fd(), in);
    ASSERT_EQ(r.err, 0);
    EXPECT_EQ(r.retval, VerdictFor(outcome));
    if (has_output) {
      EXPECT_EQ(Hex(r.out), Hex(output));
    }
    std::map<std::string, uint64_t> want{{outcome, 1}};
    if (c["ecn_ce"].get<bool>()) want["ecn_ce"] = 1;
    EXPECT_EQ(Gained(before, Read(prog)), want);
  }
  // The table exercises every pass and drop outcome but drop_error, which needs a kernel helper
  // to fail; the encap round trip covers the decap outcomes.
  for (const CounterDef& def : kDecapCounters) {
    if (!def.name.starts_with("pass_") && !def.name.starts_with("drop_")) continue;
    if (def.name == "drop_error") continue;
    EXPECT_TRUE(outcomes_seen.contains(std::string(def.name))) << def.name << ": no case";
  }
}

TEST_P(DecapTest, FramesCutAtEveryLengthArePassedUntouchedAsBadOuterHeaders) {
  REQUIRE_PACKET_FIXTURES("encap");
  const DecapProgram prog = LoadEncapProgram(6080);
  const CounterValues before = Read(prog);
  uint64_t runs = 0;
  for (const json& c : PacketFixtures()["encap"]) {
    const std::vector<uint8_t> frame = FromHex(c["expected"]);
    const size_t ip_end = 14 + (c["outer"] == "ipv6" ? 40 : 20);
    // BPF_PROG_TEST_RUN refuses frames shorter than an Ethernet header (no NIC delivers one),
    // and for tc programs IP frames shorter than their fixed IP header too: those lengths reach
    // the shared classifier through the XDP variant only.
    for (size_t len = 14; len < frame.size(); ++len) {
      SCOPED_TRACE(c["name"].get<std::string>() + " cut at " + std::to_string(len));
      const std::vector<uint8_t> in(frame.begin(), frame.begin() + static_cast<long>(len));
      const ::fulcrum::testing::TestRun r = RunProgram(prog.prog_fd(), in);
      if (mode() == DecapMode::kTc && len < ip_end) {
        ASSERT_EQ(r.err, -EINVAL);
        continue;
      }
      ASSERT_EQ(r.err, 0);
      ASSERT_EQ(r.retval, PassVerdict());
      ASSERT_EQ(Hex(r.out), Hex(in));
      ++runs;
    }
  }
  EXPECT_EQ(Gained(before, Read(prog)),
            (std::map<std::string, uint64_t>{{"pass_bad_outer", runs}}));
}

void Put16(std::vector<uint8_t>& v, size_t at, size_t value) {
  v[at] = static_cast<uint8_t>(value >> 8);
  v[at + 1] = static_cast<uint8_t>(value);
}

// A tunnel packet whose outer headers say it ends where it was cut: the outer header is sound,
// the inner packet is what is short.
TEST_P(DecapTest, TunnelPacketsCutInsideTheInnerPacketAreDroppedAndCounted) {
  REQUIRE_PACKET_FIXTURES("encap");
  std::map<uint16_t, DecapProgram> by_port;
  std::map<std::string, uint64_t> want;
  std::map<uint16_t, CounterValues> before;
  for (const json& c : PacketFixtures()["encap"]) {
    const uint16_t port = c["gue_port"];
    if (!by_port.contains(port)) {
      by_port.emplace(port, LoadEncapProgram(port));
      before[port] = Read(by_port.at(port));
    }
  }
  for (const json& c : PacketFixtures()["encap"]) {
    const DecapProgram& prog = by_port.at(c["gue_port"].get<uint16_t>());
    const std::vector<uint8_t> frame = FromHex(c["expected"]);
    const bool outer_v6 = c["outer"] == "ipv6", gue = c["type"] == "gue";
    const bool inner_v6 = c["inner_family"] == "ipv6";
    const size_t ip_len = outer_v6 ? 40 : 20, header_len = c["header_len"];
    const size_t inner_len = c["inner_len"], inner_min = inner_v6 ? 40 : 20;
    for (size_t len = 14 + ip_len; len < frame.size(); ++len) {
      SCOPED_TRACE(c["name"].get<std::string>() + " cut at " + std::to_string(len));
      std::vector<uint8_t> in(frame.begin(), frame.begin() + static_cast<long>(len));
      if (outer_v6) {
        Put16(in, 14 + 4, len - 14 - 40);
      } else {
        Put16(in, 14 + 2, len - 14);
        Put16(in, 14 + 10, 0);
        uint32_t sum = 0;
        for (size_t i = 14; i < 34; i += 2) sum += static_cast<uint32_t>(in[i] << 8 | in[i + 1]);
        while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
        Put16(in, 14 + 10, ~sum & 0xffff);
      }
      if (gue && len >= 14 + ip_len + 8) Put16(in, 14 + ip_len + 4, len - 14 - ip_len);
      std::string outcome;
      const size_t avail = len > header_len ? len - header_len : 0;
      if (gue && len < 14 + ip_len + 8) {
        outcome = "pass_bad_outer";  // the UDP header itself is cut: cannot tell the port
      } else if (avail < inner_min) {
        outcome = "drop_truncated_inner";
      } else {
        ASSERT_LT(avail, inner_len);
        outcome = "drop_bad_length";
      }
      const ::fulcrum::testing::TestRun r = RunProgram(prog.prog_fd(), in);
      ASSERT_EQ(r.err, 0);
      ASSERT_EQ(r.retval, VerdictFor(outcome)) << outcome;
      if (outcome.starts_with("pass_")) {
        ASSERT_EQ(Hex(r.out), Hex(in));
      }
      ++want[outcome];
    }
  }
  std::map<std::string, uint64_t> got;
  for (auto& [port, prog] : by_port) {
    for (auto& [name, n] : Gained(before[port], Read(prog))) got[name] += n;
  }
  EXPECT_EQ(got, want);
  EXPECT_GT(want["drop_truncated_inner"], 0u);
  EXPECT_GT(want["drop_bad_length"], 0u);
}

TEST_P(DecapTest, GueIsPassedUntouchedWhenNoPortIsConfigured) {
  REQUIRE_PACKET_FIXTURES("encap");
  const DecapProgram prog = LoadEncapProgram(0);
  size_t gue_cases = 0;
  for (const json& c : PacketFixtures()["encap"]) {
    if (c["type"] != "gue") continue;
    SCOPED_TRACE(c["name"].get<std::string>());
    const std::vector<uint8_t> in = FromHex(c["expected"]);
    const CounterValues before = Read(prog);
    const ::fulcrum::testing::TestRun r = RunProgram(prog.prog_fd(), in);
    ASSERT_EQ(r.err, 0);
    EXPECT_EQ(r.retval, PassVerdict());
    EXPECT_EQ(Hex(r.out), Hex(in));
    EXPECT_EQ(Gained(before, Read(prog)),
              (std::map<std::string, uint64_t>{{"pass_not_tunnel", 1}}));
    ++gue_cases;
  }
  EXPECT_GT(gue_cases, 0u);
}

TEST_P(DecapTest, OnlyTheConfiguredAddressesAreDecapsulated) {
  REQUIRE_PACKET_FIXTURES("encap");
  DecapConfig config;
  config.addresses = {Ip("10.1.0.5")};  // the IPv4 backend of most encap fixtures only
  config.gue_port = 6080;
  const DecapProgram prog = Load(config);
  for (const json& c : PacketFixtures()["encap"]) {
    SCOPED_TRACE(c["name"].get<std::string>());
    const std::vector<uint8_t> in = FromHex(c["expected"]);
    const bool ours = c["backend"] == "10.1.0.5" && c["gue_port"] == 6080;
    const ::fulcrum::testing::TestRun r = RunProgram(prog.prog_fd(), in);
    ASSERT_EQ(r.err, 0);
    EXPECT_EQ(r.retval, PassVerdict());
    EXPECT_EQ(Hex(r.out), Hex(ours ? DecapsulatedFrame(c) : in));
  }
}

INSTANTIATE_TEST_SUITE_P(Modes, DecapTest, ::testing::Values(DecapMode::kXdp, DecapMode::kTc),
                         [](const ::testing::TestParamInfo<DecapMode>& p) {
                           return std::string(DecapModeName(p.param));
                         });

TEST(DecapConfigTest, RefusesWhatCannotBeThisHostsAddress) {
  DecapConfig config;
  EXPECT_TRUE(absl::IsInvalidArgument(ValidateDecapConfig(config)));
  for (const char* bad : {"0.0.0.0", "::", "224.0.0.1", "ff02::1"}) {
    config.addresses = {Ip(bad)};
    EXPECT_TRUE(absl::IsInvalidArgument(ValidateDecapConfig(config))) << bad;
  }
  config.addresses.assign(FULCRUM_DECAP_MAX_ADDRESSES + 1, Ip("192.0.2.1"));
  EXPECT_TRUE(absl::IsInvalidArgument(ValidateDecapConfig(config)));
  config.addresses = {Ip("192.0.2.1"), Ip("2001:db8::1")};
  EXPECT_TRUE(ValidateDecapConfig(config).ok());
}

}  // namespace
}  // namespace fulcrum::bpf
