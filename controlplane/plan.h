// Plan: what applying a config would do, against what runs now. For each VIP and backend:
// added / removed / changed, table slots, table share against weight share (they agree within
// one slot by construction; more than 1 % apart is reported as a bug), the fraction of the
// VIP's flows that would reach another backend, the load each backend would get at the VIP's
// current new-flow rate against its capacity, and the guards' verdict.
//
// Moved fraction is exact, not sampled: the data plane picks slot ⌊u·M / 2^32⌋ for the top 32
// bits u of a flow's hash (HashToSlot), so slot i of a table of size M owns the interval
// [⌈i·2^32/M⌉, ⌈(i+1)·2^32/M⌉) of u. Walking the boundaries of the old and the new table
// together gives the measure of u whose owner changes, for equal or different sizes, in
// O(M_old + M_new).
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "controlplane/config.h"
#include "controlplane/effective_state.h"
#include "dataplane/shm/snapshot.h"
#include "nlohmann/json.hpp"

namespace fulcrum::controlplane {

enum class Change : uint8_t { kUnchanged, kAdded, kRemoved, kChanged };
std::string_view ChangeName(Change c);

struct BackendPlan {
  std::string name;
  uint16_t id = 0;
  Change change = Change::kUnchanged;
  std::vector<std::string> changes;
  OperatorState state = OperatorState::kActive;
  Health health = Health::kUnchecked;
  shm::BackendState published = shm::BackendState::kActive;
  bool overridden = false;
  uint32_t weight = 0;
  uint32_t slots = 0;
  uint32_t old_slots = 0;
  double table_share = 0;  // slots / table size
  double old_table_share = 0;
  double weight_share = 0;  // weight / total weight of the backends that get slots
  std::optional<double> capacity_cps;
  std::optional<double> expected_cps;  // the VIP's current new-flow rate × table share
};

struct GuardCheck {
  std::string guard;  // max_backend_share | max_moved_fraction | eligible_backends | capacity
  bool ok = true;
  double value = 0;
  double limit = 0;
  std::string detail;
};

struct VipPlan {
  std::string name;
  std::string service;
  uint16_t id = 0;
  Change change = Change::kUnchanged;
  std::vector<std::string> changes;
  uint32_t table_size = 0;
  uint32_t old_table_size = 0;
  double moved_fraction = 0;
  std::optional<double> new_flow_rate;
  double healthy_fraction = 1;
  bool panic = false;
  std::vector<BackendPlan> backends;  // the new config's, then the removed ones
  std::vector<GuardCheck> guards;     // only for VIPs the plan adds or changes
  std::vector<std::string> inconsistencies;
};

struct Plan {
  uint64_t against_generation = 0;  // 0: an empty state
  std::vector<std::string> settings_changes;
  std::vector<VipPlan> vips;  // the new config's VIPs in order, then the removed ones

  bool HasChanges() const;
  // Every failed guard and inconsistency, one line each, naming the VIP.
  std::vector<std::string> Violations() const;
  bool ok() const { return Violations().empty(); }
};

// One side of a plan: a config and what it builds.
struct PlanSide {
  const Config* config = nullptr;
  const EffectiveState* state = nullptr;
  const shm::Snapshot* snapshot = nullptr;  // tables in the order of state->vips
};

// `before` null: against an empty state. `vip_rates`: current new flows/s by VIP name (absent:
// unknown, and the capacity guard cannot judge that VIP).
Plan ComputePlan(const PlanSide* before, const PlanSide& after,
                 const std::map<std::string, double>& vip_rates, uint64_t against_generation);

// The measure (0..1) of the hash space whose owner differs between the two tables. `owner_*`
// map a table entry (a position in its VIP's backend list) to an identity comparable across the
// two; an empty table owns nothing (its flows were dropped), so nothing moves from it, and
// everything moves to it.
double MovedFraction(std::span<const shm::TableEntry> old_table, std::span<const int64_t> old_owner,
                     std::span<const shm::TableEntry> new_table,
                     std::span<const int64_t> new_owner);

nlohmann::json PlanToJson(const Plan& plan);

}  // namespace fulcrum::controlplane
