// SocketServer: who may connect, the socket's mode, one server per path, a stale socket file
// replaced, and a request answered through Client.
#include "controlplane/socket_server.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>

#include "controlplane/client.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace fulcrum::controlplane {
namespace {

TEST(SocketServerAllowed, RootTheServersUserAndTheGroupMayConnect) {
  EXPECT_TRUE(SocketServer::Allowed({0, 1000, 1, {}}, 500, 77));
  EXPECT_TRUE(SocketServer::Allowed({500, 1000, 1, {}}, 500, 77));
  EXPECT_TRUE(SocketServer::Allowed({1000, 77, 1, {}}, 0, 77));
  EXPECT_TRUE(SocketServer::Allowed({1000, 1000, 1, {5, 77}}, 0, 77));
}

TEST(SocketServerAllowed, OthersMayNot) {
  EXPECT_FALSE(SocketServer::Allowed({1000, 1000, 1, {5}}, 0, 77));
  EXPECT_FALSE(SocketServer::Allowed({1000, 0, 1, {}}, 0, -1));  // root's group is not enough
}

class SocketServerTest : public ::testing::Test {
 protected:
  SocketServerTest() {
    char tmpl[] = "/tmp/fulcrum-socket-test-XXXXXX";
    dir_ = mkdtemp(tmpl);
    path_ = dir_ + "/s.sock";
  }
  ~SocketServerTest() override { std::system(("rm -rf " + dir_).c_str()); }
  std::string dir_;
  std::string path_;
};

SocketServer::Handler Echo() {
  return [](const Peer& peer, const nlohmann::json& req, Responder& out) {
    out.Progress({{"step", 1}});
    out.Result(0, absl::OkStatus(), {{"cmd", req["cmd"]}, {"uid", peer.uid}});
  };
}

TEST_F(SocketServerTest, AnswersARequestWithProgressAndAResult) {
  SocketServer server(path_, "fulcrum-no-such-group", Echo());
  ASSERT_TRUE(server.Start().ok());
  int progress = 0;
  absl::StatusOr<nlohmann::json> r = Client(path_).Call(
      {{"cmd", "hello"}}, [&](const nlohmann::json&) { ++progress; }, absl::Seconds(5));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ((*r)["data"]["cmd"], "hello");
  EXPECT_EQ((*r)["data"]["uid"], getuid());
  EXPECT_EQ(progress, 1);
}

TEST_F(SocketServerTest, TheSocketIsMode0660) {
  SocketServer server(path_, "fulcrum-no-such-group", Echo());
  ASSERT_TRUE(server.Start().ok());
  struct stat st;
  ASSERT_EQ(stat(path_.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0660u);
}

TEST_F(SocketServerTest, ASecondServerOnTheSamePathIsRefused) {
  SocketServer first(path_, "fulcrum-no-such-group", Echo());
  ASSERT_TRUE(first.Start().ok());
  SocketServer second(path_, "fulcrum-no-such-group", Echo());
  EXPECT_TRUE(absl::IsFailedPrecondition(second.Start()));
}

TEST_F(SocketServerTest, AStaleSocketFileIsReplaced) {
  {
    SocketServer crashed(path_, "fulcrum-no-such-group", Echo());
    ASSERT_TRUE(crashed.Start().ok());
  }
  // Stop() unlinks; leave a file behind the way a kill -9 would.
  ASSERT_EQ(system(("touch " + path_).c_str()), 0);
  SocketServer server(path_, "fulcrum-no-such-group", Echo());
  EXPECT_TRUE(server.Start().ok());
}

TEST_F(SocketServerTest, NoServerIsUnavailable) {
  absl::StatusOr<nlohmann::json> r = Client(path_).Call({{"cmd", "x"}}, nullptr, absl::Seconds(1));
  EXPECT_TRUE(absl::IsUnavailable(r.status())) << r.status();
}

}  // namespace
}  // namespace fulcrum::controlplane
