// The loaders against real interfaces (veths in this test's own network namespace): attach,
// replace, refuse a foreign program, read an attachment back from the kernel with its settings
// and counters, detach only what is Fulcrum's; and errors that keep libbpf's errno.
#include <linux/bpf.h>

#include <cerrno>
#include <set>
#include <string>
#include <vector>

#include "bpf/bpf_status.h"
#include "bpf/decap.h"
#include "bpf/kernel.h"
#include "bpf/probe.h"
#include "bpf/steer.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/bpf/bpf_testing.h"

namespace fulcrum::bpf {
namespace {

using ::fulcrum::testing::RunProgram;
using ::fulcrum::testing::Sh;
using ::testing::HasSubstr;

IpAddress Ip(const std::string& text) { return IpAddress::Parse(text).value(); }

TEST(BpfStatusTest, KeepsTheErrnoAndMapsItToTheMatchingCode) {
  const absl::Status perm = LibbpfError(-EPERM, "loading the thing");
  EXPECT_TRUE(absl::IsPermissionDenied(perm));
  EXPECT_EQ(ErrnoOf(perm), EPERM);
  EXPECT_THAT(perm.message(), HasSubstr("loading the thing"));
  EXPECT_THAT(perm.message(), HasSubstr("errno 1"));
  EXPECT_THAT(perm.message(), HasSubstr("root"));
  const absl::Status noent = LibbpfError(ENOENT, "x");  // a positive errno works too
  EXPECT_TRUE(absl::IsNotFound(noent));
  EXPECT_EQ(ErrnoOf(noent), ENOENT);
  EXPECT_EQ(ErrnoOf(absl::InternalError("no errno")), std::nullopt);
}

TEST(InterfaceIndexTest, UnknownInterfaceIsNotFoundAndNamed) {
  const absl::StatusOr<int> i = InterfaceIndex("fulcrum-none0");
  EXPECT_TRUE(absl::IsNotFound(i.status()));
  EXPECT_THAT(i.status().message(), HasSubstr("fulcrum-none0"));
}

class LoaderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    SKIP_UNLESS_ROOT();
    // IPv6 off on both ends before they come up: otherwise the kernel's own neighbour
    // discovery and MLD packets cross the veth and the program counts them beside the test's.
    ASSERT_TRUE(
        Sh("ip link add la type veth peer name lb && "
           "sysctl -qw net.ipv6.conf.la.disable_ipv6=1 net.ipv6.conf.lb.disable_ipv6=1 && "
           "ip link set la up && ip link set lb up"));
    la_ = InterfaceIndex("la").value();
  }
  void TearDown() override { Sh("ip link del la 2>/dev/null"); }

  static DecapConfig Config(uint16_t gue_port) {
    DecapConfig c;
    c.addresses = {Ip("192.0.2.2"), Ip("2001:db8::2")};
    c.gue_port = gue_port;
    return c;
  }
  static DecapProgram Load(DecapMode mode, const DecapConfig& config) {
    absl::StatusOr<DecapProgram> p = DecapProgram::Load(mode, config);
    EXPECT_TRUE(p.ok()) << p.status();
    return *std::move(p);
  }
  static uint32_t Id(const DecapProgram& p) { return GetProgramInfo(p.prog_fd())->id; }
  std::vector<DecapAttachment> Query() {
    absl::StatusOr<std::vector<DecapAttachment>> q = QueryDecap(la_);
    EXPECT_TRUE(q.ok()) << q.status();
    return q.ok() ? *q : std::vector<DecapAttachment>{};
  }
  int la_ = 0;
};

std::set<IpAddress> AddressSet(const DecapConfig& c) {
  return std::set<IpAddress>(c.addresses.begin(), c.addresses.end());
}

