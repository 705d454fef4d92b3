// WatchEvaluator: imbalance, overload, health and drop tests over a window of samples.
#include "controlplane/watch_evaluator.h"

#include <cmath>

#include "absl/strings/str_format.h"
#include "controlplane/stats_history.h"

namespace fulcrum::controlplane {
namespace {

constexpr double kSignificanceZ = 5;
// Below this many new flows a backend's rate or share says nothing.
constexpr uint64_t kMinFlows = 10;
constexpr double kOverloadZ = 4;

uint64_t Delta(uint64_t older, uint64_t newer) { return newer >= older ? newer - older : 0; }

}  // namespace

bool SignificantExcess(uint64_t count, uint64_t total, double p, double ratio) {
  if (total == 0) return false;
  if (p <= 0) {
    // A backend without slots that still gets new flows: only a data plane bug or a stale
    // table does that.
    return count >= kMinFlows && static_cast<double>(count) > 0.01 * static_cast<double>(total);
  }
  const double expected = static_cast<double>(total) * p;
  const double observed = static_cast<double>(count);
  if (observed <= ratio * expected) return false;
  const double sigma = std::sqrt(expected * (1 - std::min(p, 1.0)));
  return sigma == 0 ? observed > expected : (observed - expected) / sigma > kSignificanceZ;
}

std::vector<WatchFinding> WatchEvaluator::TrafficFindings(const WatchConfig& limits,
                                                          const EffectiveState& state,
                                                          const shm::Snapshot& snapshot,
                                                          const StatsSample& base,
                                                          const StatsSample& now) {
  std::vector<WatchFinding> out;
  const Rates rates = RatesBetween(base, now);
  if (rates.seconds <= 0) return out;
  for (size_t i = 0; i < state.vips.size() && i < snapshot.vips.size(); ++i) {
    const EffectiveVip& v = state.vips[i];
    const shm::Table& table = *snapshot.tables[i];
    std::vector<uint32_t> slots(v.backends.size(), 0);
    for (shm::TableEntry e : table) {
      if (e < slots.size()) ++slots[e];
    }
    std::vector<uint64_t> flows(v.backends.size(), 0);
    uint64_t total = 0;
    for (size_t j = 0; j < v.backends.size(); ++j) {
      auto a = base.backends.find(v.backends[j].id);
      auto b = now.backends.find(v.backends[j].id);
      if (a == base.backends.end() || b == now.backends.end()) continue;
      flows[j] = Delta(a->second.new_flows, b->second.new_flows);
      total += flows[j];
    }
    for (size_t j = 0; j < v.backends.size(); ++j) {
      const EffectiveBackend& b = v.backends[j];
      const double p =
          table.empty() ? 0 : static_cast<double>(slots[j]) / static_cast<double>(table.size());
      if (SignificantExcess(flows[j], total, p, limits.max_imbalance)) {
        const double observed = static_cast<double>(flows[j]) / static_cast<double>(total);
        out.push_back({"imbalance", v.config.name, b.name, p > 0 ? observed / p : 0,
                       limits.max_imbalance,
                       absl::StrFormat("%s: backend %s gets %.1f%% of new flows, expected "
                                       "%.1f%% (%.2f x, limit %.2f x)",
                                       v.config.name, b.name, 100 * observed, 100 * p,
                                       p > 0 ? observed / p : 0.0, limits.max_imbalance)});
      }
      if (b.config.capacity_cps.has_value() && flows[j] >= kMinFlows) {
        const double rate = static_cast<double>(flows[j]) / rates.seconds;
        const double load = rate / *b.config.capacity_cps;
        // Above the limit by more than four Poisson deviations of a backend exactly at it: a
        // short window right after the apply must not read noise as overload.
        const double at_limit = *b.config.capacity_cps * limits.max_load * rates.seconds;
        const double excess = static_cast<double>(flows[j]) - at_limit;
        if (load > limits.max_load && excess > kOverloadZ * std::sqrt(at_limit)) {
          out.push_back({"overload", v.config.name, b.name, load, limits.max_load,
                         absl::StrFormat("%s: backend %s receives %.0f new flows/s, %.2f x its "
                                         "capacity_cps %g (limit %.2f x)",
                                         v.config.name, b.name, rate, load, *b.config.capacity_cps,
                                         limits.max_load)});
        }
      }
    }
  }
  return out;
}

std::vector<WatchFinding> WatchEvaluator::Evaluate(const EffectiveState& state,
                                                   const shm::Snapshot& snapshot,
                                                   const StatsSample& base,
                                                   const StatsSample& now) const {
  std::vector<WatchFinding> out = TrafficFindings(limits_, state, snapshot, base, now);
  for (const EffectiveVip& v : state.vips) {
    for (const EffectiveBackend& b : v.backends) {
      if (b.health == Health::kDown && healthy_at_start_.count(b.key) != 0) {
        out.push_back({"unhealthy", v.config.name, b.name, 0, 0,
                       absl::StrFormat("%s: backend %s was healthy when the apply started and "
                                       "is down now",
                                       v.config.name, b.name)});
      }
    }
  }
  const Rates rates = RatesBetween(base, now);
  if (rates.seconds > 0) {
    const double drop_pps = rates.Of(base.TotalDrops(), now.TotalDrops());
    const double increase = drop_pps - baseline_drop_pps_;
    if (increase > limits_.max_drop_increase_pps) {
      out.push_back({"drops", "", "", increase, limits_.max_drop_increase_pps,
                     absl::StrFormat("the data plane drops %.0f packets/s, %.0f/s more than "
                                     "before the apply (limit +%g/s)",
                                     drop_pps, increase, limits_.max_drop_increase_pps)});
    }
  }
  return out;
}

}  // namespace fulcrum::controlplane
