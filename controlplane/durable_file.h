// Durable files: a write that a crash (kill -9, power loss) leaves either complete or absent,
// never half done. Write to a temporary file in the same directory, fsync it, rename it over
// the target, fsync the directory. Readers therefore see the old or the new contents; a
// temporary left by a crash is removed by RemoveTemporaries() at the next start.
#pragma once

#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace fulcrum::controlplane {

inline constexpr std::string_view kTemporarySuffix = ".tmp";

absl::Status WriteFileDurably(const std::string& path, std::string_view contents);
absl::StatusOr<std::string> ReadWholeFile(const std::string& path);
// Deletes "*.tmp" files in `dir`; returns how many.
absl::StatusOr<int> RemoveTemporaries(const std::string& dir);
// mkdir with `mode` unless it exists as a directory.
absl::Status EnsureDirectory(const std::string& path, unsigned mode);
// errno as the most specific absl code, with `what` and `path` in the message.
absl::Status ErrnoStatus(int err, std::string_view what, std::string_view path);

}  // namespace fulcrum::controlplane
