// AF_XDP steering: the program agrees with the data plane's parser on which packets are VIP
// traffic (every parse fixture), redirects them to its queue's AF_XDP socket and passes the
// rest to the kernel (a real socket on a veth), and its loader replaces VIP sets without a gap
// and finds the program on an interface the way fulcrumd will after the af_xdp PMD loaded it.
#include "bpf/steer.h"

#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <atomic>
#include <fstream>
#include <iterator>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "bpf/abi.h"
#include "bpf/counters.h"
#include "bpf/decap.h"
#include "bpf/kernel.h"
#include "dataplane/core/parse.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/bpf/bpf_testing.h"
#include "tests/bpf/xsk_testing.h"
#include "tests/testing/testing.h"

namespace fulcrum::bpf {
namespace {

using ::fulcrum::testing::FromHex;
using ::fulcrum::testing::PacketFixtures;
using ::fulcrum::testing::RunProgram;
using ::fulcrum::testing::Sh;
using ::fulcrum::testing::ToHex;
using nlohmann::json;
using ::testing::ElementsAreArray;

IpAddress Ip(const std::string& text) { return IpAddress::Parse(text).value(); }

// make_packets.py's VIPs, with the ports its parse fixtures use most.
std::vector<SteerVip> FixtureVips() {
  std::vector<SteerVip> vips;
  for (const char* vip : {"203.0.113.10", "2001:db8:f::10"}) {
    vips.push_back({Ip(vip), 6, 80});
    vips.push_back({Ip(vip), 6, 443});
    vips.push_back({Ip(vip), 17, 53});
    vips.push_back({Ip(vip), 17, 4500});
  }
  return vips;
}

std::map<std::string, uint64_t> Gained(const CounterValues& before, const CounterValues& after) {
  std::map<std::string, uint64_t> out;
  for (const CounterDef& def : kSteerCounters) {
    const size_t i = static_cast<size_t>(def.value);
    if (after.packets(i) != before.packets(i)) {
      out[std::string(def.name)] = after.packets(i) - before.packets(i);
    }
  }
  return out;
}

CounterValues Read(const SteerMaps& maps) {
  absl::StatusOr<CounterValues> c = maps.Counters();
  EXPECT_TRUE(c.ok()) << c.status();
  return c.ok() ? *c : CounterValues{};
}

class SteerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    SKIP_UNLESS_ROOT();
    absl::StatusOr<SteerProgram> p = SteerProgram::Load();
    ASSERT_TRUE(p.ok()) << p.status();
    program_.emplace(*std::move(p));
    absl::StatusOr<SteerMaps> m = program_->Maps();
    ASSERT_TRUE(m.ok()) << m.status();
    maps_.emplace(*std::move(m));
  }
  std::optional<SteerProgram> program_;
  std::optional<SteerMaps> maps_;
};

// What the data plane would do with a frame, from ParsePacket itself: the steering program must
// hand it exactly the frames it classifies as VIP traffic (docs/bpf.md, "Steering").
std::string ExpectedCounter(const std::vector<uint8_t>& frame, const std::vector<SteerVip>& vips) {
  ParsedPacket p;
  const ParseResult r = ParsePacket(frame.data(), static_cast<uint32_t>(frame.size()), p);
  if (r == ParseResult::kNotIp || r == ParseResult::kStackedVlan) return "pass_not_ip";
  const bool icmp_error_result = r == ParseResult::kIcmpInnerTruncated ||
                                 r == ParseResult::kIcmpInnerMalformed ||
                                 r == ParseResult::kIcmpInnerUnsupported;
  if (r != ParseResult::kOk && !icmp_error_result) return "pass_bad_headers";
  // The outer destination, as on the wire.
  const bool v6 = p.tuple.v6;
  IpAddress dst;
  dst.v6 = v6;
  std::memcpy(dst.bytes.data(), frame.data() + p.l3_offset + (v6 ? 24 : 16), v6 ? 16 : 4);
  auto any = [&](auto pred) {
    for (const SteerVip& v : vips) {
      if (v.address == dst && pred(v)) return true;
    }
    return false;
  };
  bool vip;
  if (icmp_error_result || (p.flags & kPacketIcmpError) != 0) {
    // Steered by the outer address alone; a bad quote is the data plane's to count.
    vip = any([](const SteerVip&) { return true; });
  } else if ((p.flags & kPacketFragment) != 0) {
    vip = any([&](const SteerVip& v) { return v.proto == p.tuple.proto; });
  } else if ((p.flags & kPacketPorts) != 0) {
    vip = any(
        [&](const SteerVip& v) { return v.proto == p.tuple.proto && v.port == p.tuple.dst_port; });
  } else {
    vip = false;
  }
  return vip ? "vip_no_socket" : "pass_not_vip";
}

