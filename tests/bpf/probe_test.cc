// Health probes through the tunnel: the tc egress program frames a marked probe exactly as the
// data plane frames real traffic (every encap fixture, entropy fields aside), the decapsulator
// gives the probe back, and unmarked traffic, unusable families, non-IP and oversized packets
// are passed or dropped and counted as docs/bpf.md says.
#include "bpf/probe.h"

#include <linux/bpf.h>
#include <linux/pkt_cls.h>

#include <map>
#include <string>
#include <vector>

#include "bpf/counters.h"
#include "bpf/decap.h"
#include "bpf/kernel.h"
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
using ::fulcrum::testing::Sh;
using ::fulcrum::testing::ToHex;
using nlohmann::json;

constexpr uint32_t kMark = 0xf1c00001;

IpAddress Ip(const std::string& text) { return IpAddress::Parse(text).value(); }

MacAddress Mac(const std::string& text) {
  MacAddress mac{};
  for (size_t i = 0; i < 6; ++i) {
    mac[i] = static_cast<uint8_t>(std::stoul(text.substr(i * 3, 2), nullptr, 16));
  }
  return mac;
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

// The probe as the kernel hands it to tc egress: an Ethernet header for the next hop towards
// the VIP (the program replaces it) and the IP packet.
std::vector<uint8_t> ProbeFrame(const std::vector<uint8_t>& inner, bool v6) {
  std::vector<uint8_t> f = {0x02, 0, 0, 0, 0x77, 0x77, 0x02, 0, 0, 0, 0x88, 0x88};
  f.push_back(v6 ? 0x86 : 0x08);
  f.push_back(v6 ? 0xdd : 0x00);
  f.insert(f.end(), inner.begin(), inner.end());
  return f;
}

std::map<std::string, uint64_t> Gained(const CounterValues& before, const CounterValues& after) {
  std::map<std::string, uint64_t> out;
  for (const CounterDef& def : kProbeCounters) {
    const size_t i = static_cast<size_t>(def.value);
    if (after.packets(i) != before.packets(i)) {
      out[std::string(def.name)] = after.packets(i) - before.packets(i);
    }
  }
  return out;
}

class ProbeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    SKIP_UNLESS_ROOT();
    REQUIRE_PACKET_FIXTURES("encap");
    absl::StatusOr<ProbeEncap> p = ProbeEncap::Load();
    ASSERT_TRUE(p.ok()) << p.status();
    probe_.emplace(*std::move(p));
  }
  CounterValues Read() {
    absl::StatusOr<CounterValues> c = probe_->Counters();
    EXPECT_TRUE(c.ok()) << c.status();
    return c.ok() ? *c : CounterValues{};
  }
  ::fulcrum::testing::TestRun Run(const std::vector<uint8_t>& frame, uint32_t mark,
                                  uint32_t ifindex = 0) {
    __sk_buff ctx{};
    ctx.mark = mark;
    ctx.ifindex = ifindex;
    ::fulcrum::testing::TestRun r = RunProgram(probe_->prog_fd(), frame, &ctx);
    mark_after_ = ctx.mark;
    return r;
  }
  std::optional<ProbeEncap> probe_;
  uint32_t mark_after_ = 0;
};

// The outer header's entropy fields come from the kernel's flow hash, not the data plane's
// FlowHash: each must lie in the range docs/packet.md gives; every other byte must match.
void MaskEntropy(std::vector<uint8_t>& frame, const std::string& type, const std::string& outer) {
  const bool gue = type == "gue", v6 = outer == "ipv6";
  if (v6) {
    frame[14 + 1] &= 0xf0;  // flow label, bits 0..19 of the first word
    frame[14 + 2] = frame[14 + 3] = 0;
  }
  if (gue) {
    const size_t sport = 14 + (v6 ? 40 : 20);
    EXPECT_GE(frame[sport], 0xc0) << "GUE source port below 49152";
    frame[sport] = frame[sport + 1] = 0;
  }
}

TEST_F(ProbeTest, FramesEveryEncapFixtureExactlyAsTheDataPlaneDoes) {
  std::map<std::string, uint64_t> want;
  const CounterValues before = Read();
  for (const json& c : PacketFixtures()["encap"]) {
    SCOPED_TRACE(c["name"].get<std::string>());
    ASSERT_TRUE(probe_->SetTarget(kMark, ConfigOf(c), Ip(c["backend"])).ok());
    const std::vector<uint8_t> inner = FromHex(c["inner"]);
    const ::fulcrum::testing::TestRun r =
        Run(ProbeFrame(inner, c["inner_family"] == "ipv6"), kMark);
    ASSERT_EQ(r.err, 0);
    EXPECT_EQ(r.retval, static_cast<uint32_t>(TC_ACT_OK));
    std::vector<uint8_t> got = r.out, expected = FromHex(c["expected"]);
    ASSERT_EQ(got.size(), expected.size());
    MaskEntropy(got, c["type"], c["outer"]);
    MaskEntropy(expected, c["type"], c["outer"]);
    EXPECT_EQ(ToHex(got.data(), got.size()), ToHex(expected.data(), expected.size()));
    EXPECT_EQ(mark_after_, 0u) << "the tunnel packet must not be encapsulated again";
    const std::string kind = c["type"].get<std::string>() == "gue" ? "gue" : "ipip";
    ++want["encap_" + kind + (c["outer"] == "ipv4" ? "4" : "6")];
  }
  EXPECT_EQ(Gained(before, Read()), want);
}

