// Encap: config-time validation of the encapsulation settings and the per-backend templates.
#include "dataplane/core/encap.h"

#include <algorithm>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_format.h"

namespace fulcrum {
namespace {

constexpr uint8_t kProtoIpip = 4;  // IPv4 inside (IPPROTO_IPIP), under IPv4 or IPv6
constexpr uint8_t kProtoIpv6 = 41;
constexpr uint8_t kProtoUdp = 17;

std::string MacToString(const MacAddress& mac) {
  return absl::StrFormat("%02x:%02x:%02x:%02x:%02x:%02x", mac[0], mac[1], mac[2], mac[3], mac[4],
                         mac[5]);
}

bool IsZero(const MacAddress& mac) {
  return std::all_of(mac.begin(), mac.end(), [](uint8_t b) { return b == 0; });
}

bool IsUnspecified(const IpAddress& ip) {
  return std::all_of(ip.bytes.begin(), ip.bytes.end(), [](uint8_t b) { return b == 0; });
}

absl::Status CheckSource(const std::optional<IpAddress>& source, const IpAddress& backend) {
  const char* name = backend.v6 ? "source_v6" : "source_v4";
  const char* family = backend.v6 ? "IPv6" : "IPv4";
  if (!source.has_value()) {
    return absl::InvalidArgumentError(
        absl::StrFormat("encap.%s is not set, but backend %s is %s; set it to this load "
                        "balancer's %s address",
                        name, backend.ToString(), family, family));
  }
  if (source->v6 != backend.v6) {
    return absl::InvalidArgumentError(
        absl::StrFormat("encap.%s: %s is not an %s address", name, source->ToString(), family));
  }
  if (IsUnspecified(*source)) {
    return absl::InvalidArgumentError(
        absl::StrFormat("encap.%s: %s is unspecified; set it to this load balancer's %s address",
                        name, source->ToString(), family));
  }
  return absl::OkStatus();
}

// Folded ones'-complement sum of an IPv4 header's 16-bit words (RFC 1071).
uint16_t FoldedSum(const uint8_t* header, size_t len) {
  uint32_t sum = 0;
  for (size_t i = 0; i < len; i += 2) sum += encap_internal::Load16(header + i);
  sum = (sum & 0xffff) + (sum >> 16);
  sum += sum >> 16;
  return static_cast<uint16_t>(sum);
}

}  // namespace

std::optional<MacAddress> ParseMac(std::string_view text) {
  if (text.size() != 17) return std::nullopt;
  auto digit = [](char ch) {
    return (ch >= '0' && ch <= '9')   ? ch - '0'
           : (ch >= 'a' && ch <= 'f') ? ch - 'a' + 10
           : (ch >= 'A' && ch <= 'F') ? ch - 'A' + 10
                                      : -1;
  };
  MacAddress mac;
  for (size_t i = 0; i < 6; ++i) {
    const int hi = digit(text[3 * i]);
    const int lo = digit(text[3 * i + 1]);
    if (hi < 0 || lo < 0 || (i < 5 && text[3 * i + 2] != ':')) return std::nullopt;
    mac[i] = static_cast<uint8_t>(hi * 16 + lo);
  }
  return mac;
}

std::string_view EncapKindName(EncapKind kind) {
  switch (kind) {
    case EncapKind::kIpip4:
      return "ipip4";
    case EncapKind::kIpip6:
      return "ipip6";
    case EncapKind::kGue4:
      return "gue4";
    case EncapKind::kGue6:
      return "gue6";
  }
  return "unknown";
}

absl::StatusOr<EncapTemplate> BuildEncapTemplate(const EncapConfig& config,
                                                 const IpAddress& backend, bool inner_v6) {
  using encap_internal::Store16;
  if (IsZero(config.gateway_mac)) {
    return absl::InvalidArgumentError(
        "encap.gateway_mac is 00:00:00:00:00:00; set it to the MAC address of the routed next "
        "hop towards the backends");
  }
  if (IsZero(config.src_mac) || (config.src_mac[0] & 0x01) != 0) {
    return absl::InvalidArgumentError(
        absl::StrFormat("encap.src_mac %s is not a unicast address; use the MAC address of the "
                        "port that sends the encapsulated packets",
                        MacToString(config.src_mac)));
  }
  if (config.ttl == 0) {
    return absl::InvalidArgumentError(
        "encap.ttl must be 1..255, got 0 (the first router would drop every packet)");
  }
  const bool gue = config.type == EncapType::kGue;
  if (gue && config.gue_port == 0) {
    return absl::InvalidArgumentError("encap.gue_port must be 1..65535, got 0");
  }
  if (IsUnspecified(backend)) {
    return absl::InvalidArgumentError(
        absl::StrFormat("backend address %s is unspecified; a backend needs a unicast address",
                        backend.ToString()));
  }
  if (!gue && !backend.v6 && inner_v6) {
    // sit (6in4, protocol 41 over IPv4) exists, but Fulcrum's backends decapsulate with ipip,
    // ip6tnl and fou only, and DESIGN.md lists no 6in4: refuse rather than send what no
    // backend was set up to receive.
    return absl::InvalidArgumentError(absl::StrFormat(
        "encap.type ipip cannot carry IPv6 packets to IPv4 backend %s (IPv6-in-IPv4 is not "
        "supported); use encap.type gue, or give the backend an IPv6 address",
        backend.ToString()));
  }
  const std::optional<IpAddress>& source = backend.v6 ? config.source_v6 : config.source_v4;
  if (absl::Status s = CheckSource(source, backend); !s.ok()) return s;

  EncapTemplate t;
  t.kind = backend.v6 ? (gue ? EncapKind::kGue6 : EncapKind::kIpip6)
                      : (gue ? EncapKind::kGue4 : EncapKind::kIpip4);
  t.header_len = static_cast<uint8_t>(EncapHeaderLen(t.kind));
  uint8_t* const b = t.bytes.data();
  std::memcpy(b, config.gateway_mac.data(), 6);
  std::memcpy(b + 6, config.src_mac.data(), 6);
  Store16(b + 12, backend.v6 ? 0x86dd : 0x0800);
  uint8_t* const ip = b + kEncapEthernetLen;
  const uint8_t proto = gue ? kProtoUdp : (inner_v6 ? kProtoIpv6 : kProtoIpip);
  uint8_t* udp;
  if (!backend.v6) {
    ip[0] = 0x45;
    // TOS and total length are per packet (zero here). ID 0 with DF: RFC 6864 section 4.1
    // allows any ID on atomic datagrams, and DF keeps the outer packet atomic.
    Store16(ip + 6, 0x4000);
    ip[8] = config.ttl;
    ip[9] = proto;
    std::memcpy(ip + 12, source->bytes.data(), 4);
    std::memcpy(ip + 16, backend.bytes.data(), 4);
    Store16(ip + 10, FoldedSum(ip, 20));  // checksum field was zero while summing
    udp = ip + 20;
  } else {
    ip[0] = 0x60;  // traffic class and flow label are per packet
    ip[6] = proto;
    ip[7] = config.ttl;
    std::memcpy(ip + 8, source->bytes.data(), 16);
    std::memcpy(ip + 24, backend.bytes.data(), 16);
    udp = ip + 40;
  }
  if (gue) {
    // Source port and length are per packet. Checksum 0: allowed for IPv4 (RFC 768) and for
    // tunnels over IPv6 (RFC 6935, 6936), and accepted by Linux fou; docs/packet.md says why.
    Store16(udp + 2, config.gue_port);
  }
  return t;
}

}  // namespace fulcrum