TEST_F(SteerTest, SteersExactlyWhatTheDataPlaneParserCallsVipTrafficOnEveryParseFixture) {
  REQUIRE_PACKET_FIXTURES("parse");
  const std::vector<SteerVip> vips = FixtureVips();
  ASSERT_TRUE(maps_->ReplaceVips(vips).ok());
  std::map<std::string, int> seen;
  for (const json& c : PacketFixtures()["parse"]) {
    const std::vector<uint8_t> frame = FromHex(c["frame"]);
    if (frame.size() < 14) continue;  // BPF_PROG_TEST_RUN refuses these; no NIC delivers them
    SCOPED_TRACE(c["name"].get<std::string>());
    const std::string want = ExpectedCounter(frame, vips);
    const CounterValues before = Read(*maps_);
    const ::fulcrum::testing::TestRun r = RunProgram(program_->prog_fd(), frame);
    ASSERT_EQ(r.err, 0);
    // No AF_XDP socket here: VIP traffic falls back to the kernel (redirect is tested below).
    EXPECT_EQ(r.retval, XDP_PASS);
    EXPECT_EQ(ToHex(r.out.data(), r.out.size()), ToHex(frame.data(), frame.size()))
        << "steering never changes a packet";
    EXPECT_EQ(Gained(before, Read(*maps_)), (std::map<std::string, uint64_t>{{want, 1}}));
    ++seen[want];
  }
  for (const char* counter : {"vip_no_socket", "pass_not_vip", "pass_not_ip", "pass_bad_headers"}) {
    EXPECT_GT(seen[counter], 0) << counter << ": no fixture reaches it";
  }
}

TEST_F(SteerTest, AnEmptyVipSetSteersNothing) {
  REQUIRE_PACKET_FIXTURES("parse");
  ASSERT_TRUE(maps_->ReplaceVips(FixtureVips()).ok());
  ASSERT_TRUE(maps_->ReplaceVips({}).ok());
  EXPECT_THAT(*maps_->Vips(), ::testing::IsEmpty());
  for (const json& c : PacketFixtures()["parse"]) {
    const std::vector<uint8_t> frame = FromHex(c["frame"]);
    if (frame.size() < 14) continue;
    const CounterValues before = Read(*maps_);
    ASSERT_EQ(RunProgram(program_->prog_fd(), frame).err, 0);
    EXPECT_EQ(Gained(before, Read(*maps_)).count("vip_no_socket"), 0u) << c["name"];
  }
}

TEST_F(SteerTest, ReplacingVipsLeavesExactlyTheNewSet) {
  const std::vector<SteerVip> a = {{Ip("203.0.113.1"), 6, 80}, {Ip("203.0.113.2"), 17, 53}};
  const std::vector<SteerVip> b = {{Ip("203.0.113.2"), 17, 53}, {Ip("2001:db8::3"), 6, 443}};
  ASSERT_TRUE(maps_->ReplaceVips(a).ok());
  EXPECT_THAT(*maps_->Vips(), ElementsAreArray(std::set<SteerVip>(a.begin(), a.end())));
  ASSERT_TRUE(maps_->ReplaceVips(b).ok());
  EXPECT_THAT(*maps_->Vips(), ElementsAreArray(std::set<SteerVip>(b.begin(), b.end())));
  // Every derived key is there too, and nothing else: 3 keys per VIP here (no shared address).
  absl::StatusOr<std::vector<fulcrum_vip_key>> keys = SteerKeys(b);
  ASSERT_TRUE(keys.ok());
  EXPECT_EQ(keys->size(), 6u);
}

