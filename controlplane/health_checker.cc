// HealthChecker: the epoll probe loop.
#include "controlplane/health_checker.h"

#include <arpa/inet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <set>

#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"
#include "controlplane/log.h"
#include "dataplane/shm/segment.h"

namespace fulcrum::controlplane {
namespace {

constexpr uint64_t kWakeId = 0;
constexpr size_t kMaxResponse = 4096;

int64_t UnixMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// A spread of first-probe delays, a fixed function of the target so restarts probe in the
// same order.
uint64_t FirstDelayNs(const TargetKey& key, uint32_t interval_ms) {
  uint64_t h = key.second * 0x9e3779b97f4a7c15ull;
  for (uint8_t b : key.first.bytes) h = (h ^ b) * 0x100000001b3ull;
  const uint64_t spread_ms = std::min<uint32_t>(interval_ms, 1000);
  return (h % spread_ms) * 1000000ull;
}

bool StatusAccepted(int code, const std::vector<int>& expect) {
  if (expect.empty()) return code >= 200 && code < 400;
  return std::find(expect.begin(), expect.end(), code) != expect.end();
}

}  // namespace

struct HealthChecker::Probe {
  ProbeTarget target;
  HealthState state;
  enum Phase { kIdle, kConnecting, kSending, kReading } phase = kIdle;
  int fd = -1;
  uint64_t started_ns = 0;
  uint64_t timer_seq = 0;
  std::string request;
  size_t sent = 0;
  std::string response;
  bool removed = false;

  Probe(ProbeTarget t, controlplane::Health initial)
      : target(std::move(t)), state(initial, target.check.rise, target.check.fall) {}
};

std::vector<ProbeTarget> ProbeTargetsOf(const Config& cfg, const Overrides& overrides) {
  std::vector<ProbeTarget> out;
  std::set<TargetKey> seen;
  const EncapConfig encap = shm::EncapConfigOf(ToSettings(cfg.dataplane));
  for (const VipConfig& v : cfg.vips) {
    if (v.health_check.type == CheckType::kNone) continue;
    for (const BackendConfig& b : v.backends) {
      OperatorState state = b.state;
      if (auto o = overrides.find(BackendKey(v.name, b.address, b.port));
          o != overrides.end() && o->second.state.has_value()) {
        state = *o->second.state;
      }
      if (state == OperatorState::kDisabled) continue;
      const TargetKey key{b.address, CheckPort(v, b)};
      if (!seen.insert(key).second) continue;
      ProbeTarget& t = out.emplace_back();
      t.address = b.address;
      t.port = key.second;
      t.check = v.health_check;
      if (v.health_check.through_tunnel) {
        // The first VIP (in config order) that checks this backend this way is the one probed.
        t.vip = v.address;
        t.encap = encap;
      }
    }
  }
  return out;
}

HealthChecker::HealthChecker(std::function<void()> on_change) : on_change_(std::move(on_change)) {}

HealthChecker::~HealthChecker() { Stop(); }

absl::Status HealthChecker::Start() {
  epoll_fd_ = epoll_create1(EPOLL_CLOEXEC);
  if (epoll_fd_ < 0)
    return absl::InternalError(absl::StrFormat("epoll_create1: %s", strerror(errno)));
  wake_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (wake_fd_ < 0) return absl::InternalError(absl::StrFormat("eventfd: %s", strerror(errno)));
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = kWakeId;
  if (epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, wake_fd_, &ev) != 0) {
    return absl::InternalError(absl::StrFormat("epoll_ctl: %s", strerror(errno)));
  }
  thread_ = std::thread([this] { Run(); });
  return absl::OkStatus();
}

void HealthChecker::Stop() {
  if (thread_.joinable()) {
    stop_ = true;
    Wake();
    thread_.join();
  }
  for (auto& [id, p] : probes_) CloseSocket(*p);
  probes_.clear();
  if (wake_fd_ >= 0) close(wake_fd_);
  if (epoll_fd_ >= 0) close(epoll_fd_);
  wake_fd_ = epoll_fd_ = -1;
}

void HealthChecker::Wake() {
  if (wake_fd_ < 0) return;
  const uint64_t one = 1;
  [[maybe_unused]] ssize_t n = write(wake_fd_, &one, sizeof(one));
}

