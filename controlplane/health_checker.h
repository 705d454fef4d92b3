// HealthChecker: TCP-connect and HTTP-GET probes of every backend, on a thread of its own.
//
// One probe per distinct (address, port), however many VIPs list that backend (the config
// parser refuses two different check settings for one target). All probes run from one epoll
// loop with non-blocking sockets and a timer heap, so thousands of targets cost one thread and
// a slow or silent backend costs one file descriptor until its timeout, never a blocked
// thread; the server's threads never wait on a backend.
//
// Probe semantics (docs/controlplane.md "Health checks"):
// * tcp: the connect completes within timeout_ms.
// * http: connect, send `GET path HTTP/1.0` with Host and Connection: close, and read a status
//   line within timeout_ms; pass on expect_status, or any 2xx/3xx when that is empty.
// * Sockets close with an RST (SO_LINGER 0): a prober that opens thousands of connections a
//   second must not fill its own port range with TIME_WAIT.
// * Local failures (no file descriptors, SO_MARK not permitted) are not the backend's fault:
//   they are reported in the target's detail and do not count as a failed probe.
// * A new target starts up (a control plane that restarts must not take backends out); its
//   first probe runs within min(interval, 1 s), spread so that a large config does not probe
//   everything at once.
// * through_tunnel: the probe goes to VIP:port with a mark of the target's own, and the tc
//   egress program of bpf/probe.h (attached by AttachTunnel to the interface the probes leave
//   by) encapsulates it to the backend as the data plane would: it passes only if the backend
//   decapsulates and serves the VIP. Marks are kTunnelMarkBase + 1..65535, one per target,
//   kept while the target stays.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "bpf/probe.h"
#include "controlplane/config.h"
#include "controlplane/effective_state.h"
#include "controlplane/health_state.h"

namespace fulcrum::controlplane {

struct ProbeTarget {
  IpAddress address;
  uint16_t port = 0;
  HealthCheckConfig check;
  // check.through_tunnel: the probe connects to this VIP address and port, and the probe
  // program encapsulates it to `address` with these settings (the data plane's own).
  IpAddress vip;
  EncapConfig encap;
  std::string local_error;  // set by the checker: why it cannot probe this target from here
};

struct TargetStatus {
  Health health = Health::kUp;
  uint32_t consecutive_successes = 0;
  uint32_t consecutive_failures = 0;
  uint64_t probes = 0;
  uint64_t failed_probes = 0;
  std::string last_result;  // "ok (HTTP 200, 1.2 ms)", "timeout after 500 ms", ...
  int64_t last_change_unix_ms = 0;
};

using TargetKey = std::pair<IpAddress, uint16_t>;

// The probe targets of a config: one per distinct (address, check port) of a backend that is
// not disabled, in a VIP with a health check.
std::vector<ProbeTarget> ProbeTargetsOf(const Config& cfg, const Overrides& overrides);

class HealthChecker {
 public:
  // `on_change` runs on the checker's thread, without its lock, after any target's health
  // changed. It must not block (the server only wakes its loop).
  explicit HealthChecker(std::function<void()> on_change);
  ~HealthChecker();
  HealthChecker(const HealthChecker&) = delete;
  HealthChecker& operator=(const HealthChecker&) = delete;

  absl::Status Start();
  void Stop();

  // Loads the probe program onto `interface`'s tc egress hook for through_tunnel checks. Until
  // then (or when it failed) such checks report a local error and count neither way.
  absl::Status AttachTunnel(const std::string& interface);
  static constexpr uint32_t kTunnelMarkBase = 0xf1c00000;
  static constexpr uint32_t kTunnelMarkMask = 0xffff0000;

  // Replaces the targets. A target that stays keeps its state; a new one starts with its
  // health from `initial` (up when absent).
  void SetTargets(std::vector<ProbeTarget> targets, const HealthMap& initial);

  HealthMap CurrentHealth() const;
  std::map<TargetKey, TargetStatus> Status() const;

 private:
  struct Probe;
  void Run();
  void ApplyPendingTargets(uint64_t now_ns);
  void StartProbe(uint64_t id, Probe& p, uint64_t now_ns);
  void OnEvent(uint64_t id, Probe& p, uint32_t events, uint64_t now_ns);
  void Finish(uint64_t id, Probe& p, std::optional<bool> success, std::string detail,
              uint64_t now_ns);
  void Schedule(uint64_t id, Probe& p, uint64_t when_ns);
  void CloseSocket(Probe& p);
  void Wake();
  // Gives each through_tunnel target its mark and the probe map its encapsulation; the
  // targets it cannot serve get a local error. On the caller's thread, before the checker
  // sees the targets, so no probe ever leaves with a mark the map does not know yet.
  void SyncTunnel(std::vector<ProbeTarget>& targets);

  std::function<void()> on_change_;
  int epoll_fd_ = -1;
  int wake_fd_ = -1;
  std::thread thread_;
  std::atomic<bool> stop_{false};

  // Re-attaches the probe program when its interface was replaced (fulcrumd's TAP comes back
  // with a new ifindex after a restart), at most once a second; on the checker's thread.
  void ReattachTunnelIfReplaced(uint64_t now_ns);
  absl::Status AttachTunnelLocked();

  struct TunnelTarget {
    uint32_t mark;
    EncapConfig encap;
  };
  std::mutex tunnel_mu_;  // guards everything tunnel_ below and probe_
  std::string tunnel_interface_;
  unsigned tunnel_ifindex_ = 0;
  MacAddress tunnel_mac_{};
  std::unique_ptr<bpf::ProbeEncap> probe_;
  std::map<TargetKey, TunnelTarget> tunnel_targets_;
  uint32_t tunnel_next_mark_ = 1;
  uint64_t tunnel_checked_ns_ = 0;

  mutable std::mutex mu_;  // guards pending_, status_
  std::optional<std::pair<std::vector<ProbeTarget>, HealthMap>> pending_;
  std::map<TargetKey, TargetStatus> status_;

  // Owned by the checker thread.
  std::map<uint64_t, std::unique_ptr<Probe>> probes_;
  std::map<TargetKey, uint64_t> by_target_;
  uint64_t next_id_ = 1;
  struct Timer {
    uint64_t when_ns;
    uint64_t id;
    uint64_t seq;
    bool operator>(const Timer& o) const { return when_ns > o.when_ns; }
  };
  std::vector<Timer> timers_;  // a min-heap by when_ns
  bool changed_ = false;
};

}  // namespace fulcrum::controlplane
