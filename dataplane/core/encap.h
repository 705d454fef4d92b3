// Encap: the outer headers that carry a client's IP packet to its backend (IPIP, 6in6, 4in6, GUE).
//
// Split like Katran's and VPP's encapsulation: at config time BuildEncapTemplate() validates the
// settings and lays out the fixed outer bytes of one (backend, inner family) pair; per packet
// WriteEncap() copies them in front of the inner IP packet and fills the four things that vary:
// length, DSCP/ECN, the IPv4 checksum, and the entropy fields (UDP source port, flow label).
// docs/packet.md has the byte layouts and the reasons behind each field.
//
// Cost (bench/packet_bench.cc, bursts of 32, medians, README "Benchmarks"), per packet: IPIP
// over IPv4 2.1 ns, over IPv6 1.7 ns, GUE over IPv4 2.4 ns, over IPv6 3.8 ns; 1.4-3.0x a
// 64-byte memcpy (1.25 ns) in the same run. The IPv4 kinds pay for the header checksum.
#pragma once

#include <array>
#include <cassert>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string_view>

#include "absl/status/statusor.h"
#include "dataplane/core/ip_address.h"

namespace fulcrum {

using MacAddress = std::array<uint8_t, 6>;

// "02:00:00:00:03:01": six pairs of hex digits separated by colons, any case; nullopt for
// anything else.
std::optional<MacAddress> ParseMac(std::string_view text);

enum class EncapType : uint8_t {
  kIpip,  // IPv4-in-IPv4 (4), IPv6-in-IPv6 (41), IPv4-in-IPv6 (4); no IPv6-in-IPv4
  kGue,   // UDP whose payload is the inner IP packet: GUE variant 1 (draft-ietf-intarea-gue)
};

struct EncapConfig {
  MacAddress src_mac{};                // the sending port's own MAC
  MacAddress gateway_mac{};            // outer Ethernet destination: the routed next hop
  std::optional<IpAddress> source_v4;  // outer source for IPv4 backends
  std::optional<IpAddress> source_v6;  // outer source for IPv6 backends
  uint8_t ttl = 64;                    // outer TTL / hop limit
  EncapType type = EncapType::kIpip;
  uint16_t gue_port = 6080;  // outer UDP destination for kGue (`ip fou add port 6080 gue`)
};

// The shape of the outer headers; the digit is the outer IP version. The inner family only
// changes a protocol number, which lives in the template's bytes.
enum class EncapKind : uint8_t {
  kIpip4,  // Ethernet + IPv4
  kIpip6,  // Ethernet + IPv6
  kGue4,   // Ethernet + IPv4 + UDP
  kGue6,   // Ethernet + IPv6 + UDP
};

inline constexpr uint32_t kEncapEthernetLen = 14;

// Bytes the encapsulation adds to the IP packet: compare inner l3_length + this against the
// egress IP MTU. The inner Ethernet header is replaced, not kept, so it does not count.
constexpr uint32_t EncapIpOverhead(EncapKind kind) noexcept {
  switch (kind) {
    case EncapKind::kIpip4:
      return 20;
    case EncapKind::kIpip6:
      return 40;
    case EncapKind::kGue4:
      return 28;
    case EncapKind::kGue6:
      return 48;
  }
  return 0;
}
// The bytes WriteEncap() writes in front of the inner IP packet (Ethernet included).
constexpr uint32_t EncapHeaderLen(EncapKind kind) noexcept {
  return kEncapEthernetLen + EncapIpOverhead(kind);
}
inline constexpr uint32_t kMaxEncapHeaderLen = EncapHeaderLen(EncapKind::kGue6);  // 62

// GUE source ports: the dynamic range of RFC 6335, 49152..65535 (14 bits of entropy, plenty
// for an RSS indirection table), never a well-known port a filter might treat specially.
inline constexpr uint16_t kGueSourcePortMin = 0xc000;

// Which flow-hash bits go where. Low bits, because the high bits choose the Maglev slot and so
// are correlated with the backend: every packet a backend receives would share them.
constexpr uint16_t GueSourcePort(uint64_t flow_hash) noexcept {
  return static_cast<uint16_t>(kGueSourcePortMin | ((flow_hash >> 20) & 0x3fff));
}
constexpr uint32_t Ipv6FlowLabel(uint64_t flow_hash) noexcept {
  return static_cast<uint32_t>(flow_hash & 0xfffff);
}

// The outer headers of one backend for one inner family, ready to copy. One cache line.
struct alignas(64) EncapTemplate {
  // Ethernet, outer IP and UDP as sent, except the per-packet fields: IPv4 TOS, total length
  // and UDP length are zero; the IPv4 checksum field holds the folded ones'-complement sum of
  // every other header word (RFC 1071), which WriteEncap() completes; the IPv6 first word
  // holds only the version.
  std::array<uint8_t, kMaxEncapHeaderLen> bytes{};
  EncapKind kind = EncapKind::kIpip4;
  uint8_t header_len = 0;  // EncapHeaderLen(kind)
};
static_assert(sizeof(EncapTemplate) == 64);

// Config time: validates `config` for this backend and inner family and lays out the template.
// InvalidArgument, with the setting to change, for: a zero gateway MAC, a source MAC that is
// not unicast, TTL 0, GUE port 0, an unspecified backend, a missing or wrong-family source
// address, and IPv6 inside IPv4 with kIpip (no stock decapsulator: use GUE or an IPv6 backend).
absl::StatusOr<EncapTemplate> BuildEncapTemplate(const EncapConfig& config,
                                                 const IpAddress& backend, bool inner_v6);

// "ipip4", "ipip6", "gue4", "gue6": labels for metrics and logs.
std::string_view EncapKindName(EncapKind kind);

namespace encap_internal {

inline void Store16(uint8_t* p, uint16_t v) noexcept {
  v = __builtin_bswap16(v);
  std::memcpy(p, &v, sizeof(v));
}
inline void Store32(uint8_t* p, uint32_t v) noexcept {
  v = __builtin_bswap32(v);
  std::memcpy(p, &v, sizeof(v));
}
inline uint16_t Load16(const uint8_t* p) noexcept {
  uint16_t v;
  std::memcpy(&v, p, sizeof(v));
  return __builtin_bswap16(v);
}
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "Store16/Store32 swap to wire order");

}  // namespace encap_internal

