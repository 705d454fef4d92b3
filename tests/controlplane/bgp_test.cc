// Bgp: the bgp section parses to its values and every broken one is refused with its path; the
// announcement decision gives each VIP the first reason that holds; the BIRD include file is
// exactly what BIRD needs; BIRD's control socket is spoken correctly, and a BIRD that is absent,
// refuses or hangs gives a clear error; the Announcer tells BIRD only what changed and reports a
// speaker it cannot reach.
#include "controlplane/bgp.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_format.h"
#include "controlplane/config_parser.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace fulcrum::controlplane {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kBase[] = R"(dataplane:
  source_ipv4: 10.10.3.2
  gateway_mac: 02:00:00:00:03:01
  hash_key: 0123456789abcdef0123456789abcdef
vips:
  - name: web
    address: 10.10.0.100
    port: 80
    backends:
      - { address: 10.10.2.11 }
)";

constexpr char kBgp[] = R"(bgp:
  local_asn: 65001
  peer_asn: 65000
  hold_time_s: 3
  keepalive_s: 1
  hosts:
    lb1: { router_id: 10.10.3.2, local_address: 10.10.4.2, peers: [10.10.4.1], next_hop: 10.10.3.2 }
    lb2:
      router_id: 10.10.3.3
      peers: [10.10.4.1, 10.10.5.1]
      next_hop: 10.10.3.3
      bird_socket: /run/bird2/bird.ctl
      include_file: /etc/bird/lb2.conf
)";

std::string ReplaceOnce(std::string s, const std::string& from, const std::string& to) {
  const size_t pos = s.find(from);
  EXPECT_NE(pos, std::string::npos) << from;
  if (pos != std::string::npos) s.replace(pos, from.size(), to);
  return s;
}

IpAddress Ip(const char* text) { return *IpAddress::Parse(text); }

TEST(BgpConfig, ASectionParsesToItsValuesAndDefaults) {
  const ParsedConfig p = ParseConfig(std::string(kBase) + kBgp);
  ASSERT_TRUE(p.ok()) << FormatErrors("t", p.errors);
  ASSERT_TRUE(p.config.bgp.has_value());
  const BgpConfig& b = *p.config.bgp;
  EXPECT_EQ(b.local_asn, 65001u);
  EXPECT_EQ(b.peer_asn, 65000u);
  EXPECT_EQ(b.hold_time_s, 3u);
  EXPECT_EQ(b.keepalive_s, 1u);
  EXPECT_EQ(b.connect_retry_s, 5u);
  EXPECT_EQ(b.bird_socket, "/run/bird/bird.ctl");
  EXPECT_EQ(b.include_file, "/etc/bird/fulcrum.conf");
  ASSERT_EQ(b.hosts.size(), 2u);
  const BgpHostConfig& lb1 = b.hosts.at("lb1");
  EXPECT_EQ(lb1.router_id, Ip("10.10.3.2"));
  EXPECT_EQ(lb1.local_address, Ip("10.10.4.2"));
  EXPECT_EQ(lb1.peers, std::vector<IpAddress>{Ip("10.10.4.1")});
  EXPECT_EQ(lb1.next_hop, Ip("10.10.3.2"));
  EXPECT_TRUE(lb1.bird_socket.empty());
  const BgpHostConfig& lb2 = b.hosts.at("lb2");
  EXPECT_EQ(lb2.peers.size(), 2u);
  EXPECT_EQ(lb2.bird_socket, "/run/bird2/bird.ctl");
  EXPECT_EQ(lb2.include_file, "/etc/bird/lb2.conf");
}

TEST(BgpConfig, NoSectionMeansNoBgp) {
  const ParsedConfig p = ParseConfig(kBase);
  ASSERT_TRUE(p.ok());
  EXPECT_FALSE(p.config.bgp.has_value());
}

struct BadBgp {
  std::string name;
  std::string from;  // in kBgp (or kBase for the VIP cases)
  std::string to;
  std::string path;     // of the error
  std::string message;  // a part of it
};