absl::Status HealthChecker::AttachTunnel(const std::string& interface) {
  std::lock_guard<std::mutex> lock(tunnel_mu_);
  tunnel_interface_ = interface;
  return AttachTunnelLocked();
}

absl::Status HealthChecker::AttachTunnelLocked() {
  const std::string& name = tunnel_interface_;
  const unsigned ifindex = if_nametoindex(name.c_str());
  if (ifindex == 0) {
    return absl::NotFoundError(absl::StrFormat("probe interface %s: %s", name, strerror(errno)));
  }
  // The probe program writes the whole Ethernet header: its source is this interface's.
  std::ifstream in("/sys/class/net/" + name + "/address");
  std::string text;
  std::getline(in, text);
  const std::optional<MacAddress> mac = ParseMac(text);
  if (!mac.has_value()) {
    return absl::FailedPreconditionError(
        absl::StrFormat("probe interface %s has no Ethernet address", name));
  }
  absl::StatusOr<bpf::ProbeEncap> probe = bpf::ProbeEncap::Attach(static_cast<int>(ifindex));
  if (!probe.ok()) {
    return absl::Status(probe.status().code(),
                        absl::StrFormat("probe program on %s: %s", name, probe.status().message()));
  }
  tunnel_mac_ = *mac;
  probe_ = std::make_unique<bpf::ProbeEncap>(*std::move(probe));
  tunnel_ifindex_ = ifindex;
  for (auto& [key, t] : tunnel_targets_) {
    t.encap.src_mac = tunnel_mac_;
    (void)probe_->SetTarget(t.mark, t.encap, key.first);  // as SyncTunnel set them before
  }
  return absl::OkStatus();
}

void HealthChecker::ReattachTunnelIfReplaced(uint64_t now_ns) {
  std::lock_guard<std::mutex> lock(tunnel_mu_);
  if (tunnel_interface_.empty() || now_ns - tunnel_checked_ns_ < 1000000000ull) return;
  tunnel_checked_ns_ = now_ns;
  const unsigned ifindex = if_nametoindex(tunnel_interface_.c_str());
  if (ifindex == 0 || ifindex == tunnel_ifindex_) return;  // gone (probes fail) or unchanged
  if (absl::Status st = AttachTunnelLocked(); !st.ok()) {
    LogLine(absl::StrFormat("health: re-attaching the probe program: %s", st.message()));
  } else {
    LogLine(
        absl::StrFormat("health: %s was replaced; probe program re-attached", tunnel_interface_));
  }
}

void HealthChecker::SyncTunnel(std::vector<ProbeTarget>& targets) {
  std::lock_guard<std::mutex> lock(tunnel_mu_);
  std::map<TargetKey, TunnelTarget> kept;
  for (ProbeTarget& t : targets) {
    if (!t.check.through_tunnel) continue;
    if (probe_ == nullptr) {
      t.local_error = "local error: through_tunnel needs fulcrumctl serve --probe-interface IFACE";
      continue;
    }
    const TargetKey key{t.address, t.port};
    uint32_t mark = 0;
    if (auto it = tunnel_targets_.find(key); it != tunnel_targets_.end()) {
      mark = it->second.mark;
    } else {
      // Round robin over 1..65535, skipping marks in use: a number comes back only long after
      // its target left, so no probe still in flight carries it.
      std::set<uint32_t> used;
      for (const auto& [k, e] : tunnel_targets_) used.insert(e.mark);
      for (const auto& [k, e] : kept) used.insert(e.mark);
      for (uint32_t tries = 0; tries < 65535 && mark == 0; ++tries) {
        const uint32_t candidate = kTunnelMarkBase | tunnel_next_mark_;
        tunnel_next_mark_ = tunnel_next_mark_ == 65535 ? 1 : tunnel_next_mark_ + 1;
        if (used.count(candidate) == 0) mark = candidate;
      }
      if (mark == 0) {
        t.local_error = "local error: more than 65535 through_tunnel targets";
        continue;
      }
    }
    EncapConfig encap = t.encap;
    encap.src_mac = tunnel_mac_;
    if (absl::Status st = probe_->SetTarget(mark, encap, t.address); !st.ok()) {
      t.local_error = absl::StrFormat("local error: probe map: %s", st.message());
      continue;
    }
    t.check.so_mark = mark;
    kept[key] = {mark, encap};
  }
  for (const auto& [key, e] : tunnel_targets_) {
    if (kept.count(key) == 0 && probe_ != nullptr) (void)probe_->RemoveTarget(e.mark);
  }
  tunnel_targets_ = std::move(kept);
}