// Hot path: writes the outer headers into inner_ip[-EncapHeaderLen(kKind), 0) and returns that
// length. `t.kind` must be kKind. The caller guarantees the headroom, and that the result fits
// its length fields (inner_len + EncapIpOverhead(kKind) <= 65535: the egress MTU check).
// `inner_tos` is the inner IPv4 TOS / IPv6 traffic class: it is copied whole, DSCP and ECN
// (RFC 6040 normal mode; docs/packet.md says why). `flow_hash` is the flow's FlowHash().
// Never allocates, throws or logs. Cost: see the file comment.
template <EncapKind kKind>
inline uint32_t WriteEncap(const EncapTemplate& t, uint8_t* inner_ip, uint32_t inner_len,
                           uint8_t inner_tos, uint64_t flow_hash) noexcept {
  using namespace encap_internal;
  constexpr uint32_t kLen = EncapHeaderLen(kKind);
  constexpr uint32_t kOverhead = EncapIpOverhead(kKind);
  assert(t.kind == kKind && inner_len + kOverhead <= 0xffff);
  uint8_t* const frame = inner_ip - kLen;
  std::memcpy(frame, t.bytes.data(), kLen);  // constant size: a few vector moves
  uint8_t* const ip = frame + kEncapEthernetLen;
  if constexpr (kKind == EncapKind::kIpip4 || kKind == EncapKind::kGue4) {
    const uint32_t total_len = inner_len + kOverhead;
    ip[1] = inner_tos;
    Store16(ip + 2, static_cast<uint16_t>(total_len));
    // The template's word 0 is 0x4500, so the TOS adds to the low byte of the sum. The partial
    // sum is read from the template, not from the bytes just written: a narrow load from a
    // wide store that has not retired yet can miss store forwarding.
    uint32_t sum = Load16(t.bytes.data() + kEncapEthernetLen + 10) + inner_tos + total_len;
    sum = (sum & 0xffff) + (sum >> 16);
    sum += sum >> 16;
    Store16(ip + 10, static_cast<uint16_t>(~sum));
    if constexpr (kKind == EncapKind::kGue4) {
      Store16(ip + 20, GueSourcePort(flow_hash));
      Store16(ip + 24, static_cast<uint16_t>(inner_len + 8));
    }
  } else {
    constexpr uint32_t kUdpLen = kKind == EncapKind::kGue6 ? 8 : 0;
    Store32(ip, 0x60000000u | uint32_t{inner_tos} << 20 | Ipv6FlowLabel(flow_hash));
    Store16(ip + 4, static_cast<uint16_t>(inner_len + kUdpLen));
    if constexpr (kKind == EncapKind::kGue6) {
      Store16(ip + 40, GueSourcePort(flow_hash));
      Store16(ip + 44, static_cast<uint16_t>(inner_len + 8));
    }
  }
  return kLen;
}

// The same, dispatching on t.kind: for callers that do not group packets by kind. A backend's
// kind never changes, so the branch predicts well.
inline uint32_t WriteEncap(const EncapTemplate& t, uint8_t* inner_ip, uint32_t inner_len,
                           uint8_t inner_tos, uint64_t flow_hash) noexcept {
  switch (t.kind) {
    case EncapKind::kIpip4:
      return WriteEncap<EncapKind::kIpip4>(t, inner_ip, inner_len, inner_tos, flow_hash);
    case EncapKind::kIpip6:
      return WriteEncap<EncapKind::kIpip6>(t, inner_ip, inner_len, inner_tos, flow_hash);
    case EncapKind::kGue4:
      return WriteEncap<EncapKind::kGue4>(t, inner_ip, inner_len, inner_tos, flow_hash);
    case EncapKind::kGue6:
      return WriteEncap<EncapKind::kGue6>(t, inner_ip, inner_len, inner_tos, flow_hash);
  }
  __builtin_unreachable();  // BuildEncapTemplate() only makes the four kinds
}

}  // namespace fulcrum
