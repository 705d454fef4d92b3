// Client: one request to `fulcrumctl serve` over its Unix socket, with the progress lines
// handed to a callback as they arrive.
#pragma once

#include <functional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "nlohmann/json.hpp"

namespace fulcrum::controlplane {

class Client {
 public:
  explicit Client(std::string socket_path) : path_(std::move(socket_path)) {}

  // The result message. Unavailable when no server answers (no socket, refused),
  // PermissionDenied when the socket's mode keeps this user out, DeadlineExceeded when the
  // server says nothing for `idle_timeout`.
  absl::StatusOr<nlohmann::json> Call(nlohmann::json request,
                                      const std::function<void(const nlohmann::json&)>& on_progress,
                                      absl::Duration idle_timeout) const;

  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

}  // namespace fulcrum::controlplane