TEST_F(SteerTest, AVipInBothSetsIsSteeredThroughoutAReplacement) {
  const SteerVip stays{Ip("203.0.113.10"), 17, 4500};
  std::vector<SteerVip> a = {stays}, b = {stays};
  for (int i = 0; i < 200; ++i) {
    a.push_back({Ip("198.18.0." + std::to_string(i)), 6, 80});
    b.push_back({Ip("198.19.0." + std::to_string(i)), 6, 80});
  }
  ASSERT_TRUE(maps_->ReplaceVips(a).ok());
  const uint8_t mac[6] = {2, 0, 0, 0, 0, 1}, ip_src[4] = {198, 51, 100, 7},
                ip_dst[4] = {203, 0, 113, 10};
  const std::vector<uint8_t> frame =
      ::fulcrum::testing::Udp4Frame(mac, mac, ip_src, ip_dst, 40000, 4500, 18);
  std::atomic<bool> done = false;
  std::atomic<uint64_t> runs = 0, misses = 0;
  std::thread reader([&] {
    while (!done.load()) {
      const ::fulcrum::testing::TestRun r = RunProgram(program_->prog_fd(), frame);
      ++runs;
      if (r.err != 0) ++misses;
    }
  });
  const CounterValues before = Read(*maps_);
  for (int i = 0; i < 50; ++i) ASSERT_TRUE(maps_->ReplaceVips(i % 2 ? a : b).ok());
  done = true;
  reader.join();
  const std::map<std::string, uint64_t> gained = Gained(before, Read(*maps_));
  EXPECT_EQ(misses.load(), 0u);
  EXPECT_GT(runs.load(), 100u);
  EXPECT_EQ(gained.count("pass_not_vip"), 0u) << "the staying VIP was missing from the map";
}

TEST_F(SteerTest, RefusesVipsTheDataPlaneCannotServeAndSetsTooLargeForTheMap) {
  const std::vector<SteerVip> icmp = {{Ip("203.0.113.1"), 1, 0}};
  EXPECT_TRUE(absl::IsInvalidArgument(maps_->ReplaceVips(icmp)));
  const std::vector<SteerVip> port0 = {{Ip("203.0.113.1"), 6, 0}};
  EXPECT_TRUE(absl::IsInvalidArgument(maps_->ReplaceVips(port0)));
  std::vector<SteerVip> many;
  for (int i = 0; i < FULCRUM_STEER_MAX_VIP_KEYS / 3 + 1; ++i) {
    IpAddress ip = IpAddress::V4(10, static_cast<uint8_t>(i >> 16), static_cast<uint8_t>(i >> 8),
                                 static_cast<uint8_t>(i));
    many.push_back({ip, 6, 80});
  }
  EXPECT_TRUE(absl::IsResourceExhausted(maps_->ReplaceVips(many)));
  EXPECT_THAT(*maps_->Vips(), ::testing::IsEmpty()) << "a refused set must change nothing";
}

TEST_F(SteerTest, TheEmbeddedObjectIsTheBuiltOneAndLoadsTheWayTheAfXdpPmdLoadsIt) {
  const char* built = std::getenv("FULCRUM_STEER_BPF_OBJ");
  ASSERT_NE(built, nullptr) << "run through meson test, which sets FULCRUM_STEER_BPF_OBJ";
  std::ifstream in(built, std::ios::binary);
  const std::vector<uint8_t> file((std::istreambuf_iterator<char>(in)), {});
  const std::span<const uint8_t> embedded = SteerObject();
  EXPECT_TRUE(std::equal(file.begin(), file.end(), embedded.begin(), embedded.end()));

  const std::string path = ::testing::TempDir() + "/fulcrum-steer-test.bpf.o";
  ASSERT_TRUE(WriteSteerObject(path).ok());
  // DPDK 22.11 load_custom_xdp_prog(): open, load, the first program, the map "xsks_map".
  bpf_object* obj = bpf_object__open_file(path.c_str(), nullptr);
  ASSERT_NE(obj, nullptr);
  ASSERT_EQ(bpf_object__load(obj), 0);
  bpf_program* first = bpf_object__next_program(obj, nullptr);
  ASSERT_NE(first, nullptr);
  EXPECT_STREQ(bpf_program__name(first), FULCRUM_PROG_STEER);
  EXPECT_EQ(bpf_object__next_program(obj, first), nullptr) << "the PMD takes the first one";
  bpf_map* xsks = bpf_object__find_map_by_name(obj, "xsks_map");
  ASSERT_NE(xsks, nullptr);
  EXPECT_EQ(bpf_map__type(xsks), BPF_MAP_TYPE_XSKMAP);
  bpf_object__close(obj);
  std::remove(path.c_str());
}

