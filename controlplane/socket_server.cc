// SocketServer: bind, permissions, peer credentials, one thread per connection.
#include "controlplane/socket_server.h"

#include <grp.h>
#include <poll.h>
#include <pwd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/strings/str_format.h"
#include "controlplane/durable_file.h"

#ifndef SO_PEERGROUPS
#define SO_PEERGROUPS 59
#endif

namespace fulcrum::controlplane {
namespace {

constexpr int kMaxConnections = 64;
constexpr absl::Duration kRequestTimeout = absl::Seconds(30);

absl::StatusOr<Peer> PeerOf(int fd) {
  ucred cred{};
  socklen_t len = sizeof(cred);
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
    return absl::InternalError(absl::StrFormat("SO_PEERCRED: %s", strerror(errno)));
  }
  Peer p;
  p.uid = cred.uid;
  p.gid = cred.gid;
  p.pid = cred.pid;
  std::vector<gid_t> groups(64);
  socklen_t glen = static_cast<socklen_t>(groups.size() * sizeof(gid_t));
  if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups.data(), &glen) != 0 && errno == ERANGE) {
    groups.resize(glen / sizeof(gid_t) + 1);
    glen = static_cast<socklen_t>(groups.size() * sizeof(gid_t));
    if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups.data(), &glen) != 0) glen = 0;
  }
  groups.resize(glen / sizeof(gid_t));
  p.groups = std::move(groups);
  return p;
}

}  // namespace

std::string UserName(uid_t uid) {
  passwd pw;
  passwd* out = nullptr;
  char buf[4096];
  if (getpwuid_r(uid, &pw, buf, sizeof(buf), &out) == 0 && out != nullptr) return out->pw_name;
  return std::to_string(uid);
}

bool Responder::Progress(const nlohmann::json& data) {
  if (!connected_) return false;
  if (!socket_.WriteLine(ProgressMessage(data).dump()).ok()) connected_ = false;
  return connected_;
}

void Responder::Result(int exit, const absl::Status& status, nlohmann::json data) {
  if (!connected_) return;
  if (!socket_.WriteLine(ResultMessage(exit, status, std::move(data)).dump()).ok()) {
    connected_ = false;
  }
}

bool SocketServer::Allowed(const Peer& peer, uid_t server_uid, int64_t group_gid) {
  if (peer.uid == 0 || peer.uid == server_uid) return true;
  if (group_gid < 0) return false;
  const auto g = static_cast<gid_t>(group_gid);
  return peer.gid == g || std::find(peer.groups.begin(), peer.groups.end(), g) != peer.groups.end();
}

SocketServer::~SocketServer() { Stop(); }

absl::Status SocketServer::Start() {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path_.empty() || path_.size() >= sizeof(addr.sun_path)) {
    return absl::InvalidArgumentError(absl::StrFormat("socket path '%s' must be 1 to %d characters",
                                                      path_, sizeof(addr.sun_path) - 1));
  }
  std::memcpy(addr.sun_path, path_.c_str(), path_.size() + 1);
  if (const group* g = getgrnam(group_.c_str()); g != nullptr) group_gid_ = g->gr_gid;

  // The directory: create it when missing, traversable by the group only.
  if (const size_t slash = path_.rfind('/'); slash != std::string::npos && slash > 0) {
    const std::string dir = path_.substr(0, slash);
    struct stat st;
    if (stat(dir.c_str(), &st) != 0) {
      if (absl::Status s = EnsureDirectory(dir, 0750); !s.ok()) return s;
      if (group_gid_ >= 0) {
        [[maybe_unused]] int rc =
            chown(dir.c_str(), static_cast<uid_t>(-1), static_cast<gid_t>(group_gid_));
      }
    }
  }
  // A socket file that nobody answers on is left over from a crash: replace it.
  {
    const int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    const bool live =
        probe >= 0 && connect(probe, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
    if (probe >= 0) close(probe);
    if (live) {
      return absl::FailedPreconditionError(absl::StrFormat(
          "another fulcrumctl serve answers on %s: stop it, or give this one --socket of its "
          "own",
          path_));
    }
    unlink(path_.c_str());
  }
  listen_fd_ = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (listen_fd_ < 0) return ErrnoStatus(errno, "socket", path_);
  // Bind with a umask that leaves the file 0660 from the start: no window in which it is wider.
  const mode_t old = umask(0117);
  const int rc = bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  const int err = errno;
  umask(old);
  if (rc != 0) return ErrnoStatus(err, "bind", path_);
  if (chmod(path_.c_str(), 0660) != 0) return ErrnoStatus(errno, "chmod", path_);
  if (group_gid_ >= 0 &&
      chown(path_.c_str(), static_cast<uid_t>(-1), static_cast<gid_t>(group_gid_)) != 0) {
    return ErrnoStatus(errno, "chown", path_);
  }
  if (listen(listen_fd_, 64) != 0) return ErrnoStatus(errno, "listen", path_);
  accept_thread_ = std::thread([this] { AcceptLoop(); });
  return absl::OkStatus();
}