std::vector<BadBgp> BadBgpCases() {
  return {
      {"MissingLocalAsn", "  local_asn: 65001\n", "", "bgp.local_asn", "is required"},
      {"ZeroAsn", "local_asn: 65001", "local_asn: 0", "bgp.local_asn",
       "must be an integer from 1 to 4294967295, got 0"},
      {"QuotedAsn", "peer_asn: 65000", "peer_asn: \"65000\"", "bgp.peer_asn", "without quotes"},
      {"HoldTimeBelowThree", "hold_time_s: 3", "hold_time_s: 2", "bgp.hold_time_s",
       "from 3 to 65535, got 2"},
      {"KeepaliveAboveAThirdOfHold", "keepalive_s: 1", "keepalive_s: 2", "bgp.keepalive_s",
       "more than a third of hold_time_s"},
      {"UnknownKey", "  hold_time_s: 3\n", "  hold_time: 3\n", "bgp.hold_time",
       "did you mean 'hold_time_s'?"},
      {"NoHosts", "  hosts:\n", "  hostz:\n", "bgp.hostz", "unknown key"},
      {"EmptyHosts", "  hosts:\n    lb1:", "  hosts: {}\n  x:\n    lb1:", "bgp.x", "unknown key"},
      {"BadHostName", "    lb1: {", "    -lb1: {", "bgp.hosts", "is not a host name"},
      {"RouterIdIpv6", "router_id: 10.10.3.2,", "router_id: fd00::2,", "bgp.hosts.lb1.router_id",
       "must be an IPv4 address"},
      {"MissingRouterId", "router_id: 10.10.3.2, ", "", "bgp.hosts.lb1.router_id", "is required"},
      {"SameRouterIdTwice", "router_id: 10.10.3.3", "router_id: 10.10.3.2",
       "bgp.hosts.lb2.router_id", "also the router_id of host lb1"},
      {"NoPeers", "peers: [10.10.4.1], next_hop: 10.10.3.2", "peers: [], next_hop: 10.10.3.2",
       "bgp.hosts.lb1.peers", "at least one router address"},
      {"PeerTwice", "peers: [10.10.4.1, 10.10.5.1]", "peers: [10.10.4.1, 10.10.4.1]",
       "bgp.hosts.lb2.peers[1]", "listed twice"},
      {"PeerNotAnAddress", "peers: [10.10.4.1]", "peers: [router1]", "bgp.hosts.lb1.peers[0]",
       "must be an IPv4 or IPv6 address"},
      {"NextHopIpv6", "next_hop: 10.10.3.3", "next_hop: fd00::3", "bgp.hosts.lb2.next_hop",
       "must be an IPv4 address"},
      {"RelativeSocket", "bird_socket: /run/bird2/bird.ctl", "bird_socket: bird.ctl",
       "bgp.hosts.lb2.bird_socket", "must be an absolute path"},
      {"QuoteInIncludePath", "include_file: /etc/bird/lb2.conf",
       "include_file: '/etc/bird/l\"b2.conf'", "bgp.hosts.lb2.include_file", "no spaces or quotes"},
      {"UnknownHostKey", "      next_hop: 10.10.3.3\n", "      nexthop: 10.10.3.3\n",
       "bgp.hosts.lb2.nexthop", "did you mean 'next_hop'?"},
      {"NoNextHopForIpv4Vips", "      next_hop: 10.10.3.3\n", "", "bgp.hosts.lb2.next_hop",
       "is required: vips[0] (web) is IPv4"},
  };
}

class BadBgpConfig : public ::testing::TestWithParam<BadBgp> {};

TEST_P(BadBgpConfig, IsRejectedWithThePathOfTheError) {
  const BadBgp& c = GetParam();
  const ParsedConfig p = ParseConfig(std::string(kBase) + ReplaceOnce(kBgp, c.from, c.to));
  ASSERT_FALSE(p.ok()) << c.name;
  bool found = false;
  for (const ConfigError& e : p.errors) {
    if (e.path == c.path && e.message.find(c.message) != std::string::npos) found = true;
  }
  EXPECT_TRUE(found) << c.name << ": wanted " << c.path << ": ..." << c.message << "...\ngot:\n"
                     << FormatErrors("t", p.errors);
}

