// Protocol: the Unix-socket protocol between `fulcrumctl <command>` and `fulcrumctl serve`
// (docs/controlplane.md "Socket protocol"), and the CLI's exit codes.
//
// One connection carries one request. Each message is one line of JSON (UTF-8, '\n'-ended,
// at most kMaxMessageBytes). The client sends {"v": 1, "cmd": "...", ...}; the server answers
// with zero or more {"kind": "progress", ...} lines (apply --watch) and then exactly one
// {"kind": "result", "exit": N, "code": "OK", "message": "...", "data": {...}}, and closes.
#pragma once

#include <cstddef>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "nlohmann/json.hpp"

namespace fulcrum::controlplane {

inline constexpr int kProtocolVersion = 1;
inline constexpr size_t kMaxMessageBytes = size_t{64} << 20;

// Exit codes of fulcrumctl; the server puts the one that applies in every result.
enum ExitCode : int {
  kExitOk = 0,
  kExitInvalidConfig = 1,  // the config has errors (validate, plan, apply)
  kExitUsage = 2,          // bad command line
  kExitGuard = 3,          // a guard refuses the plan (plan reports it; apply needs --force)
  kExitRejected = 4,       // the data plane rejected the snapshot; it runs the previous one
  kExitNotAcked = 5,       // published, not acknowledged: no data plane attached, or too slow
  kExitRolledBack = 6,     // apply --watch found a problem and rolled back
  kExitUnreachable = 7,    // no server at the socket, or it broke the protocol
  kExitPermission = 8,     // the socket or the server refused this user
  kExitNotFound = 9,       // no such generation, VIP or backend
  kExitFailure = 10,       // anything else (I/O, internal)
};

// The exit code for a status without a more specific meaning.
int ExitCodeFor(const absl::Status& s);

std::string StatusCodeName(absl::StatusCode code);

nlohmann::json ResultMessage(int exit, const absl::Status& status, nlohmann::json data);
nlohmann::json ProgressMessage(nlohmann::json data);

// Line I/O on a connected socket. ReadLine fails with DeadlineExceeded after `timeout`,
// OutOfRange at end of stream, ResourceExhausted past kMaxMessageBytes.
class LineSocket {
 public:
  explicit LineSocket(int fd) : fd_(fd) {}
  absl::StatusOr<std::string> ReadLine(absl::Duration timeout);
  absl::Status WriteLine(const std::string& line);
  int fd() const { return fd_; }

 private:
  int fd_;
  std::string buffer_;
};

}  // namespace fulcrum::controlplane
