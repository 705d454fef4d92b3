// Health probes through the tunnel (bpf/probe.bpf.c): the control plane's health checker marks
// a probe socket with SO_MARK; this tc egress program encapsulates the probe's packets to the
// backend that the mark names, with the data plane's own encapsulation, so a TCP or HTTP check
// to VIP:port travels the tunnel real traffic takes and tests the backend's decapsulation and
// VIP, not only its own address.
//
// Use (control plane, health checker):
//   auto probe = ProbeEncap::Attach(ifindex);          // the interface probes leave by
//   probe->SetTarget(mark, encap_config, backend);     // one mark per backend
//   socket(); setsockopt(SOL_SOCKET, SO_MARK, mark); connect(VIP:port) ...
// The route to the VIP for marked packets must leave by that interface through a next hop that
// answers ARP/ND (the program replaces the Ethernet header with the template's, gateway MAC
// included); docs/bpf.md has the `ip rule` / `ip route` lines.
#pragma once

#include <cstdint>
#include <memory>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "bpf/abi.h"
#include "bpf/counters.h"
#include "dataplane/core/encap.h"
#include "dataplane/core/ip_address.h"

struct probe_bpf;

namespace fulcrum::bpf {

// The map value for `backend`: one template per inner family, built by BuildEncapTemplate()
// exactly as the data plane builds its own. A family the config cannot carry to this backend
// (IPv6 over ipip to an IPv4 backend) gets no template, and probes of that family are dropped
// and counted. Fails only when neither family can be carried, with BuildEncapTemplate's error.
absl::StatusOr<fulcrum_probe_target> ProbeTargetFor(const EncapConfig& config,
                                                    const IpAddress& backend);

class ProbeEncap {
 public:
  // Loaded, not attached: for BPF_PROG_TEST_RUN.
  static absl::StatusOr<ProbeEncap> Load();
  // Loaded and attached to ifindex's tc egress hook (clsact), replacing the filter an earlier
  // run may have left. Detached when the object goes.
  static absl::StatusOr<ProbeEncap> Attach(int ifindex);

  ProbeEncap(ProbeEncap&&) noexcept;
  ProbeEncap& operator=(ProbeEncap&&) noexcept;
  ~ProbeEncap();

  // Packets of sockets with SO_MARK `mark` go to `backend`. InvalidArgument for mark 0 (every
  // unmarked packet has it) and for a config BuildEncapTemplate refuses.
  absl::Status SetTarget(uint32_t mark, const EncapConfig& config, const IpAddress& backend);
  absl::Status SetTarget(uint32_t mark, const fulcrum_probe_target& target);
  absl::Status RemoveTarget(uint32_t mark);  // NotFound if the mark has no target

  absl::Status Detach();
  int prog_fd() const;
  absl::StatusOr<CounterValues> Counters() const;  // indexed by fulcrum_probe_counter

 private:
  explicit ProbeEncap(probe_bpf* skel) : skel_(skel) {}
  probe_bpf* skel_ = nullptr;
  int attached_ifindex_ = 0;
};

}  // namespace fulcrum::bpf
