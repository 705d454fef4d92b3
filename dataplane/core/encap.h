// Encap: the outer headers that carry a client's IP packet to its backend (IPIP, 6in6, 4in6, GUE).
//
// Split like Katran's and VPP's encapsulation: at config time BuildEncapTemplate() validates the
// settings and lays out the fixed outer bytes of one (backend, inner family) pair; per packet
// WriteEncap() copies them in front of the inner IP packet and fills what varies: length,
// DSCP/ECN, the IPv4 checksum, the entropy fields (UDP source port, flow label) and the egress
// port's source MAC.
// docs/packet.md has the byte layouts and the reasons behind each field.
//
// Cost (bench/packet_bench.cc, bursts of 32, medians, README "Benchmarks"), per packet, the
// port's MAC included: IPIP over IPv4 2.2 ns, over IPv6 2.5 ns, GUE over IPv4 2.9 ns, over
// IPv6 2.4 ns; 1.8-2.3x a 64-byte memcpy (1.25 ns) in the same run.
#pragma once

#include <array>
#include <cassert>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string_view>

// FULCRUM_NO_SIMD: the portable path on an x86 build too, so that its tests run here.
#if defined(__SSE2__) && !defined(FULCRUM_NO_SIMD)
#define FULCRUM_ENCAP_SSE2 1
#include <emmintrin.h>
#endif

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

// The egress port's MAC as WriteEncap() merges it into the frame's bytes 6-11, over the
// template's placeholder: the frame's first 16 bytes with only the MAC set. Built once per
// burst (EncapSourceMac::Of), read per packet with one load.
struct alignas(16) EncapSourceMac {
  std::array<uint8_t, 16> bytes{};

