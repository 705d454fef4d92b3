// SocketServer: the control socket of `fulcrumctl serve`. A Unix stream socket, mode 0660,
// group `fulcrum` (or --group) when that group exists; every connection's peer credentials
// (SO_PEERCRED, SO_PEERGROUPS) are checked: root, the server's own user, or a member of the
// group. Each connection runs on a thread of its own (they are few and short, except
// `apply --watch`, which streams progress), so a slow client never holds up another.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "controlplane/protocol.h"
#include "nlohmann/json.hpp"

namespace fulcrum::controlplane {

struct Peer {
  uid_t uid = 0;
  gid_t gid = 0;
  pid_t pid = 0;
  std::vector<gid_t> groups;
};

// The user's name, or the uid in digits when it has none.
std::string UserName(uid_t uid);

// What a handler uses to answer. Writes fail quietly once the client is gone.
class Responder {
 public:
  explicit Responder(LineSocket& socket) : socket_(socket) {}
  // False once the client has gone away.
  bool Progress(const nlohmann::json& data);
  void Result(int exit, const absl::Status& status, nlohmann::json data = nlohmann::json::object());
  bool connected() const { return connected_; }

 private:
  LineSocket& socket_;
  bool connected_ = true;
};

class SocketServer {
 public:
  using Handler = std::function<void(const Peer&, const nlohmann::json&, Responder&)>;

  SocketServer(std::string path, std::string group, Handler handler)
      : path_(std::move(path)), group_(std::move(group)), handler_(std::move(handler)) {}
  ~SocketServer();
  SocketServer(const SocketServer&) = delete;
  SocketServer& operator=(const SocketServer&) = delete;

  // FailedPrecondition when a server already answers on the path; a stale socket file is
  // replaced.
  absl::Status Start();
  void Stop();

  // The rule, exposed for tests: root, `server_uid`, or a member of `group_gid` (-1: none).
  static bool Allowed(const Peer& peer, uid_t server_uid, int64_t group_gid);

 private:
  struct Connection {
    std::thread thread;
    std::atomic<bool> done{false};
  };
  void AcceptLoop();
  void Serve(int fd);
  void ReapFinished();

  std::string path_;
  std::string group_;
  Handler handler_;
  int listen_fd_ = -1;
  int64_t group_gid_ = -1;
  std::atomic<bool> stop_{false};
  std::thread accept_thread_;
  std::mutex mu_;
  std::list<std::unique_ptr<Connection>> connections_;
  std::vector<int> open_fds_;
  std::atomic<int> active_{0};
};

}  // namespace fulcrum::controlplane
