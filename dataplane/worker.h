// Worker: the run-to-completion loop of one worker lcore.
//
// Each worker owns a set of (port, queue) pairs — RX and TX queue q of that port — its flow
// table and its stats block, and optionally one queue pair of the TAP exception path. Per
// iteration: for each pair, rx_burst -> ProcessBurst -> tx_burst back out of the same port
// (to the gateway) and to the TAP; then what the kernel sent on its TAP queue goes out of its
// first port; then an RCU quiescent-state report. Never allocates, locks, logs or throws.
#pragma once

#include <rte_rcu_qsbr.h>

#include <atomic>
#include <cstdint>
#include <vector>

#include "dataplane/core/encap.h"
#include "dataplane/core/flow_table.h"
#include "dataplane/forwarding.h"
#include "dataplane/shm/abi.h"

namespace fulcrum {

struct QueuePair {
  uint16_t port = 0;
  uint16_t queue = 0;
  MacAddress mac{};  // the port's own address: the source of what leaves it
};

// Shared by the main lcore and all workers.
struct WorkerShared {
  std::atomic<const ForwardingState*> state{nullptr};  // RCU-protected: see control.h
  std::atomic<bool> stop{false};
  std::atomic<bool> rx_enabled{true};  // off until the first snapshot in offline mode
  rte_rcu_qsbr* rcu = nullptr;
};

struct WorkerConfig {
  std::vector<QueuePair> queues;
  bool has_tap = false;
  uint16_t tap_port = 0;
  uint16_t tap_queue = 0;
  uint16_t burst = 32;
  uint32_t idle_sleep_us = 0;
  uint32_t rcu_thread_id = 0;
  FlowTable* flows = nullptr;
  shm::LcoreStats* stats = nullptr;
  WorkerShared* shared = nullptr;
};

// rte_eal_remote_launch entry point; `arg` is a WorkerConfig* that outlives the lcore.
int WorkerMain(void* arg);

}  // namespace fulcrum