void HealthChecker::SetTargets(std::vector<ProbeTarget> targets, const HealthMap& initial) {
  SyncTunnel(targets);
  {
    std::lock_guard<std::mutex> lock(mu_);
    pending_.emplace(std::move(targets), initial);
  }
  Wake();
}

HealthMap HealthChecker::CurrentHealth() const {
  std::lock_guard<std::mutex> lock(mu_);
  HealthMap out;
  for (const auto& [key, s] : status_) out[key] = s.health;
  return out;
}

std::map<TargetKey, TargetStatus> HealthChecker::Status() const {
  std::lock_guard<std::mutex> lock(mu_);
  return status_;
}

void HealthChecker::Schedule(uint64_t id, Probe& p, uint64_t when_ns) {
  timers_.push_back({when_ns, id, ++p.timer_seq});
  std::push_heap(timers_.begin(), timers_.end(), std::greater<Timer>());
}

void HealthChecker::CloseSocket(Probe& p) {
  if (p.fd < 0) return;
  epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, p.fd, nullptr);
  const linger l{1, 0};  // RST: no TIME_WAIT on the prober
  setsockopt(p.fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
  close(p.fd);
  p.fd = -1;
}

void HealthChecker::ApplyPendingTargets(uint64_t now_ns) {
  std::optional<std::pair<std::vector<ProbeTarget>, HealthMap>> pending;
  {
    std::lock_guard<std::mutex> lock(mu_);
    pending.swap(pending_);
  }
  if (!pending.has_value()) return;
  std::set<TargetKey> wanted;
  for (ProbeTarget& t : pending->first) {
    const TargetKey key{t.address, t.port};
    wanted.insert(key);
    if (auto it = by_target_.find(key); it != by_target_.end()) {
      Probe& p = *probes_[it->second];
      const bool interval_changed = p.target.check.interval_ms != t.check.interval_ms;
      p.state.SetThresholds(t.check.rise, t.check.fall);
      p.target = std::move(t);
      if (interval_changed && p.phase == Probe::kIdle) Schedule(it->second, p, now_ns);
      continue;
    }
    auto h = pending->second.find(key);
    const controlplane::Health initial =
        h == pending->second.end() || h->second == Health::kUnchecked ? Health::kUp : h->second;
    const uint64_t id = next_id_++;
    auto probe = std::make_unique<Probe>(std::move(t), initial);
    Schedule(id, *probe, now_ns + FirstDelayNs(key, probe->target.check.interval_ms));
    by_target_[key] = id;
    probes_[id] = std::move(probe);
    std::lock_guard<std::mutex> lock(mu_);
    TargetStatus& s = status_[key];
    s = TargetStatus{};
    s.health = initial;
    s.last_result = "not probed yet";
    s.last_change_unix_ms = UnixMs();
  }
  for (auto it = by_target_.begin(); it != by_target_.end();) {
    if (wanted.count(it->first) != 0) {
      ++it;
      continue;
    }
    CloseSocket(*probes_[it->second]);
    probes_.erase(it->second);
    {
      std::lock_guard<std::mutex> lock(mu_);
      status_.erase(it->first);
    }
    it = by_target_.erase(it);
  }
}

