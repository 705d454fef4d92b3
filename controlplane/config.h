// Config: the parsed, validated form of a fulcrumctl YAML config (docs/config.md documents every
// field). Plain values only: config_parser.h produces them, and everything downstream (ids,
// effective backend states, plans, snapshots) reads them.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "dataplane/core/ip_address.h"
#include "dataplane/shm/abi.h"

namespace fulcrum::controlplane {

// What the operator asks of a backend. Health is separate (health_checker.h): a backend the
// file calls active may still be published as down.
enum class OperatorState : uint8_t {
  kActive = 0,    // new and existing flows
  kDraining = 1,  // existing flows only
  kDisabled = 2,  // no flows; not health checked
};

enum class CheckType : uint8_t { kNone = 0, kTcp = 1, kHttp = 2 };

inline constexpr uint32_t kMaxWeight = 65535;

struct HealthCheckConfig {
  CheckType type = CheckType::kNone;
  uint16_t port = 0;               // 0: the backend's port, else the VIP's
  std::string path = "/";          // http only
  std::string host;                // http only; empty: the backend's address
  std::vector<int> expect_status;  // http only; empty: any 2xx or 3xx
  uint32_t interval_ms = 1000;
  uint32_t timeout_ms = 500;
  uint32_t rise = 2;     // consecutive successes that bring a down backend up
  uint32_t fall = 3;     // consecutive failures that take an up backend down
  uint32_t so_mark = 0;  // SO_MARK on probe sockets (0: none)
  // Probe VIP:port through the tunnel (bpf/probe.h) instead of the backend's own address:
  // tests the backend's decapsulation and its VIP too. Needs `serve --probe-interface`.
  bool through_tunnel = false;

  friend bool operator==(const HealthCheckConfig&, const HealthCheckConfig&) = default;
};

struct GuardsConfig {
  double max_backend_share = 1.0;   // of the VIP's table; 1.0: no limit
  double max_moved_fraction = 0.5;  // of the VIP's flows a plan may move without --force
  double min_healthy = 0.5;         // panic threshold: healthy weight / serving weight

  friend bool operator==(const GuardsConfig&, const GuardsConfig&) = default;
};

struct BackendConfig {
  IpAddress address;
  uint16_t port = 0;  // part of the backend's identity; 0 when it is just an address
  uint32_t weight = 1;
  OperatorState state = OperatorState::kActive;
  std::optional<double> capacity_cps;  // new connections per second it can take

  friend bool operator==(const BackendConfig&, const BackendConfig&) = default;
};

struct VipConfig {
  std::string name;
  IpAddress address;
  uint16_t port = 0;
  uint8_t proto = 6;  // 6 tcp, 17 udp
  uint32_t table_size = 65537;
  shm::FragmentPolicy fragments = shm::FragmentPolicy::kDrop;
  std::vector<BackendConfig> backends;
  HealthCheckConfig health_check;
  GuardsConfig guards;

  friend bool operator==(const VipConfig&, const VipConfig&) = default;
};

struct DataplaneConfig {
  std::optional<IpAddress> source_ipv4;
  std::optional<IpAddress> source_ipv6;
  uint8_t gateway_mac[6] = {};
  shm::EncapKindSetting encap = shm::EncapKindSetting::kIpip;
  uint16_t gue_port = 6080;
  uint16_t mtu = 1500;
  uint8_t ttl = 64;
  uint8_t hash_key[16] = {};
  uint32_t tcp_timeout_s = 300;
  uint32_t tcp_closing_timeout_s = 15;
  uint32_t udp_timeout_s = 30;
  uint32_t icmp_rate_pps = 100;

  friend bool operator==(const DataplaneConfig&, const DataplaneConfig&) = default;
};

// Limits of `apply --watch` (watch.h): beyond any of them, the apply is rolled back.
struct WatchConfig {
  uint32_t window_ms = 2000;           // rates are measured over this much of the recent past
  double max_imbalance = 1.5;          // a backend's observed / expected share of new flows
  double max_load = 1.0;               // a backend's observed new flows/s / capacity_cps
  double max_drop_increase_pps = 100;  // drop rate above the rate before the apply

  friend bool operator==(const WatchConfig&, const WatchConfig&) = default;
};

// One Fulcrum host's BGP session(s): its entry in bgp.hosts, picked by `serve --host`.
struct BgpHostConfig {
  IpAddress router_id;                     // IPv4, as BGP wants it
  std::optional<IpAddress> local_address;  // the sessions' source; BIRD picks when absent
  std::vector<IpAddress> peers;            // the routers this host talks BGP to
  std::optional<IpAddress> next_hop;       // IPv4 VIPs' next hop; default local_address
  std::optional<IpAddress> next_hop6;      // IPv6 VIPs' next hop; default local_address
  std::string bird_socket;                 // "" : bgp.bird_socket
  std::string include_file;                // "" : bgp.include_file

  friend bool operator==(const BgpHostConfig&, const BgpHostConfig&) = default;
};

// The optional `bgp` section: the control plane announces each VIP through a BIRD 2 on the
// same host while the host can serve it (bgp.h). Cluster-wide values, and one entry per host.
struct BgpConfig {
  uint32_t local_asn = 0;
  uint32_t peer_asn = 0;
  uint32_t hold_time_s = 9;
  uint32_t keepalive_s = 0;  // 0: hold_time_s / 3
  uint32_t connect_retry_s = 5;
  std::string bird_socket = "/run/bird/bird.ctl";
  std::string include_file = "/etc/bird/fulcrum.conf";
  std::map<std::string, BgpHostConfig> hosts;

  friend bool operator==(const BgpConfig&, const BgpConfig&) = default;
};

struct Config {
  DataplaneConfig dataplane;
  WatchConfig watch;
  std::vector<VipConfig> vips;
  std::optional<BgpConfig> bgp;

  friend bool operator==(const Config&, const Config&) = default;
};

// "10.10.2.11", "10.10.2.11:8080", "[fd00::1]:8080": how a backend is named everywhere (CLI,
// metrics labels, history). The port is shown only when the backend has one.
std::string BackendName(const IpAddress& address, uint16_t port);
// "10.10.0.100:80/tcp".
std::string ServiceName(const VipConfig& vip);
// The stable-id key of a backend: VIP name, address and port.
std::string BackendKey(std::string_view vip_name, const IpAddress& address, uint16_t port);
// The probe target of a backend: address and the port its VIP's check uses.
uint16_t CheckPort(const VipConfig& vip, const BackendConfig& backend);
std::string_view ProtocolName(uint8_t proto);
std::string_view OperatorStateName(OperatorState s);
// What a snapshot publishes for a backend: "active", "draining", "down", "disabled".
std::string_view PublishedStateName(shm::BackendState s);

// The settings block of every snapshot built from this config.
shm::SnapshotSettings ToSettings(const DataplaneConfig& d);

}  // namespace fulcrum::controlplane