TEST_F(LoaderTest, AnAttachedDecapsulatorIsReadBackWithItsSettingsAndCounters) {
  uint32_t id;
  {
    DecapProgram p = Load(DecapMode::kXdp, Config(6080));
    ASSERT_TRUE(p.Attach(la_).ok());
    id = Id(p);
    // One IPv4-in-IPv4 packet for 192.0.2.2 through the program, then the object goes: the
    // attachment, its maps and counters stay with the kernel.
    std::vector<uint8_t> frame(14 + 20 + 20, 0);
    frame[12] = 0x08;
    uint8_t* outer = frame.data() + 14;
    outer[0] = 0x45;
    outer[3] = 40;
    outer[9] = 4;
    outer[16] = 192, outer[17] = 0, outer[18] = 2, outer[19] = 2;
    outer[20] = 0x45;
    outer[23] = 20;
    ASSERT_EQ(RunProgram(p.prog_fd(), frame).retval, static_cast<uint32_t>(XDP_PASS));
  }
  const std::vector<DecapAttachment> q = Query();
  ASSERT_EQ(q.size(), 1u);
  EXPECT_EQ(q[0].mode, DecapMode::kXdp);
  EXPECT_EQ(q[0].prog_id, id);
  EXPECT_EQ(AddressSet(q[0].config), AddressSet(Config(6080)));
  EXPECT_EQ(q[0].config.gue_port, 6080);
  EXPECT_EQ(q[0].counters.packets(FULCRUM_DECAP_4IN4), 1u);
  EXPECT_EQ(q[0].counters.PacketsIn(0, FULCRUM_DECAP_COUNTER_COUNT - 1), 1u);
}

TEST_F(LoaderTest, AttachingAgainReplacesFulcrumsOwnProgramAtomically) {
  DecapProgram first = Load(DecapMode::kXdp, Config(6080));
  ASSERT_TRUE(first.Attach(la_).ok());
  DecapProgram second = Load(DecapMode::kXdp, Config(5555));
  ASSERT_TRUE(second.Attach(la_).ok());
  const std::vector<DecapAttachment> q = Query();
  ASSERT_EQ(q.size(), 1u);
  EXPECT_EQ(q[0].prog_id, Id(second));
  EXPECT_EQ(q[0].config.gue_port, 5555);
}

TEST_F(LoaderTest, AnotherProgramOnTheHookIsNeverReplaced) {
  absl::StatusOr<SteerProgram> other = SteerProgram::Load();
  ASSERT_TRUE(other.ok());
  ASSERT_TRUE(other->Attach(la_).ok());
  DecapProgram p = Load(DecapMode::kXdp, Config(0));
  const absl::Status s = p.Attach(la_);
  EXPECT_TRUE(absl::IsFailedPrecondition(s)) << s;
  EXPECT_THAT(s.message(), HasSubstr(FULCRUM_PROG_STEER));
  EXPECT_EQ(QueryXdp(la_)->prog_id, GetProgramInfo(other->prog_fd())->id);
  EXPECT_TRUE(Query().empty()) << "a foreign program is not reported as a decapsulator";
  EXPECT_TRUE(absl::IsFailedPrecondition(DetachDecap(la_, DecapMode::kXdp)));
}

TEST_F(LoaderTest, TcDetachRemovesOnlyFulcrumsFilter) {
  DecapProgram p = Load(DecapMode::kTc, Config(6080));
  ASSERT_TRUE(p.Attach(la_).ok());
  // Someone else's filter on the same hook (any program will do; the handle differs).
  absl::StatusOr<ProbeEncap> neighbour = ProbeEncap::Load();
  ASSERT_TRUE(neighbour.ok());
  ASSERT_TRUE(AttachTc(la_, TcHook::kIngress, 0x1234, neighbour->prog_fd()).ok());
  std::vector<DecapAttachment> q = Query();
  ASSERT_EQ(q.size(), 1u);
  EXPECT_EQ(q[0].mode, DecapMode::kTc);
  EXPECT_EQ(q[0].prog_id, Id(p));
  ASSERT_TRUE(DetachDecap(la_, DecapMode::kTc).ok());
  EXPECT_TRUE(Query().empty());
  EXPECT_NE(*QueryTc(la_, TcHook::kIngress, 0x1234), 0u) << "the other filter must stay";
  EXPECT_TRUE(absl::IsNotFound(DetachDecap(la_, DecapMode::kTc)));
}

TEST_F(LoaderTest, XdpDetachLeavesTheInterfaceWithoutAProgram) {
  DecapProgram p = Load(DecapMode::kXdp, Config(0));
  ASSERT_TRUE(p.Attach(la_).ok());
  EXPECT_TRUE(QueryXdp(la_)->driver_mode);
  ASSERT_TRUE(DetachDecap(la_, DecapMode::kXdp).ok());
  EXPECT_EQ(QueryXdp(la_)->prog_id, 0u);
  EXPECT_TRUE(absl::IsNotFound(DetachDecap(la_, DecapMode::kXdp)));
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
