// LibbpfError: errno -> absl::Status, with the errno kept as a payload.
#include "bpf/bpf_status.h"

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string>

#include "absl/strings/cord.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace fulcrum::bpf {

absl::Status LibbpfError(int err, std::string_view what) {
  const int e = err < 0 ? -err : err;
  std::string message = absl::StrFormat("%s: %s (errno %d)", what, std::strerror(e), e);
  if (e == EPERM || e == EACCES) {
    message += "; loading BPF programs and changing interfaces needs root (CAP_BPF, CAP_NET_ADMIN)";
  }
  absl::Status status(absl::ErrnoToStatusCode(e), message);
  status.SetPayload(kErrnoPayloadUrl, absl::Cord(absl::StrCat(e)));
  return status;
}

std::optional<int> ErrnoOf(const absl::Status& status) {
  const absl::optional<absl::Cord> payload = status.GetPayload(kErrnoPayloadUrl);
  int e = 0;
  if (!payload.has_value() || !absl::SimpleAtoi(std::string(*payload), &e)) return std::nullopt;
  return e;
}

}  // namespace fulcrum::bpf