void SocketServer::Stop() {
  if (!accept_thread_.joinable()) return;
  stop_ = true;
  accept_thread_.join();
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (int fd : open_fds_) shutdown(fd, SHUT_RDWR);
  }
  std::list<std::unique_ptr<Connection>> connections;
  {
    std::lock_guard<std::mutex> lock(mu_);
    connections.swap(connections_);
  }
  for (auto& c : connections) c->thread.join();
  if (listen_fd_ >= 0) close(listen_fd_);
  listen_fd_ = -1;
  unlink(path_.c_str());
}

void SocketServer::ReapFinished() {
  std::list<std::unique_ptr<Connection>> finished;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto it = connections_.begin(); it != connections_.end();) {
      if ((*it)->done) {
        finished.push_back(std::move(*it));
        it = connections_.erase(it);
      } else {
        ++it;
      }
    }
  }
  for (auto& c : finished) c->thread.join();
}

void SocketServer::AcceptLoop() {
  while (!stop_) {
    ReapFinished();
    pollfd p{listen_fd_, POLLIN, 0};
    if (poll(&p, 1, 200) <= 0) continue;
    const int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) continue;
    if (active_.load() >= kMaxConnections) {
      LineSocket s(fd);
      (void)s.WriteLine(
          ResultMessage(kExitUnreachable,
                        absl::UnavailableError("the server is busy: too many connections; retry"),
                        nlohmann::json::object())
              .dump());
      close(fd);
      continue;
    }
    ++active_;
    std::lock_guard<std::mutex> lock(mu_);
    open_fds_.push_back(fd);
    auto c = std::make_unique<Connection>();
    Connection* raw = c.get();
    c->thread = std::thread([this, fd, raw] {
      Serve(fd);
      raw->done = true;
    });
    connections_.push_back(std::move(c));
  }
}

void SocketServer::Serve(int fd) {
  LineSocket socket(fd);
  Responder responder(socket);
  absl::StatusOr<Peer> peer = PeerOf(fd);
  if (!peer.ok()) {
    responder.Result(kExitFailure, peer.status());
  } else if (!Allowed(*peer, geteuid(), group_gid_)) {
    responder.Result(
        kExitPermission,
        absl::PermissionDeniedError(absl::StrFormat(
            "user %s (uid %d) may not use this server: run as root, or join group '%s'",
            UserName(peer->uid), peer->uid, group_)));
  } else {
    absl::StatusOr<std::string> line = socket.ReadLine(kRequestTimeout);
    if (!line.ok()) {
      responder.Result(kExitUnreachable, absl::InvalidArgumentError(absl::StrFormat(
                                             "no request: %s", line.status().message())));
    } else {
      nlohmann::json request = nlohmann::json::parse(*line, nullptr, false);
      if (request.is_discarded() || !request.is_object() || !request.contains("cmd") ||
          !request["cmd"].is_string()) {
        responder.Result(kExitUnreachable,
                         absl::InvalidArgumentError("the request is not a JSON object with cmd"));
      } else if (request.value("v", 0) != kProtocolVersion) {
        responder.Result(kExitUnreachable,
                         absl::FailedPreconditionError(absl::StrFormat(
                             "protocol version %d, this server speaks %d: use a fulcrumctl of "
                             "the same release",
                             request.value("v", 0), kProtocolVersion)));
      } else {
        try {
          handler_(*peer, request, responder);
        } catch (const std::exception& e) {
          // A handler bug must not take the server down; the client learns what happened.
          responder.Result(kExitFailure,
                           absl::InternalError(absl::StrFormat("server error: %s", e.what())));
        }
      }
    }
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    open_fds_.erase(std::remove(open_fds_.begin(), open_fds_.end(), fd), open_fds_.end());
    close(fd);
  }
  --active_;
}

}  // namespace fulcrum::controlplane
