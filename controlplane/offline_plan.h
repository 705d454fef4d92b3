// OfflinePlan: `plan` without a server: the config against an empty state, with fresh ids, no
// overrides, every checked backend assumed up, and no traffic data (the capacity guard then
// cannot judge). What it shows is exactly what `serve --config` would publish first.
#pragma once

#include "absl/status/statusor.h"
#include "controlplane/config.h"
#include "controlplane/plan.h"

namespace fulcrum::controlplane {

absl::StatusOr<Plan> OfflinePlan(const Config& config);

}  // namespace fulcrum::controlplane
