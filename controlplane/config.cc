// Config: names and the snapshot settings derived from a config.
#include "controlplane/config.h"

#include <cstring>

#include "absl/strings/str_format.h"

namespace fulcrum::controlplane {

std::string BackendName(const IpAddress& address, uint16_t port) {
  if (port == 0) return address.ToString();
  return absl::StrFormat(address.v6 ? "[%s]:%d" : "%s:%d", address.ToString(), port);
}

std::string ServiceName(const VipConfig& vip) {
  return absl::StrFormat(vip.address.v6 ? "[%s]:%d/%s" : "%s:%d/%s", vip.address.ToString(),
                         vip.port, ProtocolName(vip.proto));
}

std::string BackendKey(std::string_view vip_name, const IpAddress& address, uint16_t port) {
  return absl::StrFormat("%s %s %d", vip_name, address.ToString(), port);
}

uint16_t CheckPort(const VipConfig& vip, const BackendConfig& backend) {
  if (vip.health_check.port != 0) return vip.health_check.port;
  if (backend.port != 0) return backend.port;
  return vip.port;
}

std::string_view ProtocolName(uint8_t proto) {
  switch (proto) {
    case 6:
      return "tcp";
    case 17:
      return "udp";
    default:
      return "unknown";
  }
}

std::string_view OperatorStateName(OperatorState s) {
  switch (s) {
    case OperatorState::kActive:
      return "active";
    case OperatorState::kDraining:
      return "draining";
    case OperatorState::kDisabled:
      return "disabled";
  }
  return "unknown";
}

std::string_view PublishedStateName(shm::BackendState s) {
  switch (s) {
    case shm::BackendState::kActive:
      return "active";
    case shm::BackendState::kDraining:
      return "draining";
    case shm::BackendState::kDown:
      return "down";
    case shm::BackendState::kDisabled:
      return "disabled";
  }
  return "unknown";
}

shm::SnapshotSettings ToSettings(const DataplaneConfig& d) {
  shm::SnapshotSettings s{};
  std::memcpy(s.hash_key, d.hash_key, sizeof(s.hash_key));
  if (d.source_ipv4.has_value()) {
    std::memcpy(s.source_v4, d.source_ipv4->bytes.data(), 4);
    s.flags |= shm::kSettingsHasSourceV4;
  }
  if (d.source_ipv6.has_value()) {
    std::memcpy(s.source_v6, d.source_ipv6->bytes.data(), 16);
    s.flags |= shm::kSettingsHasSourceV6;
  }
  std::memcpy(s.gateway_mac, d.gateway_mac, sizeof(s.gateway_mac));
  s.encap = d.encap;
  s.ttl = d.ttl;
  s.gue_port = d.gue_port;
  s.mtu = d.mtu;
  s.tcp_timeout_s = d.tcp_timeout_s;
  s.tcp_closing_timeout_s = d.tcp_closing_timeout_s;
  s.udp_timeout_s = d.udp_timeout_s;
  s.icmp_rate_pps = d.icmp_rate_pps;
  return s;
}

}  // namespace fulcrum::controlplane
