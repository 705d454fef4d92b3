// Pipeline: one burst of received frames -> encapsulated to backends, to the kernel, or dropped.
//
// Per burst: prefilter (is the destination a VIP address at all?) -> parse -> classify (which
// VIP) -> hash, prefetching the flow-table line -> per packet: flow-table lookup -> select
// (keep a tracked flow's backend while it may stay, else the VIP's Maglev table, and insert)
// -> MTU check -> encapsulate in place. The semantics
// are DESIGN.md's "Data plane"; docs/dataplane.md gives every decision and its reason.
//
// Hot path: runs on its own worker lcore with that lcore's flow table and stats block; never
// allocates, locks, logs or throws. Reads the ForwardingState it is given (RCU-protected by the
// caller) and writes only the mbufs, the flow table and the stats block.
// Cost: bench/pipeline_bench.cc (README "Benchmarks").
#pragma once

#include <rte_mbuf.h>

#include <cstdint>

#include "dataplane/core/encap.h"
#include "dataplane/core/flow_table.h"
#include "dataplane/forwarding.h"
#include "dataplane/shm/abi.h"

namespace fulcrum {

inline constexpr uint16_t kMaxBurst = 64;

// What one worker lcore owns.
struct LcoreContext {
  FlowTable* flows = nullptr;
  shm::LcoreStats* stats = nullptr;
  uint64_t tsc_hz = 1;
  // Token bucket for frag-needed / packet-too-big towards clients.
  uint64_t icmp_tokens_milli = 0;  // thousandths of a token
  uint64_t icmp_last_tsc = 0;
};

// Where the packets of a burst go; the caller transmits and frees. Dropped packets are freed
// (and counted) by ProcessBurst itself.
struct BurstOutput {
  rte_mbuf* tx[kMaxBurst];  // out of the port the burst came from (to the gateway)
  rte_mbuf* kernel[kMaxBurst];
  uint16_t n_tx = 0;
  uint16_t n_kernel = 0;
};

// `state` may be null (no snapshot yet): every packet goes to the kernel. `port_mac` is the
// source MAC of what leaves the port. `now_s` is the flow table's clock (seconds), `now_tsc`
// the TSC of this burst. n <= kMaxBurst.
void ProcessBurst(const ForwardingState* state, rte_mbuf* const* pkts, uint16_t n,
                  const MacAddress& port_mac, uint32_t now_s, uint64_t now_tsc, LcoreContext& ctx,
                  BurstOutput& out) noexcept;

}  // namespace fulcrum
