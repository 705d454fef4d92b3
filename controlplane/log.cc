// Log: timestamped lines on stderr.
#include "controlplane/log.h"

#include <unistd.h>

#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace fulcrum::controlplane {

void LogLine(const std::string& message) {
  const std::string line =
      absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ ", absl::Now(), absl::UTCTimeZone()) + message + "\n";
  [[maybe_unused]] ssize_t n = write(STDERR_FILENO, line.data(), line.size());
}

}  // namespace fulcrum::controlplane