// On veths in this test's own network namespace (main() below): the program on va, AF_XDP
// sockets on its two queues, frames sent from vb.
class SteerOnVethTest : public SteerTest {
 protected:
  static constexpr uint8_t kMacA[6] = {0x02, 0, 0, 0, 0, 0xaa};
  static constexpr uint8_t kMacB[6] = {0x02, 0, 0, 0, 0, 0xbb};
  void SetUp() override {
    SteerTest::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    ASSERT_TRUE(
        Sh("ip link add va address 02:00:00:00:00:aa numtxqueues 2 numrxqueues 2 type "
           "veth peer name vb address 02:00:00:00:00:bb numtxqueues 2 numrxqueues 2 && "
           "ip link set va up && ip link set vb up && ip link set lo up && "
           "ip addr add 192.0.2.1/24 dev va"));
    va_ = InterfaceIndex("va").value();
    vb_ = InterfaceIndex("vb").value();
  }
  void TearDown() override {
    program_.reset();
    Sh("ip link del va 2>/dev/null");
  }
  int va_ = 0, vb_ = 0;
};

TEST_F(SteerOnVethTest, VipTrafficReachesTheSocketOfItsQueueAndTheRestTheKernel) {
  ASSERT_TRUE(program_->Attach(va_).ok());
  ::fulcrum::testing::XskSocket q0(va_, 0), q1(va_, 1);
  ASSERT_EQ(q0.error(), "");
  ASSERT_EQ(q1.error(), "");
  for (uint32_t q : {0u, 1u}) {
    const int fd = q == 0 ? q0.fd() : q1.fd();
    ASSERT_EQ(bpf_map_update_elem(program_->xsks_map_fd(), &q, &fd, BPF_ANY), 0);
  }
  // Fulcrumd's part: find the program through the interface, as after the PMD loaded it.
  absl::StatusOr<SteerMaps> found = SteerMaps::ForInterface(va_);
  ASSERT_TRUE(found.ok()) << found.status();
  const std::vector<SteerVip> vips = {{Ip("203.0.113.10"), 17, 4500}};
  ASSERT_TRUE(found->ReplaceVips(vips).ok());

  // A kernel socket for what is not VIP traffic.
  const int udp = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(udp, 0);
  ::fulcrum::bpf::ScopedFd udp_fd(udp);
  sockaddr_in sin{};
  sin.sin_family = AF_INET;
  sin.sin_port = htons(9999);
  ASSERT_EQ(::bind(udp, reinterpret_cast<sockaddr*>(&sin), sizeof(sin)), 0);
  timeval tv{2, 0};
  ::setsockopt(udp, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));

  const int raw = ::socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, htons(ETH_P_ALL));
  ASSERT_GE(raw, 0);
  ::fulcrum::bpf::ScopedFd raw_fd(raw);
  sockaddr_ll sll{};
  sll.sll_family = AF_PACKET;
  sll.sll_ifindex = vb_;
  sll.sll_halen = 6;
  std::memcpy(sll.sll_addr, kMacA, 6);
  auto send = [&](const std::vector<uint8_t>& f) {
    return ::sendto(raw, f.data(), f.size(), 0, reinterpret_cast<sockaddr*>(&sll), sizeof(sll)) ==
           static_cast<ssize_t>(f.size());
  };
  const uint8_t client[4] = {192, 0, 2, 2}, vip[4] = {203, 0, 113, 10}, host[4] = {192, 0, 2, 1};
  const CounterValues before = Read(*found);
  constexpr int kVipFrames = 8;
  std::vector<std::vector<uint8_t>> sent;
  for (int i = 0; i < kVipFrames; ++i) {
    sent.push_back(::fulcrum::testing::Udp4Frame(kMacA, kMacB, client, vip,
                                                 static_cast<uint16_t>(40000 + i), 4500, 32));
    ASSERT_TRUE(send(sent.back()));
  }
  ASSERT_TRUE(send(::fulcrum::testing::Udp4Frame(kMacA, kMacB, client, host, 40000, 9999, 5)));

  // As hex: gcc 12 misreads a multiset of byte vectors as a memcmp overread.
  std::multiset<std::string> got, want;
  for (const std::vector<uint8_t>& f : sent) want.insert(ToHex(f.data(), f.size()));
  for (int tries = 0; tries < 50 && got.size() < sent.size(); ++tries) {
    for (auto* q : {&q0, &q1}) {
      while (std::optional<std::vector<uint8_t>> f = q->Receive(20)) {
        got.insert(ToHex(f->data(), f->size()));
      }
    }
  }
  EXPECT_EQ(got, want);
  char buf[64];
  EXPECT_EQ(::recv(udp, buf, sizeof(buf), 0), 5) << "the kernel did not get the non-VIP frame";
  const std::map<std::string, uint64_t> gained = Gained(before, Read(*found));
  EXPECT_EQ(gained.at("redirect"), static_cast<uint64_t>(kVipFrames));
  EXPECT_EQ(gained.count("vip_no_socket"), 0u);
  EXPECT_GE(gained.at("pass_not_vip"), 1u);
}

