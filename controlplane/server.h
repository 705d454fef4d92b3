// Server: `fulcrumctl serve`, the control-plane process. It owns the config shm segment, the
// state directory, the health checker, the stats sampler and the metrics endpoint, and
// answers the CLI's requests on the Unix socket (protocol.h).
//
// Threads and locks:
// * the loop thread samples the stats segment every --stats-interval, heartbeats the config
//   segment, judges an `apply --watch` in progress, republishes when health changed, and
//   rolls back when a watch says so;
// * the health checker's thread (health_checker.h) probes backends; it only wakes the loop;
// * each socket connection has a thread; the metrics server has its own.
// `change_mu_` serialises every change (apply, rollback, backend ops, health republishes): it
// is held across the wait for the data plane's ack, so changes never interleave. `mu_` guards
// the published state for readers (status, lookup, metrics) and is held only for copies and
// swaps, never across I/O or waiting. Order: change_mu_ before mu_.
//
// A change: parse and validate, build the snapshot (ids, overrides, health, panic), plan
// against the running generation, check guards, write ids.json and the generation record
// (pending), publish, wait for the ack, record the answer. A crash anywhere in between leaves
// a state directory that Start() resumes from (docs/controlplane.md "Restarts").
#pragma once

#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "controlplane/bgp.h"
#include "controlplane/config.h"
#include "controlplane/effective_state.h"
#include "controlplane/generation_record.h"
#include "controlplane/health_checker.h"
#include "controlplane/id_registry.h"
#include "controlplane/metrics_server.h"
#include "controlplane/plan.h"
#include "controlplane/socket_server.h"
#include "controlplane/state_store.h"
#include "controlplane/stats_history.h"
#include "controlplane/stats_reader.h"
#include "controlplane/status_view.h"
#include "controlplane/watch_evaluator.h"
#include "dataplane/shm/config_channel.h"
#include "dataplane/shm/snapshot.h"

namespace fulcrum::controlplane {

struct ServerOptions {
  std::string config_path;  // needed only when the state directory has no history
  std::string state_dir = "/var/lib/fulcrum";
  std::string socket_path = "/run/fulcrum/fulcrumctl.sock";
  std::string shm_prefix = "fulcrum";
  std::string metrics_listen = "127.0.0.1:9470";  // "off" disables
  std::string socket_group = "fulcrum";
  uint32_t stats_interval_ms = 1000;
  uint32_t ack_timeout_ms = 3000;
  size_t history_limit = 1000;
  bool force = false;           // the first config past its guards
  std::string probe_interface;  // where through_tunnel probes leave (empty: no such checks)
  std::string host;             // this host's entry in the config's bgp.hosts (cli: the hostname)
};

class Server {
 public:
  explicit Server(ServerOptions options);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Resumes (or makes the first generation), then starts every thread. An error names what
  // to fix; nothing keeps running after one.
  absl::Status Start();
  void Stop();

  int metrics_port() const { return metrics_ != nullptr ? metrics_->port() : 0; }

 private:
  struct Running;
  struct Candidate;
  struct WatchSession;
  struct Reply {
    int exit = 0;
    absl::Status status;
    nlohmann::json data = nlohmann::json::object();
  };

  // --- start-up ---
  absl::Status LockPrefix();
  absl::Status LoadState();
  absl::Status Resume();
  absl::Status ApplyInitialConfig();

  // --- building and committing changes (change_mu_ held) ---
  absl::StatusOr<Candidate> BuildCandidate(std::string yaml, Config config, Overrides overrides,
                                           const HealthMap& health, uint64_t generation) const;
  Plan PlanFor(const Candidate& c) const;
  std::map<std::string, double> VipRatesLocked() const;
  absl::Status Commit(Candidate c, GenerationRecord record);
  AckResult WaitForAck(uint64_t generation, std::string& detail) const;
  absl::Status RecordResult(uint64_t generation, AckResult result, const std::string& detail);
  Reply PublishChange(Candidate c, GenerationRecord record, const Plan& plan);
  absl::StatusOr<GenerationRecord> LoadRecord(uint64_t generation) const;
  std::optional<uint64_t> PreviousOperatorChange() const;
  uint64_t TakeGeneration();
  // Ends a watch in progress (an operator change replaced what it watched), or takes one whose
  // outcome is decided but not yet recorded, and returns it: the caller records its outcome
  // (FinishWatchRecord, which also answers its client) once mu_ is released.
  std::shared_ptr<WatchSession> SupersedeWatchLocked(uint64_t by_generation);

  // --- request handlers ---
  void Handle(const Peer& peer, const nlohmann::json& request, Responder& out);
  Reply HandlePlan(const nlohmann::json& request);
  void HandleApply(const Peer& peer, const nlohmann::json& request, Responder& out);
  Reply HandleRollback(const Peer& peer, const nlohmann::json& request);
  Reply HandleHistory(const nlohmann::json& request) const;
  Reply HandleLookup(const nlohmann::json& request) const;
  Reply HandleBackend(const Peer& peer, const nlohmann::json& request);
  nlohmann::json StatusJson() const;
  std::string MetricsText() const;

  // --- the loop ---
  void Loop();
  void SampleStats();
  void EvaluateWatchLocked();
  void RepublishForHealth();
  void AutoRollback(std::shared_ptr<WatchSession> session);
  void FinishWatchRecord(std::shared_ptr<WatchSession> session);

  // --- BGP (bgp.h): its own thread, so that a slow or absent BIRD never delays the loop ---
  void BgpLoop();
  AnnounceInput GatherAnnounceInput(std::optional<BgpConfig>& bgp) const;

  ServerOptions opt_;
  std::unique_ptr<StateStore> store_;
  std::optional<shm::ConfigWriter> writer_;
  int prefix_lock_fd_ = -1;
  std::string prefix_lock_name_;
  IdRegistry vip_ids_;
  IdRegistry backend_ids_;
  std::vector<GenerationRecord> history_;  // oldest first; config_yaml dropped (on disk)
  std::unique_ptr<Running> running_;
  uint64_t next_generation_ = 1;
  StatsReader stats_reader_;
  StatsHistory stats_;
  StatsSample last_sample_;
  std::unique_ptr<HealthChecker> health_;
  std::unique_ptr<SocketServer> socket_;
  std::unique_ptr<MetricsServer> metrics_;
  std::thread loop_;
  std::thread bgp_thread_;
  std::unique_ptr<Announcer> announcer_;
  std::vector<Announcement> bgp_decisions_;  // the BGP thread's own
  bool bgp_stop_ = false;                    // under mu_; Stop() withdraws, then ends the thread
  bool bgp_now_ = false;                     // under mu_: evaluate at once (a commit, health)

  std::mutex change_mu_;
  mutable std::mutex mu_;
  std::condition_variable cv_;  // wakes the loop and watch streams
  bool stop_ = false;
  bool health_dirty_ = false;
  bool sample_now_ = false;  // a change or a watch started: take a sample at once
  // When the running generation was published: status rates start there, so that shares are
  // never judged against a table that was not in effect.
  uint64_t published_mono_ns_ = 0;
  std::shared_ptr<WatchSession> watch_;
  std::vector<std::string> history_warnings_;
  std::vector<std::pair<int64_t, Alert>> events_;  // (unix ms, alert): recent automatic acts
  struct Counters {
    uint64_t applies = 0;
    uint64_t rollbacks = 0;
    uint64_t auto_rollbacks = 0;
    uint64_t health_republishes = 0;
    uint64_t rejected_applies = 0;
  } counters_;
};

}  // namespace fulcrum::controlplane
