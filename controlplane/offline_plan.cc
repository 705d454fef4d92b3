// OfflinePlan: build once, plan against nothing.
#include "controlplane/offline_plan.h"

#include "controlplane/effective_state.h"
#include "controlplane/id_registry.h"
#include "dataplane/shm/snapshot.h"

namespace fulcrum::controlplane {

absl::StatusOr<Plan> OfflinePlan(const Config& config) {
  IdRegistry vips(shm::kMaxVips, 0);
  IdRegistry backends(shm::kMaxBackends, 0);
  Ids ids;
  absl::StatusOr<std::map<std::string, uint16_t>> v = vips.Assign(VipKeys(config), 0);
  if (!v.ok()) return v.status();
  absl::StatusOr<std::map<std::string, uint16_t>> b = backends.Assign(BackendKeys(config), 0);
  if (!b.ok()) return b.status();
  ids.vips = *std::move(v);
  ids.backends = *std::move(b);
  absl::StatusOr<EffectiveState> state = BuildEffective(config, ids, {}, {});
  if (!state.ok()) return state.status();
  absl::StatusOr<shm::Snapshot> snap =
      shm::BuildSnapshot(1, ToSettings(config.dataplane), ToSpecs(*state));
  if (!snap.ok()) return snap.status();
  const PlanSide after{&config, &*state, &*snap};
  return ComputePlan(nullptr, after, {}, 0);
}

}  // namespace fulcrum::controlplane
