// Worker: the run-to-completion loop.
#include "dataplane/worker.h"

#include <rte_cycles.h>
#include <rte_ethdev.h>
#include <rte_lcore.h>

#include <ctime>

#include "dataplane/pipeline.h"

namespace fulcrum {
namespace {

using shm::Bump;
using shm::LcoreCounter;

inline std::atomic<uint64_t>& Counter(shm::LcoreStats& st, LcoreCounter c) {
  return st.counters[static_cast<size_t>(c)];
}

// Sends what it can, frees (and counts) the rest: a full queue drops, it never blocks the loop.
// `unsent_bytes`, when given, gets the bytes of what was not sent.
inline uint16_t SendOrDrop(uint16_t port, uint16_t queue, rte_mbuf** pkts, uint16_t n,
                           shm::LcoreStats& st, shm::DropReason reason,
                           uint64_t* unsent_bytes = nullptr) {
  const uint16_t sent = n == 0 ? 0 : rte_eth_tx_burst(port, queue, pkts, n);
  if (sent < n) {
    if (unsent_bytes != nullptr) {
      for (uint16_t i = sent; i < n; ++i) *unsent_bytes += pkts[i]->pkt_len;
    }
    Bump(st.drops[static_cast<size_t>(reason)], n - sent);
    rte_pktmbuf_free_bulk(pkts + sent, n - sent);
  }
  return sent;
}

uint64_t MonotonicNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

}  // namespace

int WorkerMain(void* arg) {
  const WorkerConfig& cfg = *static_cast<const WorkerConfig*>(arg);
  WorkerShared& shared = *cfg.shared;
  shm::LcoreStats& st = *cfg.stats;
  LcoreContext ctx;
  ctx.flows = cfg.flows;
  ctx.stats = cfg.stats;
  ctx.tsc_hz = rte_get_tsc_hz();
  ctx.icmp_last_tsc = rte_rdtsc();
  const uint64_t tsc_per_ms = ctx.tsc_hz / 1000;
  const uint64_t tsc_start = rte_rdtsc();

  rte_rcu_qsbr_thread_register(shared.rcu, cfg.rcu_thread_id);
  rte_rcu_qsbr_thread_online(shared.rcu, cfg.rcu_thread_id);
  st.lcore_id.store(rte_lcore_id(), std::memory_order_relaxed);
  st.flow_table_capacity.store(cfg.flows->capacity(), std::memory_order_relaxed);
  st.active.store(1, std::memory_order_release);

  rte_mbuf* pkts[kMaxBurst];
  BurstOutput out;
  uint64_t generation = 0;
  uint64_t next_housekeeping = 0;
  const uint16_t burst = cfg.burst;
  while (!shared.stop.load(std::memory_order_relaxed)) {
    const uint64_t now_tsc = rte_rdtsc();
    // Seconds since start: the flow table's clock only has to be monotonic.
    const auto now_s = static_cast<uint32_t>((now_tsc - tsc_start) / ctx.tsc_hz) + 1;
    const ForwardingState* state = shared.state.load(std::memory_order_acquire);
    if (state != nullptr && state->generation() != generation) {
      generation = state->generation();
      (void)cfg.flows->SetTimeouts(state->timeouts());  // validated with the snapshot
      st.generation.store(generation, std::memory_order_relaxed);
    }
    bool idle = true;
    if (shared.rx_enabled.load(std::memory_order_relaxed)) {
      for (const QueuePair& q : cfg.queues) {
        const uint16_t n = rte_eth_rx_burst(q.port, q.queue, pkts, burst);
        if (n == 0) continue;
        idle = false;
        uint64_t bytes = 0;
        for (uint16_t i = 0; i < n; ++i) bytes += pkts[i]->pkt_len;
        Bump(Counter(st, LcoreCounter::kRxPackets), n);
        Bump(Counter(st, LcoreCounter::kRxBytes), bytes);
        out.n_tx = out.n_kernel = 0;
        ProcessBurst(state, pkts, n, q.mac, now_s, now_tsc, ctx, out);
        uint64_t tx_bytes = 0;
        for (uint16_t i = 0; i < out.n_tx; ++i) tx_bytes += out.tx[i]->pkt_len;
        uint64_t unsent_bytes = 0;
        const uint16_t sent = SendOrDrop(q.port, q.queue, out.tx, out.n_tx, st,
                                         shm::DropReason::kTxFull, &unsent_bytes);
        Bump(Counter(st, LcoreCounter::kTxPackets), sent);
        Bump(Counter(st, LcoreCounter::kTxBytes), tx_bytes - unsent_bytes);
        if (cfg.has_tap) {
          Bump(Counter(st, LcoreCounter::kToKernel),
               SendOrDrop(cfg.tap_port, cfg.tap_queue, out.kernel, out.n_kernel, st,
                          shm::DropReason::kKernelFull));
        } else if (out.n_kernel > 0) {
          Bump(st.drops[static_cast<size_t>(shm::DropReason::kKernelFull)], out.n_kernel);
          rte_pktmbuf_free_bulk(out.kernel, out.n_kernel);
        }
      }
    }
    if (cfg.has_tap && !cfg.queues.empty()) {
      // What the kernel sends (ARP replies, SSH, BGP) leaves by this worker's first port.
      const uint16_t n = rte_eth_rx_burst(cfg.tap_port, cfg.tap_queue, pkts, burst);
      if (n > 0) {
        idle = false;
        const QueuePair& q = cfg.queues.front();
        Bump(Counter(st, LcoreCounter::kFromKernel),
             SendOrDrop(q.port, q.queue, pkts, n, st, shm::DropReason::kTxFull));
      }
    }
    rte_rcu_qsbr_quiescent(shared.rcu, cfg.rcu_thread_id);
    if (now_tsc >= next_housekeeping) {
      next_housekeeping = now_tsc + tsc_per_ms;
      st.flow_table_used.store(cfg.flows->used(), std::memory_order_relaxed);
      st.heartbeat_ns.store(MonotonicNs(), std::memory_order_relaxed);
    }
    // Idle moments pay for expiry, so busy ones never do.
    if (idle) {
      cfg.flows->Sweep(now_s, 64);
      if (cfg.idle_sleep_us != 0) rte_delay_us_sleep(cfg.idle_sleep_us);
    }
  }
  st.active.store(0, std::memory_order_release);
  rte_rcu_qsbr_thread_offline(shared.rcu, cfg.rcu_thread_id);
  rte_rcu_qsbr_thread_unregister(shared.rcu, cfg.rcu_thread_id);
  return 0;
}

}  // namespace fulcrum