void HealthChecker::StartProbe(uint64_t id, Probe& p, uint64_t now_ns) {
  const ProbeTarget& t = p.target;
  p.started_ns = now_ns;
  p.response.clear();
  p.sent = 0;
  if (!t.local_error.empty()) {
    Finish(id, p, std::nullopt, t.local_error, now_ns);
    return;
  }
  if (t.check.through_tunnel) ReattachTunnelIfReplaced(now_ns);
  // Through the tunnel the probe is addressed to the VIP; the mark takes it to the backend.
  const IpAddress& to = t.check.through_tunnel ? t.vip : t.address;
  const int family = to.v6 ? AF_INET6 : AF_INET;
  p.fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (p.fd < 0) {
    Finish(id, p, std::nullopt, absl::StrFormat("local error: socket: %s", strerror(errno)),
           now_ns);
    return;
  }
  if (t.check.so_mark != 0 &&
      setsockopt(p.fd, SOL_SOCKET, SO_MARK, &t.check.so_mark, sizeof(t.check.so_mark)) != 0) {
    Finish(id, p, std::nullopt, absl::StrFormat("local error: SO_MARK: %s", strerror(errno)),
           now_ns);
    return;
  }
  sockaddr_storage ss{};
  socklen_t len = 0;
  if (to.v6) {
    auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
    a->sin6_family = AF_INET6;
    a->sin6_port = htons(t.port);
    std::memcpy(&a->sin6_addr, to.bytes.data(), 16);
    len = sizeof(*a);
  } else {
    auto* a = reinterpret_cast<sockaddr_in*>(&ss);
    a->sin_family = AF_INET;
    a->sin_port = htons(t.port);
    std::memcpy(&a->sin_addr, to.bytes.data(), 4);
    len = sizeof(*a);
  }
  if (t.check.type == CheckType::kHttp) {
    // RFC 9110: an IPv6 literal in Host is bracketed.
    const std::string host = !t.check.host.empty() ? t.check.host
                             : to.v6               ? absl::StrFormat("[%s]", to.ToString())
                                                   : to.ToString();
    p.request = absl::StrFormat(
        "GET %s HTTP/1.0\r\nHost: %s\r\nUser-Agent: fulcrum-health\r\nConnection: close\r\n\r\n",
        t.check.path, host);
  }
  const int rc = connect(p.fd, reinterpret_cast<sockaddr*>(&ss), len);
  if (rc != 0 && errno != EINPROGRESS) {
    Finish(id, p, false, absl::StrFormat("connect: %s", strerror(errno)), now_ns);
    return;
  }
  p.phase = Probe::kConnecting;
  epoll_event ev{};
  ev.events = EPOLLOUT;
  ev.data.u64 = id;
  if (epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, p.fd, &ev) != 0) {
    Finish(id, p, std::nullopt, absl::StrFormat("local error: epoll_ctl: %s", strerror(errno)),
           now_ns);
    return;
  }
  Schedule(id, p, now_ns + uint64_t{t.check.timeout_ms} * 1000000ull);
}

void HealthChecker::OnEvent(uint64_t id, Probe& p, uint32_t events, uint64_t now_ns) {
  const double ms = static_cast<double>(now_ns - p.started_ns) / 1e6;
  if (p.phase == Probe::kConnecting) {
    int err = 0;
    socklen_t len = sizeof(err);
    getsockopt(p.fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err != 0) {
      Finish(id, p, false, absl::StrFormat("connect: %s", strerror(err)), now_ns);
      return;
    }
    if ((events & (EPOLLERR | EPOLLHUP)) != 0 && (events & EPOLLOUT) == 0) {
      Finish(id, p, false, "connect: connection failed", now_ns);
      return;
    }
    if (p.target.check.type != CheckType::kHttp) {
      Finish(id, p, true, absl::StrFormat("ok (connected in %.1f ms)", ms), now_ns);
      return;
    }
    p.phase = Probe::kSending;
  }
  if (p.phase == Probe::kSending) {
    while (p.sent < p.request.size()) {
      const ssize_t n =
          send(p.fd, p.request.data() + p.sent, p.request.size() - p.sent, MSG_NOSIGNAL);
      if (n < 0 && errno == EAGAIN) return;  // wait for EPOLLOUT again
      if (n < 0) {
        Finish(id, p, false, absl::StrFormat("send: %s", strerror(errno)), now_ns);
        return;
      }
      p.sent += static_cast<size_t>(n);
    }
    p.phase = Probe::kReading;
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLRDHUP;
    ev.data.u64 = id;
    epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, p.fd, &ev);
    return;
  }
  if (p.phase == Probe::kReading) {
    char buf[1024];
    while (true) {
      const ssize_t n = recv(p.fd, buf, sizeof(buf), 0);
      if (n < 0 && errno == EAGAIN) break;
      if (n < 0) {
        Finish(id, p, false, absl::StrFormat("recv: %s", strerror(errno)), now_ns);
        return;
      }
      if (n == 0) {
        Finish(id, p, false, "connection closed before an HTTP status line", now_ns);
        return;
      }
      p.response.append(buf, static_cast<size_t>(n));
      if (p.response.find('\n') != std::string::npos || p.response.size() >= kMaxResponse) break;
    }
    const size_t eol = p.response.find('\n');
    if (eol == std::string::npos) {
      if (p.response.size() >= kMaxResponse) {
        Finish(id, p, false, "no HTTP status line in the first 4 KiB", now_ns);
      }
      return;
    }
    // "HTTP/1.1 200 OK"
    const std::string line = p.response.substr(0, eol);
    int code = 0;
    const size_t sp = line.find(' ');
    if (line.rfind("HTTP/", 0) != 0 || sp == std::string::npos ||
        !absl::SimpleAtoi(line.substr(sp + 1, 3), &code)) {
      Finish(id, p, false, absl::StrFormat("not an HTTP status line: '%s'", line.substr(0, 60)),
             now_ns);
      return;
    }
    if (StatusAccepted(code, p.target.check.expect_status)) {
      Finish(id, p, true, absl::StrFormat("ok (HTTP %d in %.1f ms)", code, ms), now_ns);
    } else {
      Finish(id, p, false,
             absl::StrFormat("HTTP %d%s", code,
                             p.target.check.expect_status.empty() ? " (want 2xx or 3xx)"
                                                                  : " (not in expect_status)"),
             now_ns);
    }
  }
}

