// Protocol: framing and exit codes.
#include "controlplane/protocol.h"

#include <poll.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_format.h"

namespace fulcrum::controlplane {

int ExitCodeFor(const absl::Status& s) {
  switch (s.code()) {
    case absl::StatusCode::kOk:
      return kExitOk;
    case absl::StatusCode::kInvalidArgument:
      return kExitInvalidConfig;
    case absl::StatusCode::kNotFound:
      return kExitNotFound;
    case absl::StatusCode::kPermissionDenied:
    case absl::StatusCode::kUnauthenticated:
      return kExitPermission;
    case absl::StatusCode::kUnavailable:
      return kExitUnreachable;
    case absl::StatusCode::kAborted:
      return kExitRejected;
    case absl::StatusCode::kDeadlineExceeded:
      return kExitNotAcked;
    default:
      return kExitFailure;
  }
}

std::string StatusCodeName(absl::StatusCode code) { return absl::StatusCodeToString(code); }

nlohmann::json ResultMessage(int exit, const absl::Status& status, nlohmann::json data) {
  return {{"kind", "result"},
          {"exit", exit},
          {"code", StatusCodeName(status.code())},
          {"message", std::string(status.message())},
          {"data", std::move(data)}};
}

nlohmann::json ProgressMessage(nlohmann::json data) {
  return {{"kind", "progress"}, {"data", std::move(data)}};
}

absl::StatusOr<std::string> LineSocket::ReadLine(absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (true) {
    if (const size_t nl = buffer_.find('\n'); nl != std::string::npos) {
      std::string line = buffer_.substr(0, nl);
      buffer_.erase(0, nl + 1);
      return line;
    }
    if (buffer_.size() > kMaxMessageBytes) {
      return absl::ResourceExhaustedError(
          absl::StrFormat("message longer than %d bytes", kMaxMessageBytes));
    }
    const absl::Duration left = deadline - absl::Now();
    if (left <= absl::ZeroDuration()) {
      return absl::DeadlineExceededError("no complete message before the deadline");
    }
    pollfd p{fd_, POLLIN, 0};
    const int rc =
        poll(&p, 1, static_cast<int>(std::min<int64_t>(absl::ToInt64Milliseconds(left) + 1, 1000)));
    if (rc < 0 && errno == EINTR) continue;
    if (rc < 0) return absl::InternalError(absl::StrFormat("poll: %s", strerror(errno)));
    if (rc == 0) continue;
    char buf[65536];
    const ssize_t n = recv(fd_, buf, sizeof(buf), 0);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (n < 0) return absl::UnavailableError(absl::StrFormat("recv: %s", strerror(errno)));
    if (n == 0) return absl::OutOfRangeError("connection closed");
    buffer_.append(buf, static_cast<size_t>(n));
  }
}

absl::Status LineSocket::WriteLine(const std::string& line) {
  const std::string data = line + "\n";
  size_t done = 0;
  while (done < data.size()) {
    const ssize_t n = send(fd_, data.data() + done, data.size() - done, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return absl::UnavailableError(absl::StrFormat("send: %s", strerror(errno)));
    done += static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

}  // namespace fulcrum::controlplane
