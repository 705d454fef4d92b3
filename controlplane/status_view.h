// StatusView: the JSON that `fulcrumctl status`, `stats` and the Prometheus endpoint are made
// from: data-plane liveness and generations, per VIP and backend the state, health, expected
// share (table slots), observed share of new flows and of packets over the window, rates,
// load against capacity, the imbalance ratio (max observed / expected share), and alerts.
// Pure: the server gathers the inputs under its lock and renders outside it.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "controlplane/config.h"
#include "controlplane/effective_state.h"
#include "controlplane/generation_record.h"
#include "controlplane/health_checker.h"
#include "controlplane/stats_reader.h"
#include "dataplane/shm/config_channel.h"
#include "dataplane/shm/snapshot.h"
#include "nlohmann/json.hpp"

namespace fulcrum::controlplane {

struct Alert {
  std::string kind;     // dataplane_down | dataplane_behind | rejected | panic | backend_down |
                        // imbalance | overload | auto_rollback | history |
                        // bgp_speaker | withdrawn
  std::string subject;  // the VIP or backend concerned, or ""
  std::string message;
};

struct StatusInput {
  const Config* config = nullptr;  // null before the first generation
  const EffectiveState* state = nullptr;
  const shm::Snapshot* snapshot = nullptr;
  const GenerationRecord* current = nullptr;
  uint64_t published_generation = 0;
  shm::ReaderView reader;
  uint64_t now_mono_ns = 0;
  const StatsSample* base = nullptr;    // the window's start (may be null)
  const StatsSample* latest = nullptr;  // may be null or not attached
  std::map<TargetKey, TargetStatus> health;
  std::vector<Alert> extra_alerts;  // from the server: rollbacks, history warnings
  nlohmann::json controlplane = nlohmann::json::object();  // pid, prefix, watch, metrics
  nlohmann::json bgp = nlohmann::json(nullptr);            // Announcer::StatusJson()
};

// A data plane whose heartbeat is older than this is not attached.
inline constexpr uint64_t kDataplaneDeadNs = 2'000'000'000ull;

nlohmann::json BuildStatus(const StatusInput& in);

}  // namespace fulcrum::controlplane
