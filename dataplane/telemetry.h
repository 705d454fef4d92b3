// Telemetry: Fulcrum's counters through DPDK telemetry (`dpdk-telemetry.py`, /fulcrum/...).
#pragma once

#include "dataplane/shm/abi.h"

namespace fulcrum {

// Registers /fulcrum/stats (every lcore counter and drop reason summed over the workers, and
// the generation in use), /fulcrum/vip,ID and /fulcrum/backend,ID (packets, bytes, new flows).
// `stats` must outlive the process's telemetry thread (it is fulcrumd's own segment).
void RegisterTelemetry(const shm::StatsSegment* stats);

}  // namespace fulcrum