TEST_F(ProbeTest, TheDecapsulatorGivesBackTheProbe) {
  for (const json& c : PacketFixtures()["encap"]) {
    SCOPED_TRACE(c["name"].get<std::string>());
    DecapConfig config;
    config.addresses = {Ip(c["backend"])};
    config.gue_port = c["gue_port"];
    absl::StatusOr<DecapProgram> decap = DecapProgram::Load(DecapMode::kXdp, config);
    ASSERT_TRUE(decap.ok()) << decap.status();
    ASSERT_TRUE(probe_->SetTarget(kMark, ConfigOf(c), Ip(c["backend"])).ok());
    const bool v6 = c["inner_family"] == "ipv6";
    const std::vector<uint8_t> probe = ProbeFrame(FromHex(c["inner"]), v6);
    const ::fulcrum::testing::TestRun sent = Run(probe, kMark);
    ASSERT_EQ(sent.err, 0);
    const ::fulcrum::testing::TestRun got = RunProgram(decap->prog_fd(), sent.out);
    ASSERT_EQ(got.err, 0);
    EXPECT_EQ(got.retval, static_cast<uint32_t>(XDP_PASS));
    // The probe's IP packet, behind the tunnel's Ethernet addresses.
    std::vector<uint8_t> want = probe;
    const MacAddress gw = Mac(c["gateway_mac"]), src = Mac(c["src_mac"]);
    std::copy(gw.begin(), gw.end(), want.begin());
    std::copy(src.begin(), src.end(), want.begin() + 6);
    EXPECT_EQ(ToHex(got.out.data(), got.out.size()), ToHex(want.data(), want.size()));
  }
}

TEST_F(ProbeTest, UnmarkedTrafficAndMarksWithoutATargetPassUntouched) {
  const json& c = PacketFixtures()["encap"][0];
  ASSERT_TRUE(probe_->SetTarget(kMark, ConfigOf(c), Ip(c["backend"])).ok());
  const std::vector<uint8_t> frame = ProbeFrame(FromHex(c["inner"]), false);
  for (uint32_t mark : {0u, kMark + 1, 0xffffffffu}) {
    const CounterValues before = Read();
    const ::fulcrum::testing::TestRun r = Run(frame, mark);
    ASSERT_EQ(r.err, 0);
    EXPECT_EQ(r.retval, static_cast<uint32_t>(TC_ACT_OK));
    EXPECT_EQ(ToHex(r.out.data(), r.out.size()), ToHex(frame.data(), frame.size()));
    EXPECT_EQ(mark_after_, mark);
    EXPECT_EQ(Gained(before, Read()), (std::map<std::string, uint64_t>{{"pass_no_target", 1}}));
  }
  ASSERT_TRUE(probe_->RemoveTarget(kMark).ok());
  const CounterValues before = Read();
  ASSERT_EQ(Run(frame, kMark).retval, static_cast<uint32_t>(TC_ACT_OK));
  EXPECT_EQ(Gained(before, Read()), (std::map<std::string, uint64_t>{{"pass_no_target", 1}}));
  EXPECT_TRUE(absl::IsNotFound(probe_->RemoveTarget(kMark)));
}

TEST_F(ProbeTest, AFamilyTheBackendCannotTakeIsDroppedNotSentBare) {
  // ipip to an IPv4 backend carries no IPv6 (encap.h refuses 6in4): an IPv6 probe must fail
  // rather than reach the VIP some other way.
  EncapConfig config = ConfigOf(PacketFixtures()["encap"][0]);
  config.type = EncapType::kIpip;
  absl::StatusOr<fulcrum_probe_target> target = ProbeTargetFor(config, Ip("10.1.0.5"));
  ASSERT_TRUE(target.ok()) << target.status();
  EXPECT_EQ(target->inner_v4.len, 34);
  EXPECT_EQ(target->inner_v6.len, 0);
  ASSERT_TRUE(probe_->SetTarget(kMark, *target).ok());
  std::vector<uint8_t> v6(40, 0);
  v6[0] = 0x60;
  v6[6] = 59;  // no next header
  const CounterValues before = Read();
  const ::fulcrum::testing::TestRun r = Run(ProbeFrame(v6, true), kMark);
  ASSERT_EQ(r.err, 0);
  EXPECT_EQ(r.retval, static_cast<uint32_t>(TC_ACT_SHOT));
  EXPECT_EQ(Gained(before, Read()), (std::map<std::string, uint64_t>{{"drop_no_template", 1}}));
}

