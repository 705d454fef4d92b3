// EffectiveState: what the data plane should run, from the config file, the operator's
// overrides (`fulcrumctl backend drain|undrain|weight`), the health checks, and the panic
// threshold. BuildEffective() is pure: the server, the planner and the tests call it alike.
//
// Published backend state:
//   disabled (file or override)          -> kDisabled
//   draining, health down                -> kDown      (its existing flows re-pick)
//   draining                             -> kDraining  (existing flows only)
//   active, health down, VIP not in panic -> kDown
//   active otherwise                     -> kActive
// Panic: when the healthy share of a VIP's serving weight (the active backends' weights) falls
// below guards.min_healthy, its down backends stay active (fail open) and the VIP raises an
// alert: piling all flows on the few survivors is how a partial outage becomes a full one.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "controlplane/config.h"
#include "dataplane/shm/snapshot.h"

namespace fulcrum::controlplane {

enum class Health : uint8_t {
  kUnchecked = 0,  // no health check (or disabled): assumed up
  kUp = 1,
  kDown = 2,
};
std::string_view HealthName(Health h);

struct BackendOverride {
  std::optional<OperatorState> state;
  std::optional<uint32_t> weight;

  friend bool operator==(const BackendOverride&, const BackendOverride&) = default;
};
// By BackendKey(). Overrides outlive applies: a drained backend stays drained when a new file
// is applied, until `backend undrain`.
using Overrides = std::map<std::string, BackendOverride>;

// Probe target (address, port) -> health. A checked target that is absent has not been probed
// yet and counts as up: a control plane that restarts must not take backends out.
using HealthMap = std::map<std::pair<IpAddress, uint16_t>, Health>;

struct EffectiveBackend {
  BackendConfig config;  // as the file says
  std::string name;      // BackendName()
  std::string key;       // BackendKey()
  uint16_t id = 0;
  OperatorState state = OperatorState::kActive;  // after overrides
  uint32_t weight = 1;                           // after overrides
  bool overridden = false;
  Health health = Health::kUnchecked;
  uint16_t check_port = 0;
  shm::BackendState published = shm::BackendState::kActive;
};

struct EffectiveVip {
  VipConfig config;
  uint16_t id = 0;
  std::vector<EffectiveBackend> backends;
  double healthy_fraction = 1.0;  // of the serving weight
  bool panic = false;
};

struct EffectiveState {
  std::vector<EffectiveVip> vips;

  const EffectiveVip* FindVip(std::string_view name) const;
};

struct Ids {
  std::map<std::string, uint16_t> vips;      // by VIP name
  std::map<std::string, uint16_t> backends;  // by BackendKey()
};

std::vector<std::string> VipKeys(const Config& cfg);
std::vector<std::string> BackendKeys(const Config& cfg);

// FailedPrecondition when an id is missing (the caller assigns ids first).
absl::StatusOr<EffectiveState> BuildEffective(const Config& cfg, const Ids& ids,
                                              const Overrides& overrides, const HealthMap& health);

// The snapshot specs for BuildSnapshot(), VIPs and backends in config order.
std::vector<shm::VipSpec> ToSpecs(const EffectiveState& state);

}  // namespace fulcrum::controlplane
