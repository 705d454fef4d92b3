// Log: one line per event on stderr, with a UTC timestamp, written with a single write so
// lines from several threads never interleave. `fulcrumctl serve` logs changes, health
// transitions and failures; journald or the test harness collects stderr.
#pragma once

#include <string>

#include "absl/strings/str_format.h"

namespace fulcrum::controlplane {

void LogLine(const std::string& message);

template <typename... Args>
void Log(const absl::FormatSpec<Args...>& format, const Args&... args) {
  LogLine(absl::StrFormat(format, args...));
}

}  // namespace fulcrum::controlplane
