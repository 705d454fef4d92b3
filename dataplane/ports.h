// Ports: configures every DPDK port for the workers, and creates the TAP exception path.
//
// Each port gets min(workers, what it supports) RX/TX queue pairs, with RSS on addresses and
// ports when it has more than one. A (port, queue) pair belongs to exactly one worker: queue q
// of a port with one queue per worker goes to worker q; ports with fewer queues (one vdev per
// queue, as AF_XDP on a veth needs) are dealt round-robin. The TAP, when enabled, carries the
// MAC address of the first port (the kernel's ARP replies must name an address the NIC
// receives) and one queue pair per worker. Start-up code only.
#pragma once

#include <rte_mempool.h>

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "dataplane/worker.h"

namespace fulcrum {

struct PortOptions {
  uint16_t workers = 1;
  uint16_t rx_desc = 1024;
  uint16_t tx_desc = 1024;
  uint32_t mbufs = 0;  // 0: enough for every queue and lcore cache
  bool promiscuous = false;
  std::string tap_name;  // empty: no exception path (non-VIP packets are dropped and counted)
};

struct PortSetup {
  std::vector<uint16_t> ports;                  // data ports, in DPDK order
  std::vector<std::vector<QueuePair>> workers;  // per worker: its queue pairs
  bool has_tap = false;
  uint16_t tap_port = 0;
  rte_mempool* pool = nullptr;
};

// FailedPrecondition when there is no port, or a worker would get no queue (more workers than
// queue pairs); Internal with rte_errno's text when DPDK refuses a step.
absl::StatusOr<PortSetup> SetUpPorts(const PortOptions& options);
void StopPorts(const PortSetup& setup);
std::string PortName(uint16_t port);

}  // namespace fulcrum