void HealthChecker::Finish(uint64_t id, Probe& p, std::optional<bool> success, std::string detail,
                           uint64_t now_ns) {
  CloseSocket(p);
  p.phase = Probe::kIdle;
  if (success.has_value() && p.target.check.through_tunnel) {
    detail = absl::StrFormat("%s (through the tunnel to %s)", detail, p.target.vip.ToString());
  }
  bool changed = false;
  if (success.has_value()) changed = p.state.Record(*success);
  {
    std::lock_guard<std::mutex> lock(mu_);
    TargetStatus& s = status_[{p.target.address, p.target.port}];
    s.health = p.state.health();
    s.consecutive_successes = p.state.successes();
    s.consecutive_failures = p.state.failures();
    if (success.has_value()) {
      ++s.probes;
      if (!*success) ++s.failed_probes;
    }
    s.last_result = std::move(detail);
    if (changed) s.last_change_unix_ms = UnixMs();
  }
  changed_ = changed_ || changed;
  // Fixed cadence from the probe's start, not from its end: a slow backend is probed as often.
  const uint64_t interval = uint64_t{p.target.check.interval_ms} * 1000000ull;
  Schedule(id, p, std::max<uint64_t>(p.started_ns + interval, now_ns + 1000000));
}

void HealthChecker::Run() {
  epoll_event events[256];
  while (!stop_) {
    uint64_t now = shm::MonotonicNowNs();
    ApplyPendingTargets(now);
    int timeout_ms = 1000;
    if (!timers_.empty()) {
      const uint64_t next = timers_.front().when_ns;
      timeout_ms =
          next <= now ? 0
                      : static_cast<int>(std::min<uint64_t>((next - now + 999999) / 1000000, 1000));
    }
    const int n = epoll_wait(epoll_fd_, events, 256, timeout_ms);
    now = shm::MonotonicNowNs();
    for (int i = 0; i < n; ++i) {
      const uint64_t id = events[i].data.u64;
      if (id == kWakeId) {
        uint64_t v;
        [[maybe_unused]] ssize_t r = read(wake_fd_, &v, sizeof(v));
        continue;
      }
      auto it = probes_.find(id);
      if (it == probes_.end() || it->second->fd < 0) continue;
      OnEvent(id, *it->second, events[i].events, now);
    }
    while (!timers_.empty() && timers_.front().when_ns <= now) {
      std::pop_heap(timers_.begin(), timers_.end(), std::greater<Timer>());
      const Timer t = timers_.back();
      timers_.pop_back();
      auto it = probes_.find(t.id);
      if (it == probes_.end() || it->second->timer_seq != t.seq) continue;  // stale
      Probe& p = *it->second;
      if (p.phase == Probe::kIdle) {
        StartProbe(t.id, p, now);
      } else {
        Finish(t.id, p, false,
               absl::StrFormat("timeout after %d ms (%s)", p.target.check.timeout_ms,
                               p.phase == Probe::kConnecting ? "connecting"
                               : p.phase == Probe::kSending  ? "sending the request"
                                                             : "waiting for the status line"),
               now);
      }
    }
    if (changed_) {
      changed_ = false;
      on_change_();
    }
  }
}

}  // namespace fulcrum::controlplane