  static EncapSourceMac Of(const MacAddress& mac) noexcept {
    EncapSourceMac s;
    std::memcpy(s.bytes.data() + 6, mac.data(), mac.size());
    return s;
  }
};

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
// (RFC 6040 normal mode; docs/packet.md says why). `flow_hash` is the flow's FlowHash();
// `src` the egress port's MAC, which replaces the template's placeholder.
// Never allocates, throws or logs. Cost: see the file comment.
//
// With SSE2 the frame's first 32 bytes (Ethernet, and the outer IP header's fields that vary
// per packet: TOS and length, the IPv4 checksum, the IPv6 first word and payload length) are
// assembled in two registers and stored twice; the rest of the template is copied after them.
// Copying the template and then storing each field and the MAC over it took 8 stores for IPIP
// over IPv4 where this takes 3, and the burst loop is sensitive to its stores: 1.6-2.3 ns a
// packet in the pipeline (docs/dataplane.md "Cost").
template <EncapKind kKind>
inline uint32_t WriteEncap(const EncapTemplate& t, uint8_t* inner_ip, uint32_t inner_len,
                           uint8_t inner_tos, uint64_t flow_hash,
                           const EncapSourceMac& src) noexcept {
  using namespace encap_internal;
  constexpr uint32_t kLen = EncapHeaderLen(kKind);
  constexpr uint32_t kOverhead = EncapIpOverhead(kKind);
  constexpr bool kOuterV4 = kKind == EncapKind::kIpip4 || kKind == EncapKind::kGue4;
  static_assert(kLen >= 32, "the first 32 bytes are assembled whole");
  assert(t.kind == kKind && inner_len + kOverhead <= 0xffff);
  uint8_t* const frame = inner_ip - kLen;
  uint8_t* const ip = frame + kEncapEthernetLen;
  // The per-packet words of the outer IP header, in wire order: for IPv4 byte 15 of the frame
  // (TOS, with the template's 0x45 before it), the total length (16-17) and the checksum
  // (24-25); for IPv6 the first word (14-17) and the payload length (18-19).
  uint16_t word14;  // frame bytes 14-15
  uint16_t word16;  // frame bytes 16-17
  uint16_t word_b;  // IPv4: checksum, frame bytes 24-25; IPv6: payload length, bytes 18-19
  if constexpr (kOuterV4) {
    const uint32_t total_len = inner_len + kOverhead;
    // The template's word 0 is 0x4500, so the TOS adds to the low byte of the sum.
    uint32_t sum = Load16(t.bytes.data() + kEncapEthernetLen + 10) + inner_tos + total_len;
    sum = (sum & 0xffff) + (sum >> 16);
    sum += sum >> 16;
    word14 = __builtin_bswap16(static_cast<uint16_t>(0x4500 | inner_tos));
    word16 = __builtin_bswap16(static_cast<uint16_t>(total_len));
    word_b = __builtin_bswap16(static_cast<uint16_t>(~sum));
  } else {
    constexpr uint32_t kUdpLen = kKind == EncapKind::kGue6 ? 8 : 0;
    const uint32_t first =
        __builtin_bswap32(0x60000000u | uint32_t{inner_tos} << 20 | Ipv6FlowLabel(flow_hash));
    word14 = static_cast<uint16_t>(first);
    word16 = static_cast<uint16_t>(first >> 16);
    word_b = __builtin_bswap16(static_cast<uint16_t>(inner_len + kUdpLen));
  }
#if defined(FULCRUM_ENCAP_SSE2)
  const auto* tmpl = reinterpret_cast<const __m128i*>(t.bytes.data());  // 64-byte aligned
  const __m128i mac_lanes = _mm_set_epi32(0, -1, static_cast<int>(0xffff0000), 0);  // 6-11
  __m128i head = _mm_or_si128(_mm_andnot_si128(mac_lanes, _mm_load_si128(tmpl)),
                              _mm_load_si128(reinterpret_cast<const __m128i*>(src.bytes.data())));
  head = _mm_insert_epi16(head, word14, 7);
  __m128i next = _mm_insert_epi16(_mm_load_si128(tmpl + 1), word16, 0);
  next = _mm_insert_epi16(next, word_b, kOuterV4 ? 4 : 1);
  _mm_storeu_si128(reinterpret_cast<__m128i*>(frame), head);
  _mm_storeu_si128(reinterpret_cast<__m128i*>(frame + 16), next);
  std::memcpy(frame + 32, t.bytes.data() + 32, kLen - 32);  // constant size: a few moves
#else
  std::memcpy(frame, t.bytes.data(), kLen);
  std::memcpy(frame + 6, src.bytes.data() + 6, 6);
  std::memcpy(ip, &word14, 2);
  std::memcpy(ip + 2, &word16, 2);
  std::memcpy(ip + (kOuterV4 ? 10 : 4), &word_b, 2);
#endif
  if constexpr (kKind == EncapKind::kGue4) {
    Store16(ip + 20, GueSourcePort(flow_hash));
    Store16(ip + 24, static_cast<uint16_t>(inner_len + 8));
  } else if constexpr (kKind == EncapKind::kGue6) {
    Store16(ip + 40, GueSourcePort(flow_hash));
    Store16(ip + 44, static_cast<uint16_t>(inner_len + 8));
  }
  return kLen;
}

// The same, dispatching on t.kind: for callers that do not group packets by kind. A backend's
// kind never changes, so the branch predicts well.
inline uint32_t WriteEncap(const EncapTemplate& t, uint8_t* inner_ip, uint32_t inner_len,
                           uint8_t inner_tos, uint64_t flow_hash,
                           const EncapSourceMac& src) noexcept {
  switch (t.kind) {
    case EncapKind::kIpip4:
      return WriteEncap<EncapKind::kIpip4>(t, inner_ip, inner_len, inner_tos, flow_hash, src);
    case EncapKind::kIpip6:
      return WriteEncap<EncapKind::kIpip6>(t, inner_ip, inner_len, inner_tos, flow_hash, src);
    case EncapKind::kGue4:
      return WriteEncap<EncapKind::kGue4>(t, inner_ip, inner_len, inner_tos, flow_hash, src);
    case EncapKind::kGue6:
      return WriteEncap<EncapKind::kGue6>(t, inner_ip, inner_len, inner_tos, flow_hash, src);
  }
  __builtin_unreachable();  // BuildEncapTemplate() only makes the four kinds
}

}  // namespace fulcrum