TEST_F(SteerOnVethTest, AQueueWithoutASocketFallsBackToTheKernel) {
  ASSERT_TRUE(program_->Attach(va_).ok());
  ::fulcrum::testing::XskSocket q0(va_, 0);
  ASSERT_EQ(q0.error(), "");
  const uint32_t zero = 0;
  const int fd = q0.fd();
  ASSERT_EQ(bpf_map_update_elem(program_->xsks_map_fd(), &zero, &fd, BPF_ANY), 0);
  const std::vector<SteerVip> vips = {{Ip("203.0.113.10"), 17, 4500}};
  ASSERT_TRUE(maps_->ReplaceVips(vips).ok());
  const uint8_t client[4] = {192, 0, 2, 2}, vip[4] = {203, 0, 113, 10};
  const std::vector<uint8_t> frame =
      ::fulcrum::testing::Udp4Frame(kMacA, kMacB, client, vip, 40000, 4500, 32);
  for (uint32_t queue : {0u, 1u}) {
    xdp_md ctx{};
    ctx.data_end = static_cast<uint32_t>(frame.size());  // the kernel wants the frame's length
    ctx.ingress_ifindex = static_cast<uint32_t>(va_);
    ctx.rx_queue_index = queue;
    const CounterValues before = Read(*maps_);
    const ::fulcrum::testing::TestRun r = RunProgram(program_->prog_fd(), frame, &ctx);
    ASSERT_EQ(r.err, 0) << "queue " << queue;
    EXPECT_EQ(r.retval, queue == 0 ? XDP_REDIRECT : XDP_PASS) << "queue " << queue;
    EXPECT_EQ(Gained(before, Read(*maps_)),
              (std::map<std::string, uint64_t>{{queue == 0 ? "redirect" : "vip_no_socket", 1}}));
  }
}

TEST_F(SteerOnVethTest, FindingTheProgramOnAnInterfaceRefusesOthers) {
  EXPECT_TRUE(absl::IsNotFound(SteerMaps::ForInterface(va_).status()));
  DecapConfig config;
  config.addresses = {Ip("192.0.2.1")};
  absl::StatusOr<DecapProgram> decap = DecapProgram::Load(DecapMode::kXdp, config);
  ASSERT_TRUE(decap.ok());
  ASSERT_TRUE(decap->Attach(va_).ok());
  EXPECT_TRUE(absl::IsFailedPrecondition(SteerMaps::ForInterface(va_).status()));
  EXPECT_TRUE(absl::IsFailedPrecondition(program_->Attach(va_)));
  ASSERT_TRUE(DetachDecap(va_, DecapMode::kXdp).ok());
  ASSERT_TRUE(program_->Attach(va_).ok());
  absl::StatusOr<SteerMaps> found = SteerMaps::ForInterface(va_);
  ASSERT_TRUE(found.ok()) << found.status();
  EXPECT_EQ(found->prog_id(), maps_->prog_id());
  ASSERT_TRUE(program_->Detach().ok());
  EXPECT_TRUE(absl::IsNotFound(SteerMaps::ForInterface(va_).status()));
}

}  // namespace
}  // namespace fulcrum::bpf

int main(int argc, char** argv) {
  // A network namespace of this process's own for the veth tests, entered before any thread.
  if (::geteuid() == 0 && !::fulcrum::testing::EnterPrivateNetns()) {
    std::perror("unshare(CLONE_NEWNET)");
    return 1;
  }
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
