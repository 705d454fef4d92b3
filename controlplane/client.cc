// Client: connect, send one line, read until the result.
#include "controlplane/client.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_format.h"
#include "controlplane/protocol.h"

namespace fulcrum::controlplane {

absl::StatusOr<nlohmann::json> Client::Call(
    nlohmann::json request, const std::function<void(const nlohmann::json&)>& on_progress,
    absl::Duration idle_timeout) const {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path_.empty() || path_.size() >= sizeof(addr.sun_path)) {
    return absl::InvalidArgumentError(absl::StrFormat("socket path '%s' is too long", path_));
  }
  std::memcpy(addr.sun_path, path_.c_str(), path_.size() + 1);
  const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return absl::InternalError(absl::StrFormat("socket: %s", strerror(errno)));
  struct Closer {
    int fd;
    ~Closer() { close(fd); }
  } closer{fd};
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    const int err = errno;
    if (err == EACCES || err == EPERM) {
      return absl::PermissionDeniedError(absl::StrFormat(
          "%s: %s: run as root or as a member of group 'fulcrum'", path_, strerror(err)));
    }
    return absl::UnavailableError(
        absl::StrFormat("no fulcrumctl serve at %s (%s): start it, or point --socket at its socket",
                        path_, strerror(err)));
  }
  request["v"] = kProtocolVersion;
  LineSocket s(fd);
  if (absl::Status st = s.WriteLine(request.dump()); !st.ok()) {
    // A server that refuses the peer answers before reading the request and closes: the write
    // then fails, but the answer is still waiting in the socket.
    absl::StatusOr<std::string> line = s.ReadLine(absl::Seconds(1));
    if (!line.ok()) return st;
    nlohmann::json m = nlohmann::json::parse(*line, nullptr, false);
    if (m.is_discarded() || !m.is_object()) return st;
    return m;
  }
  while (true) {
    absl::StatusOr<std::string> line = s.ReadLine(idle_timeout);
    if (!line.ok()) {
      if (absl::IsDeadlineExceeded(line.status())) {
        return absl::DeadlineExceededError(absl::StrFormat(
            "the server at %s said nothing for %s", path_, absl::FormatDuration(idle_timeout)));
      }
      return absl::UnavailableError(
          absl::StrFormat("the server at %s closed the connection without a result: %s", path_,
                          line.status().message()));
    }
    nlohmann::json m = nlohmann::json::parse(*line, nullptr, false);
    if (m.is_discarded() || !m.is_object() || !m.contains("kind")) {
      return absl::UnavailableError(
          absl::StrFormat("the server at %s sent something that is not a message", path_));
    }
    if (m["kind"] == "progress") {
      if (on_progress) on_progress(m.value("data", nlohmann::json::object()));
      continue;
    }
    return m;
  }
}

}  // namespace fulcrum::controlplane
