// Metrics: the Prometheus text exposition (format 0.0.4) of the status view and of every
// data-plane counter. Counter names come from the X-macro lists in dataplane/shm/abi.h and
// dataplane/core/parse.h, so a counter added there appears here without an edit.
#pragma once

#include <string>

#include "controlplane/stats_reader.h"
#include "nlohmann/json.hpp"

namespace fulcrum::controlplane {

// `status` is BuildStatus()'s output; `latest` the newest stats sample (may be null).
std::string RenderMetrics(const nlohmann::json& status, const StatsSample* latest);

}  // namespace fulcrum::controlplane