TEST_F(ProbeTest, MarkedPacketsThatAreNotIpAreDropped) {
  const json& c = PacketFixtures()["encap"][0];
  ASSERT_TRUE(probe_->SetTarget(kMark, ConfigOf(c), Ip(c["backend"])).ok());
  std::vector<uint8_t> arp = ProbeFrame(std::vector<uint8_t>(28, 0), false);
  arp[12] = 0x08;
  arp[13] = 0x06;
  // An IPv4 EtherType whose header says version 6.
  std::vector<uint8_t> wrong = ProbeFrame(std::vector<uint8_t>(40, 0x60), false);
  for (const std::vector<uint8_t>& frame : {arp, wrong}) {
    const CounterValues before = Read();
    const ::fulcrum::testing::TestRun r = Run(frame, kMark);
    ASSERT_EQ(r.err, 0);
    EXPECT_EQ(r.retval, static_cast<uint32_t>(TC_ACT_SHOT));
    EXPECT_EQ(Gained(before, Read()), (std::map<std::string, uint64_t>{{"drop_not_ip", 1}}));
  }
}

TEST_F(ProbeTest, RefusesMarkZeroAndConfigsTheDataPlaneWouldRefuse) {
  const json& c = PacketFixtures()["encap"][0];
  EXPECT_TRUE(absl::IsInvalidArgument(probe_->SetTarget(0, ConfigOf(c), Ip(c["backend"]))));
  EncapConfig bad = ConfigOf(c);
  bad.gateway_mac = {};
  EXPECT_TRUE(absl::IsInvalidArgument(probe_->SetTarget(kMark, bad, Ip(c["backend"]))));
}

// In this test's own network namespace (main() below).
class ProbeOnVethTest : public ProbeTest {
 protected:
  void SetUp() override {
    ProbeTest::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    ASSERT_TRUE(
        Sh("ip link add pa mtu 1280 type veth peer name pb && ip link set pa up && "
           "ip link set pb up"));
    pa_ = InterfaceIndex("pa").value();
  }
  void TearDown() override { Sh("ip link del pa 2>/dev/null"); }
  int pa_ = 0;
};

TEST_F(ProbeOnVethTest, ProbesTooBigForTheDeviceAfterEncapsulationAreDropped) {
  const json& c = PacketFixtures()["encap"][0];  // ipip over IPv4: 20 bytes of overhead
  ASSERT_EQ(c["type"], "ipip");
  ASSERT_TRUE(probe_->SetTarget(kMark, ConfigOf(c), Ip(c["backend"])).ok());
  for (size_t ip_len : {1260u, 1261u}) {
    std::vector<uint8_t> inner(ip_len, 0);
    inner[0] = 0x45;
    inner[2] = static_cast<uint8_t>(ip_len >> 8);
    inner[3] = static_cast<uint8_t>(ip_len);
    inner[9] = 17;
    const CounterValues before = Read();
    const ::fulcrum::testing::TestRun r =
        Run(ProbeFrame(inner, false), kMark, static_cast<uint32_t>(pa_));
    ASSERT_EQ(r.err, 0);
    const bool fits = ip_len + 20 <= 1280;
    EXPECT_EQ(r.retval, static_cast<uint32_t>(fits ? TC_ACT_OK : TC_ACT_SHOT)) << ip_len;
    EXPECT_EQ(Gained(before, Read()),
              (std::map<std::string, uint64_t>{{fits ? "encap_ipip4" : "drop_too_big", 1}}));
  }
}

TEST_F(ProbeOnVethTest, AttachReplacesAStaleFilterAndDetachesOnlyItsOwn) {
  {
    absl::StatusOr<ProbeEncap> first = ProbeEncap::Attach(pa_);
    ASSERT_TRUE(first.ok()) << first.status();
    const uint32_t first_id = GetProgramInfo(first->prog_fd())->id;
    EXPECT_EQ(*QueryTc(pa_, TcHook::kEgress, FULCRUM_TC_HANDLE_PROBE), first_id);
    absl::StatusOr<ProbeEncap> second = ProbeEncap::Attach(pa_);
    ASSERT_TRUE(second.ok()) << second.status();
    const uint32_t second_id = GetProgramInfo(second->prog_fd())->id;
    EXPECT_EQ(*QueryTc(pa_, TcHook::kEgress, FULCRUM_TC_HANDLE_PROBE), second_id);
    ASSERT_TRUE(first->Detach().ok());  // replaced: must leave the second's filter alone
    EXPECT_EQ(*QueryTc(pa_, TcHook::kEgress, FULCRUM_TC_HANDLE_PROBE), second_id);
  }
  EXPECT_EQ(*QueryTc(pa_, TcHook::kEgress, FULCRUM_TC_HANDLE_PROBE), 0u)
      << "destroying the attached ProbeEncap must detach it";
}

}  // namespace
}  // namespace fulcrum::bpf

int main(int argc, char** argv) {
  if (::geteuid() == 0 && !::fulcrum::testing::EnterPrivateNetns()) {
    std::perror("unshare(CLONE_NEWNET)");
    return 1;
  }
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
