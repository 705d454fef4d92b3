// Control: the main lcore's loop.
#include "dataplane/control.h"

#include <rte_ethdev.h>
#include <rte_rcu_qsbr.h>

#include <chrono>
#include <cstdio>
#include <thread>

#include "absl/strings/str_format.h"

namespace fulcrum {
namespace {

constexpr uint64_t kMs = 1'000'000;
// The poll step: a new snapshot waits half of it on average before it is seen. At 100 µs
// that is well under the copy, check and build of a 256-VIP swap (300-400 µs); bench/swap.sh
// measured p50 -80 µs and p99 -100 µs against a 200 µs step. The price is the main lcore's
// own time, 14 % of a vCPU idle against 9 % (a VM's timer wakeups are dear), on an lcore that
// does nothing else.
constexpr auto kStepInterval = std::chrono::microseconds(100);

}  // namespace

Control::Control(ControlOptions options, WorkerShared* shared, shm::StatsSegment* stats,
                 std::vector<uint16_t> ports, Steering steering)
    : options_(std::move(options)),
      shared_(shared),
      stats_(stats),
      ports_(std::move(ports)),
      steering_(std::move(steering)) {
  config_name_ = shm::ConfigSegmentName(options_.shm_prefix).value_or("");
  if (options_.wait_for_snapshot) shared_->rx_enabled.store(false);
}

Control::~Control() {
  // Workers are stopped by now: nothing can hold a state any more.
  Reclaim(true);
  delete shared_->state.exchange(nullptr);
}

void Control::Log(const std::string& line) const {
  if (!options_.quiet) std::fprintf(stderr, "fulcrumd: %s\n", line.c_str());
}

absl::Status Control::Start() {
  absl::StatusOr<shm::MappedSegment> seg = shm::AttachConfigSegment(options_.shm_prefix);
  if (seg.ok()) {
    reader_.emplace(*std::move(seg));
    Log(absl::StrFormat("attached to %s", config_name_));
    return absl::OkStatus();
  }
  if (absl::IsNotFound(seg.status())) {
    Log(absl::StrFormat("waiting for the control plane to create %s", config_name_));
    waiting_logged_ = true;
    return absl::OkStatus();
  }
  return seg.status();
}

void Control::TryAttach(bool log_missing) {
  absl::StatusOr<shm::MappedSegment> seg = shm::AttachConfigSegment(options_.shm_prefix);
  if (!seg.ok()) {
    if (log_missing || !absl::IsNotFound(seg.status())) {
      Log(absl::StrFormat("config segment not usable: %s", seg.status().message()));
    }
    return;
  }
  reader_.emplace(*std::move(seg));
  Log(absl::StrFormat("attached to %s", config_name_));
}

void Control::PollConfig() {
  const ForwardingState* current = shared_->state.load(std::memory_order_acquire);
  const uint64_t poll_ns = shm::MonotonicNowNs();
  shm::ConfigReader::Result r = reader_->Poll(current ? &current->snapshot() : nullptr);
  if (r.kind == shm::ConfigReader::Result::kNothing) return;
  const uint64_t seen_ns = shm::MonotonicNowNs();
  if (r.kind == shm::ConfigReader::Result::kRejected) {
    Log(absl::StrFormat("rejected generation %d (%s): %s", r.generation,
                        ReasonName(r.verdict.reason), r.verdict.detail));
    reader_->Reject(r.generation, r.verdict);
    return;
  }
  const size_t vips = r.snapshot.vips.size();
  const size_t backends = r.snapshot.backends.size();
  absl::StatusOr<std::unique_ptr<ForwardingState>> state =
      ForwardingState::Build(std::move(r.snapshot));
  if (!state.ok()) {
    const shm::Verdict verdict{absl::IsInvalidArgument(state.status())
                                   ? shm::SnapshotReject::kEncap
                                   : shm::SnapshotReject::kResources,
                               std::string(state.status().message())};
    Log(absl::StrFormat("rejected generation %d (%s): %s", r.generation, ReasonName(verdict.reason),
                        verdict.detail));
    reader_->Reject(r.generation, verdict);
    return;
  }
  // AF_XDP ports: the new VIPs must reach the workers before the state that knows them is in
  // use. On failure the old VIP set is put back and the snapshot refused.
  if (absl::Status st = steering_.Update((*state)->snapshot()); !st.ok()) {
    if (current != nullptr) (void)steering_.Update(current->snapshot());
    const shm::Verdict verdict{shm::SnapshotReject::kResources,
                               absl::StrFormat("AF_XDP steering map: %s", st.message())};
    Log(absl::StrFormat("rejected generation %d (%s): %s", r.generation, ReasonName(verdict.reason),
                        verdict.detail));
    reader_->Reject(r.generation, verdict);
    return;
  }
  const ForwardingState* old = shared_->state.exchange(state->release(), std::memory_order_acq_rel);
  // Workers that loaded `old` finish their burst first: ack and free after the grace period.
  retired_.push_back({old, rte_rcu_qsbr_start(shared_->rcu), r.generation, seen_ns});
  Log(absl::StrFormat(
      "generation %d: %d VIPs, %d backends; copied and checked in %d us, built in %d us; swapping in",
      r.generation, vips, backends, (seen_ns - poll_ns) / 1000,
      (shm::MonotonicNowNs() - seen_ns) / 1000));
}

void Control::Reclaim(bool wait) {
  while (!retired_.empty()) {
    Retired& r = retired_.front();
    if (rte_rcu_qsbr_check(shared_->rcu, r.token, wait) != 1) return;
    delete r.state;
    if (reader_.has_value()) reader_->Ack(r.generation);
    in_use_ = r.generation;
    stats_->header.generation_in_use.store(r.generation, std::memory_order_release);
    if (options_.wait_for_snapshot) shared_->rx_enabled.store(true, std::memory_order_release);
    Log(absl::StrFormat("generation %d in use (%d us after it was seen)", r.generation,
                        (shm::MonotonicNowNs() - r.publish_seen_ns) / 1000));
    retired_.pop_front();
  }
}

void Control::CopyPortStats() {
  const uint32_t n = static_cast<uint32_t>(std::min<size_t>(ports_.size(), shm::kMaxPorts));
  for (uint32_t i = 0; i < n; ++i) {
    rte_eth_stats s;
    if (rte_eth_stats_get(ports_[i], &s) != 0) continue;
    shm::PortStats& p = stats_->ports[i];
    p.rx_packets.store(s.ipackets, std::memory_order_relaxed);
    p.rx_bytes.store(s.ibytes, std::memory_order_relaxed);
    p.tx_packets.store(s.opackets, std::memory_order_relaxed);
    p.tx_bytes.store(s.obytes, std::memory_order_relaxed);
    p.rx_missed.store(s.imissed, std::memory_order_relaxed);
    p.rx_errors.store(s.ierrors, std::memory_order_relaxed);
    p.tx_errors.store(s.oerrors, std::memory_order_relaxed);
    p.rx_nombuf.store(s.rx_nombuf, std::memory_order_relaxed);
  }
  stats_->header.port_count.store(n, std::memory_order_relaxed);
}

bool Control::Step() {
  const uint64_t now = shm::MonotonicNowNs();
  if (!reader_.has_value() && now >= next_attach_ns_) {
    next_attach_ns_ = now + 100 * kMs;
    TryAttach(false);
  }
  if (reader_.has_value()) {
    if (now >= next_replaced_check_ns_) {
      next_replaced_check_ns_ = now + 1000 * kMs;
      if (!reader_->segment().SameObjectAs(config_name_)) {
        // The control plane made a new segment (a restart after an upgrade): keep forwarding
        // on the current state and follow the new one.
        Log(absl::StrFormat("%s was replaced; re-attaching", config_name_));
        reader_.reset();
        TryAttach(true);
      }
    }
    if (reader_.has_value()) PollConfig();
  }
  Reclaim(false);
  if (now >= next_heartbeat_ns_) {
    next_heartbeat_ns_ = now + 100 * kMs;
    if (reader_.has_value()) reader_->Heartbeat();
    stats_->header.heartbeat_ns.store(now, std::memory_order_release);
    CopyPortStats();
  }
  if (options_.exit_when_idle_ms >= 0 && in_use_ != 0) {
    uint64_t rx = 0;
    for (const shm::LcoreStats& l : stats_->lcores) {
      rx += l.counters[static_cast<size_t>(shm::LcoreCounter::kRxPackets)].load(
          std::memory_order_relaxed);
    }
    if (rx != last_rx_ || last_rx_change_ns_ == 0) {
      last_rx_ = rx;
      last_rx_change_ns_ = now;
    } else if (now - last_rx_change_ns_ >=
               static_cast<uint64_t>(options_.exit_when_idle_ms) * kMs) {
      Log(absl::StrFormat("input drained (%d packets); exiting", rx));
      return false;
    }
  }
  return true;
}

void Control::Run(const std::atomic<bool>& stop) {
  while (!stop.load(std::memory_order_relaxed) && Step()) {
    std::this_thread::sleep_for(kStepInterval);
  }
  CopyPortStats();  // the last word, for whoever reads the segment after the process
}

}  // namespace fulcrum
