// Steering: keeps the AF_XDP steering program's VIP map equal to the snapshot in use.
//
// With net_af_xdp ports given `xdp_prog=<steer.bpf.o>` (fulcrumd --write-steer-object writes
// the object this binary embeds), the PMD loads Fulcrum's steering program: VIP traffic goes to
// the AF_XDP socket, everything else straight to the kernel. fulcrumd finds that program on
// each af_xdp port's interface and writes the VIPs into its map before every swap, so a new
// VIP's packets reach the workers by the time the state that knows it is in use. An af_xdp port
// without the program is reported at start-up: it takes every packet of its queue, ARP
// included, and the exception path then has to give it all to the kernel.
// Main lcore only.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "bpf/steer.h"
#include "dataplane/shm/snapshot.h"

namespace fulcrum {

class Steering {
 public:
  // One handle per af_xdp port with the steering program; `log` receives one line per port.
  static Steering ForPorts(const std::vector<uint16_t>& ports, std::vector<std::string>& log);

  // Writes the snapshot's VIPs into every steering program. The first error is returned; the
  // other programs are still updated.
  absl::Status Update(const shm::Snapshot& snapshot);
  size_t size() const { return maps_.size(); }

 private:
  std::vector<bpf::SteerMaps> maps_;
};

}  // namespace fulcrum
