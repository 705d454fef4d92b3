// IpAddress and FlowTuple: the address and 5-tuple types shared by every part of Fulcrum.
#pragma once

#include <array>
#include <compare>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace fulcrum {

// An IPv4 or IPv6 address. Bytes are in wire order; an IPv4 address occupies bytes 0..3 and
// the other twelve are zero, so that the family flag, not a prefix, tells the two apart.
struct IpAddress {
  std::array<uint8_t, 16> bytes{};
  bool v6 = false;

  static IpAddress V4(uint8_t a, uint8_t b, uint8_t c, uint8_t d) {
    IpAddress ip;
    ip.bytes = {a, b, c, d};
    return ip;
  }
  // 16 bytes for IPv6, 4 for IPv4 (the rest stay zero), in wire order.
  static IpAddress FromBytes(const uint8_t* bytes, bool v6) {
    IpAddress ip;
    std::memcpy(ip.bytes.data(), bytes, v6 ? 16 : 4);
    ip.v6 = v6;
    return ip;
  }
  // Accepts dotted-quad IPv4 and RFC 4291 IPv6 text; anything else is InvalidArgument.
  static absl::StatusOr<IpAddress> Parse(std::string_view text);
  std::string ToString() const;

  friend auto operator<=>(const IpAddress&, const IpAddress&) = default;
};

// The 5-tuple of a packet. Addresses follow IpAddress's layout; ports are host-order numbers.
// For an ICMP error about a flow, the parser fills in the tuple of that flow (see parse.h).
struct FlowTuple {
  std::array<uint8_t, 16> src{};
  std::array<uint8_t, 16> dst{};
  uint16_t src_port = 0;
  uint16_t dst_port = 0;
  uint8_t proto = 0;
  bool v6 = false;
  // Explicit and always zero: the struct has no hidden padding, so a key compares and hashes
  // as its bytes, and FlowHash reads ports and protocol with one 8-byte load.
  uint8_t reserved[2] = {};

  friend bool operator==(const FlowTuple&, const FlowTuple&) = default;
};
static_assert(sizeof(FlowTuple) == 40 && offsetof(FlowTuple, src_port) == 32 &&
              offsetof(FlowTuple, dst_port) == 34 && offsetof(FlowTuple, proto) == 36);

}  // namespace fulcrum