INSTANTIATE_TEST_SUITE_P(All, BadBgpConfig, ::testing::ValuesIn(BadBgpCases()),
                         [](const auto& p) { return p.param.name; });

TEST(BgpConfig, AnIpv6VipNeedsAnIpv6PeerOnEveryHost) {
  const std::string v6 =
      ReplaceOnce(kBase, "  gateway_mac:", "  source_ipv6: fd00:3::2\n  gateway_mac:") +
      "  - name: web6\n    address: fd00:10::100\n    port: 80\n"
      "    backends:\n      - { address: fd00:2::11 }\n";
  const ParsedConfig p = ParseConfig(v6 + kBgp);
  ASSERT_FALSE(p.ok());
  ASSERT_EQ(p.errors.size(), 2u) << FormatErrors("t", p.errors);
  EXPECT_EQ(p.errors[0].path, "bgp.hosts.lb1.peers");
  EXPECT_THAT(p.errors[0].message, HasSubstr("has no IPv6 router: vips[1] (web6"));
  // lb2 has no IPv6 peer either; its missing next_hop6 is not reported on top of that.
  EXPECT_EQ(p.errors[1].path, "bgp.hosts.lb2.peers");
}

TEST(BgpConfig, AnUnknownHostIsRefusedNamingTheHostsThereAre) {
  const ParsedConfig p = ParseConfig(std::string(kBase) + kBgp);
  ASSERT_TRUE(p.ok());
  absl::StatusOr<const BgpHostConfig*> h = FindBgpHost(*p.config.bgp, "lb9");
  ASSERT_FALSE(h.ok());
  EXPECT_EQ(h.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(h.status().message(), HasSubstr("no entry for this host 'lb9'"));
  EXPECT_THAT(h.status().message(), HasSubstr("hosts in the config: lb1, lb2"));
  EXPECT_TRUE(FindBgpHost(*p.config.bgp, "lb2").ok());
}

// --- the decision ----------------------------------------------------------------------------

AnnounceInput Serving() {
  AnnounceInput in;
  in.dataplane_alive = true;
  in.generation = 12;
  in.acked_generation = 12;
  in.vips = {{"web", Ip("10.10.0.100"), true, false}, {"dns", Ip("10.10.0.53"), false, false}};
  return in;
}

TEST(DecideAnnouncements, AServingHostAnnouncesEveryVipWithAHealthyBackend) {
  const std::vector<Announcement> a = DecideAnnouncements(Serving());
  ASSERT_EQ(a.size(), 2u);
  EXPECT_TRUE(a[0].announce);
  EXPECT_EQ(a[0].reason, "");
  EXPECT_FALSE(a[1].announce);
  EXPECT_EQ(a[1].reason, "no healthy backend");
}

TEST(DecideAnnouncements, EachReasonWithdrawsEveryVipInOrderOfPrecedence) {
  struct Case {
    std::string name;
    std::function<void(AnnounceInput&)> edit;
    std::string reason;
  };
  const std::vector<Case> cases = {
      {"shutdown beats everything",
       [](AnnounceInput& in) {
         in.shutting_down = true;
         in.dataplane_alive = false;
       },
       "shutting down"},
      {"dead data plane",
       [](AnnounceInput& in) {
         in.dataplane_alive = false;
         in.dataplane_detail = "fulcrumd pid 7 has exited";
         in.acked_generation = 3;
       },
       "data plane not alive: fulcrumd pid 7 has exited"},
      {"nothing published", [](AnnounceInput& in) { in.generation = 0; },
       "no generation published yet"},
      {"unacknowledged", [](AnnounceInput& in) { in.acked_generation = 11; },
       "generation 12 not acknowledged (the data plane runs 11)"},
  };
  for (const Case& c : cases) {
    AnnounceInput in = Serving();
    c.edit(in);
    for (const Announcement& a : DecideAnnouncements(in)) {
      EXPECT_FALSE(a.announce) << c.name;
      EXPECT_EQ(a.reason, c.reason) << c.name;
    }
  }
}

TEST(DecideAnnouncements, AnAckInFlightKeepsAnnouncedVipsAndDoesNotAnnounceNewOnes) {
  // A health republish is published and acknowledged a few milliseconds apart: routes must not
  // flap in between; a VIP that was not announced waits for the ack.
  AnnounceInput in = Serving();
  in.acked_generation = 11;
  in.ack_grace = true;
  in.vips.push_back({"new", Ip("10.10.0.7"), true, false});
  in.vips[0].was_announced = true;
  const std::vector<Announcement> a = DecideAnnouncements(in);
  EXPECT_TRUE(a[0].announce);
  EXPECT_FALSE(a[1].announce);
  EXPECT_THAT(a[1].reason, HasSubstr("generation 12 not acknowledged"));
  EXPECT_FALSE(a[2].announce);
  EXPECT_THAT(a[2].reason, HasSubstr("generation 12 not acknowledged"));
}

// --- the BIRD file ---------------------------------------------------------------------------

TEST(RenderBirdConfig, IsTheStaticRoutesAndSessionsBirdNeeds) {
  const ParsedConfig p = ParseConfig(std::string(kBase) + kBgp);
  ASSERT_TRUE(p.ok());
  const std::string text = RenderBirdConfig(
      *p.config.bgp, "lb1", p.config.bgp->hosts.at("lb1"),
      {Ip("10.10.0.100"), Ip("10.10.0.53"), Ip("10.10.0.100"), Ip("fd00:10::100")});
  EXPECT_EQ(text,
            R"(# Written by fulcrumctl serve for host lb1: the VIPs this host announces and its BGP
# sessions (docs/controlplane.md "BGP"). Rewritten whenever they change; do not edit.
router id 10.10.3.2;

protocol device fulcrum_device {
}

protocol static fulcrum_vips4 {
  ipv4;
  route 10.10.0.53/32 blackhole;
  route 10.10.0.100/32 blackhole;
}

protocol static fulcrum_vips6 {
  ipv6;
  route fd00:10::100/128 blackhole;
}

protocol bgp fulcrum_peer1 {
  local 10.10.4.2 as 65001;
  neighbor 10.10.4.1 as 65000;
  hold time 3;
  keepalive time 1;
  connect retry time 5;
  error wait time 5, 60;
  ipv4 {
    import none;
    export where proto = "fulcrum_vips4";
    next hop address 10.10.3.2;
  };
}
)");
}

TEST(RenderBirdConfig, NothingAnnouncedKeepsTheSessionsAndEmptiesTheRoutes) {
  const ParsedConfig p = ParseConfig(std::string(kBase) + kBgp);
  ASSERT_TRUE(p.ok());
  const std::string text =
      RenderBirdConfig(*p.config.bgp, "lb2", p.config.bgp->hosts.at("lb2"), {});
  EXPECT_THAT(text, Not(HasSubstr("route ")));
  EXPECT_THAT(text, HasSubstr("protocol bgp fulcrum_peer2 {\n  local as 65001;\n"
                              "  neighbor 10.10.5.1 as 65000;\n"));
  EXPECT_THAT(text, HasSubstr("keepalive time 1;"));
}

// --- BIRD's control socket -------------------------------------------------------------------

// A stand-in for BIRD on a Unix socket: greets (unless told not to), records the command, and
// answers it with `reply`.
class FakeBird {
 public:
  FakeBird(std::string reply, bool greet = true) : reply_(std::move(reply)), greet_(greet) {
    path_ = absl::StrFormat("/tmp/fulcrum-bgp-test-%d-%d.ctl", getpid(), counter_++);
    unlink(path_.c_str());
    fd_ = socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::snprintf(a.sun_path, sizeof(a.sun_path), "%s", path_.c_str());
    EXPECT_EQ(bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
    EXPECT_EQ(listen(fd_, 8), 0);
    thread_ = std::thread([this] { Serve(); });
  }
  ~FakeBird() {
    stop_ = true;
    shutdown(fd_, SHUT_RDWR);
    close(fd_);
    thread_.join();
    unlink(path_.c_str());
  }
  const std::string& path() const { return path_; }
  int configures() const { return configures_; }
  int connections() const { return connections_; }

 private:
  void Serve() {
    while (!stop_) {
      const int c = accept(fd_, nullptr, nullptr);
      if (c < 0) return;
      ++connections_;
      if (greet_) Send(c, "0001 BIRD 2.0.12 ready.\n");
      std::string got;
      char buf[256];
      ssize_t n;
      while (got.find('\n') == std::string::npos && (n = read(c, buf, sizeof(buf))) > 0) {
        got.append(buf, size_t(n));
      }
      if (got == "configure\n") {
        ++configures_;
        Send(c, reply_);
      }
      close(c);
    }
  }
  static void Send(int fd, const std::string& s) {
    EXPECT_EQ(write(fd, s.data(), s.size()), ssize_t(s.size()));
  }

  static inline std::atomic<int> counter_{0};
  std::string reply_;
  bool greet_;
  std::string path_;
  int fd_ = -1;
  std::atomic<bool> stop_{false};
  std::atomic<int> configures_{0};
  std::atomic<int> connections_{0};
  std::thread thread_;
};

TEST(BirdConfigure, ASuccessfulReconfigurationIsOk) {
  FakeBird bird("0002-Reading configuration from /etc/bird/bird.conf\n0003 Reconfigured\n");
  EXPECT_TRUE(BirdConfigure(bird.path(), 2000).ok());
  EXPECT_EQ(bird.configures(), 1);
}

TEST(BirdConfigure, NothingListeningIsUnavailableAndSaysWhere) {
  const absl::Status s = BirdConfigure("/tmp/fulcrum-bgp-test-nothing-here.ctl", 500);
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(s.message(), HasSubstr("connect /tmp/fulcrum-bgp-test-nothing-here.ctl"));
  EXPECT_THAT(s.message(), HasSubstr("is bird running"));
}

TEST(BirdConfigure, ARefusedConfigurationCarriesBirdsMessage) {
  FakeBird bird(
      "0002-Reading configuration from /etc/bird/bird.conf\n"
      "8002 /etc/bird/fulcrum.conf:3:1 syntax error\n");
  const absl::Status s = BirdConfigure(bird.path(), 2000);
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(s.message(), HasSubstr("refused 'configure'"));
  EXPECT_THAT(s.message(), HasSubstr("/etc/bird/fulcrum.conf:3:1 syntax error"));
}

TEST(BirdConfigure, ASilentPeerTimesOut) {
  FakeBird bird("", /*greet=*/false);
  const absl::Status s = BirdConfigure(bird.path(), 200);
  EXPECT_EQ(s.code(), absl::StatusCode::kDeadlineExceeded);
}

// --- the Announcer ---------------------------------------------------------------------------

std::string ReadAll(const std::string& path) {
  std::ifstream f(path);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

TEST(Announcer, TellsBirdOnlyWhenTheAnnouncedSetChanges) {
  FakeBird bird("0003 Reconfigured\n");
  const std::string include = absl::StrFormat("/tmp/fulcrum-bgp-test-%d.conf", getpid());
  ParsedConfig p = ParseConfig(std::string(kBase) + kBgp);
  ASSERT_TRUE(p.ok());
  p.config.bgp->hosts.at("lb1").bird_socket = bird.path();
  p.config.bgp->hosts.at("lb1").include_file = include;
  Announcer announcer("lb1");
  AnnounceInput in = Serving();
  announcer.Tick(p.config.bgp, in);
  announcer.Tick(p.config.bgp, in);
  EXPECT_EQ(bird.configures(), 1);
  EXPECT_THAT(ReadAll(include), HasSubstr("route 10.10.0.100/32 blackhole;"));
  nlohmann::json st = announcer.StatusJson();
  EXPECT_TRUE(st["speaker"]["reachable"].get<bool>());
  EXPECT_EQ(st["vips"][0]["text"], "announced");
  EXPECT_EQ(st["vips"][1]["text"], "withdrawn: no healthy backend");

  in.dataplane_alive = false;
  in.dataplane_detail = "fulcrumd pid 7 has exited";
  announcer.Tick(p.config.bgp, in);
  EXPECT_EQ(bird.configures(), 2);
  EXPECT_THAT(ReadAll(include), Not(HasSubstr("route ")));
  st = announcer.StatusJson();
  EXPECT_EQ(st["vips"][0]["text"], "withdrawn: data plane not alive: fulcrumd pid 7 has exited");
  unlink(include.c_str());
}

TEST(Announcer, AnUnreachableSpeakerIsReportedWithWhatWasWanted) {
  const std::string include = absl::StrFormat("/tmp/fulcrum-bgp-test-u%d.conf", getpid());
  ParsedConfig p = ParseConfig(std::string(kBase) + kBgp);
  ASSERT_TRUE(p.ok());
  p.config.bgp->hosts.at("lb1").bird_socket = "/tmp/fulcrum-bgp-test-nothing-here.ctl";
  p.config.bgp->hosts.at("lb1").include_file = include;
  Announcer announcer("lb1");
  announcer.Tick(p.config.bgp, Serving());
  const nlohmann::json st = announcer.StatusJson();
  EXPECT_FALSE(st["speaker"]["reachable"].get<bool>());
  EXPECT_EQ(st["speaker"]["failures"], 1);
  EXPECT_EQ(st["vips"][0]["state"], "unknown");
  EXPECT_THAT(st["vips"][0]["text"].get<std::string>(),
              HasSubstr("bgp speaker unreachable: connect /tmp/fulcrum-bgp-test-nothing-here.ctl"));
  EXPECT_THAT(st["vips"][0]["text"].get<std::string>(), HasSubstr("(wanted: announced)"));
  // The file is written all the same: a BIRD that starts later reads it.
  EXPECT_THAT(ReadAll(include), HasSubstr("route 10.10.0.100/32 blackhole;"));
  unlink(include.c_str());
}

TEST(Announcer, AVipSharingAnAnnouncedAddressIsShownAsAnnouncedForTheOther) {
  FakeBird bird("0003 Reconfigured\n");
  const std::string include = absl::StrFormat("/tmp/fulcrum-bgp-test-s%d.conf", getpid());
  ParsedConfig p = ParseConfig(std::string(kBase) + kBgp);
  ASSERT_TRUE(p.ok());
  p.config.bgp->hosts.at("lb1").bird_socket = bird.path();
  p.config.bgp->hosts.at("lb1").include_file = include;
  Announcer announcer("lb1");
  AnnounceInput in = Serving();
  in.vips[1].address = in.vips[0].address;  // dns on web's address, with no healthy backend
  announcer.Tick(p.config.bgp, in);
  const nlohmann::json st = announcer.StatusJson();
  EXPECT_EQ(st["vips"][1]["state"], "announced");
  EXPECT_EQ(st["vips"][1]["announce"], false);
  EXPECT_EQ(st["vips"][1]["text"], "announced for web (dns itself: no healthy backend)");
  unlink(include.c_str());
}

TEST(Announcer, WithoutABgpSectionNothingIsToldAndStatusSaysNotConfigured) {
  Announcer announcer("lb1");
  announcer.Tick(std::nullopt, Serving());
  EXPECT_FALSE(announcer.StatusJson()["configured"].get<bool>());
}

}  // namespace
}  // namespace fulcrum::controlplane
