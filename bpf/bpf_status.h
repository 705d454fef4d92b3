// Errors from libbpf and the bpf() syscall as absl::Status, keeping the errno.
#pragma once

#include <optional>
#include <string_view>

#include "absl/status/status.h"

namespace fulcrum::bpf {

// The payload under which every status made here keeps the errno, as decimal text.
inline constexpr char kErrnoPayloadUrl[] = "fulcrum/errno";

// `err` is a libbpf return value (a negative errno) or an errno. The code is the errno's
// (absl::ErrnoToStatusCode: EPERM is PermissionDenied, ENOENT NotFound, EBUSY Unavailable...),
// the message "`what`: <strerror> (errno N)", plus a hint for the errors that have a usual
// cause (EPERM: not root).
absl::Status LibbpfError(int err, std::string_view what);

// The errno a LibbpfError() status carries, if any.
std::optional<int> ErrnoOf(const absl::Status& status);

}  // namespace fulcrum::bpf
