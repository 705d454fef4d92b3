// Control: the main lcore's loop — snapshots in, forwarding states out, acks, stats upkeep.
//
// Every 100 µs: poll the config segment (attaching when it appears, re-attaching when the
// control plane replaced it), build the forwarding state of a new snapshot, swap it in for the
// workers and start an RCU grace period; when a grace period ends, free the state it retired
// and acknowledge the generation (every worker is past its old state by then). A snapshot that
// fails validation or cannot be built is rejected with its reason; the running state stays.
// Also: heartbeats, port counters into the stats segment, and offline-mode idleness.
// Runs on the main lcore only; it may allocate and log, the workers never wait for it.
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "dataplane/forwarding.h"
#include "dataplane/shm/config_channel.h"
#include "dataplane/shm/segment.h"
#include "dataplane/steering.h"
#include "dataplane/worker.h"

namespace fulcrum {

struct ControlOptions {
  std::string shm_prefix = "fulcrum";
  bool wait_for_snapshot = false;
  int64_t exit_when_idle_ms = -1;
  bool quiet = false;  // no log lines (tests that run many swaps)
};

class Control {
 public:
  // `stats` is fulcrumd's stats segment; `ports` the data ports whose counters it copies.
  Control(ControlOptions options, WorkerShared* shared, shm::StatsSegment* stats,
          std::vector<uint16_t> ports, Steering steering = {});
  ~Control();

  // Attaches to the config segment if it exists. OK also when it does not exist yet (Poll
  // keeps trying); FailedPrecondition when it exists but is unusable (another ABI).
  absl::Status Start();
  // One iteration. Returns false when offline mode has finished.
  bool Step();
  // Until `stop` or offline completion; then frees everything retired.
  void Run(const std::atomic<bool>& stop);
  // Frees retired states whose grace period ended; with `wait`, waits for all of them.
  void Reclaim(bool wait);

  uint64_t generation_in_use() const { return in_use_; }
  bool attached() const { return reader_.has_value(); }

 private:
  struct Retired {
    const ForwardingState* state;
    uint64_t token;
    uint64_t generation;  // the generation that replaced it: acked when it is freed
    uint64_t publish_seen_ns;
  };

  void TryAttach(bool log_missing);
  void PollConfig();
  void CopyPortStats();
  void Log(const std::string& line) const;

  ControlOptions options_;
  WorkerShared* shared_;
  shm::StatsSegment* stats_;
  std::vector<uint16_t> ports_;
  Steering steering_;
  std::optional<shm::ConfigReader> reader_;
  std::string config_name_;
  std::deque<Retired> retired_;
  uint64_t in_use_ = 0;
  uint64_t next_attach_ns_ = 0;
  uint64_t next_heartbeat_ns_ = 0;
  uint64_t next_replaced_check_ns_ = 0;
  uint64_t last_rx_ = 0;
  uint64_t last_rx_change_ns_ = 0;
  bool waiting_logged_ = false;
};

}  // namespace fulcrum
