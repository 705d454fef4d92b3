// FlowHashKey parsing.
#include "dataplane/core/flow_hash.h"

#include "absl/strings/str_format.h"

namespace fulcrum {

absl::StatusOr<FlowHashKey> FlowHashKey::FromHex(std::string_view hex) {
  if (hex.size() != 32) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "hash key must be 32 hex digits (128 bits), got %d characters", hex.size()));
  }
  uint64_t words[2] = {0, 0};
  for (size_t i = 0; i < 32; i += 2) {
    unsigned byte = 0;
    for (size_t j = i; j < i + 2; ++j) {
      const char c = hex[j];
      unsigned nibble;
      if (c >= '0' && c <= '9') {
        nibble = static_cast<unsigned>(c - '0');
      } else if (c >= 'a' && c <= 'f') {
        nibble = static_cast<unsigned>(c - 'a' + 10);
      } else if (c >= 'A' && c <= 'F') {
        nibble = static_cast<unsigned>(c - 'A' + 10);
      } else {
        return absl::InvalidArgumentError(
            absl::StrFormat("hash key: '%c' at position %d is not a hex digit", c, j));
      }
      byte = byte << 4 | nibble;
    }
    // Byte i/2 of the key; bytes are little-endian within each word.
    words[i / 16] |= uint64_t{byte} << (8 * ((i / 2) % 8));
  }
  return FlowHashKey{words[0], words[1]};
}

}  // namespace fulcrum
