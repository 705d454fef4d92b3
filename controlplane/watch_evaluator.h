// WatchEvaluator: the judgement behind `apply --watch`. Given the published state and two
// stats samples taken after the data plane acknowledged the apply, it lists what is beyond the
// config's watch limits:
//   imbalance  a backend's observed share of the VIP's new flows above max_imbalance × its
//              table share, and statistically certain (z > 5 against the binomial spread
//              of a fair draw), so that a rollback never answers noise;
//   overload   a backend's observed new flows/s above max_load × its capacity_cps, by more
//              than four Poisson deviations of a backend exactly at that limit;
//   unhealthy  a backend that was healthy when the apply started and is down now;
//   drops      the data plane's drop rate above its rate before the apply by more than
//              max_drop_increase_pps.
// The same tests, without the rollback, feed the standing alerts in `status`.
#pragma once

#include <set>
#include <string>
#include <vector>

#include "controlplane/config.h"
#include "controlplane/effective_state.h"
#include "controlplane/stats_reader.h"
#include "dataplane/shm/snapshot.h"

namespace fulcrum::controlplane {

struct WatchFinding {
  std::string kind;  // imbalance | overload | unhealthy | drops
  std::string vip;
  std::string backend;
  double value = 0;
  double limit = 0;
  std::string message;
};

// True when `count` of `total` draws landing on a slot of probability `p` is more than
// `ratio` × the expectation and more than five standard deviations above it.
bool SignificantExcess(uint64_t count, uint64_t total, double p, double ratio);

class WatchEvaluator {
 public:
  // `baseline_drop_pps`: the drop rate before the apply. `healthy_at_start`: BackendKey()s of
  // the backends that were not down when it started.
  WatchEvaluator(WatchConfig limits, double baseline_drop_pps,
                 std::set<std::string> healthy_at_start)
      : limits_(limits),
        baseline_drop_pps_(baseline_drop_pps),
        healthy_at_start_(std::move(healthy_at_start)) {}

  // `snapshot` is the published one (its tables give the expected shares), `state` the
  // current effective state (health now).
  std::vector<WatchFinding> Evaluate(const EffectiveState& state, const shm::Snapshot& snapshot,
                                     const StatsSample& base, const StatsSample& now) const;

  // Only the traffic tests (imbalance, overload), for standing alerts.
  static std::vector<WatchFinding> TrafficFindings(const WatchConfig& limits,
                                                   const EffectiveState& state,
                                                   const shm::Snapshot& snapshot,
                                                   const StatsSample& base, const StatsSample& now);

 private:
  WatchConfig limits_;
  double baseline_drop_pps_;
  std::set<std::string> healthy_at_start_;
};

}  // namespace fulcrum::controlplane
