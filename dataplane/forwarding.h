// ForwardingState: what the workers read per packet, built by the main lcore from a validated
// snapshot and swapped in whole with RCU (docs/dataplane.md).
//
// Immutable once published: workers only read it, from any number of lcores, and the main
// lcore frees it after the RCU grace period. Everything a packet needs is precomputed here:
// the VIP classifier, each VIP's Maglev table (shared with the previous state when unchanged),
// each backend's outer headers for both inner families, and a backend-id index that tells a
// flow-table hit whether its backend may still take the flow. No DPDK inside: the unit tests
// build and inspect it without an EAL.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "absl/status/statusor.h"
#include "dataplane/core/encap.h"
#include "dataplane/core/flow_hash.h"
#include "dataplane/core/flow_table.h"
#include "dataplane/core/vip_map.h"
#include "dataplane/shm/snapshot.h"

namespace fulcrum {

// One backend of one VIP. Two templates: inner IPv4 and inner IPv6 (kind may differ: an IPv4
// backend carries IPv6 only with GUE). The source MAC in the templates is a placeholder: the
// pipeline passes the egress port's own MAC to WriteEncap, which puts it in its place.
struct alignas(64) BackendEntry {
  EncapTemplate encap[2];  // [inner_v6]
  uint16_t id = 0;
  shm::BackendState state = shm::BackendState::kActive;
  bool encap_ok[2] = {false, false};  // the template of that inner family could be built
};

struct VipEntry {
  const shm::TableEntry* table = nullptr;  // table_size entries, indices into this VIP's backends
  uint32_t table_size = 0;                 // 0: no eligible backend, new flows are dropped
  uint32_t backend_begin = 0;              // into ForwardingState::backends
  uint32_t backend_count = 0;
  uint16_t id = 0;
  shm::FragmentPolicy fragments = shm::FragmentPolicy::kDrop;
  uint8_t proto = 0;
  bool v6 = false;
};

// Where a backend id lives in this state; vip == kNoVip when the id is not in the snapshot.
struct BackendSlot {
  static constexpr uint16_t kNoVip = 0xffff;
  uint32_t index = 0;  // into ForwardingState::backends
  uint16_t vip = kNoVip;
  // Active or draining: an existing flow may stay. Down, disabled or absent: re-pick.
  bool keeps_flows = false;
};

// The per-packet fields of a ForwardingState as plain values: the pipeline copies it into
// locals once per burst. Through the state object itself, every byte the pipeline writes into a
// packet (uint8_t stores may alias anything) makes the compiler reload the vectors' pointers.
struct ForwardingView {
  const VipEntry* vips;
  const BackendEntry* backends;
  const BackendSlot* by_id;
  FlowHashKey hash_key;
  uint32_t mtu;

  // The new-flow choice: the VIP's table at the hash's slot, as an index into backends; the
  // table must not be empty. `lookup` in the control plane computes exactly this.
  uint32_t Pick(const VipEntry& vip, uint64_t hash) const noexcept {
    return vip.backend_begin + vip.table[HashToSlot(hash, vip.table_size)];
  }
};

class ForwardingState {
 public:
  // InvalidArgument (with the VIP and backend) when a backend's encapsulation cannot be built
  // for its VIP's family: the caller rejects the snapshot as kEncap.
  static absl::StatusOr<std::unique_ptr<ForwardingState>> Build(shm::Snapshot snapshot);

  uint64_t generation() const { return generation_; }
  const shm::Snapshot& snapshot() const { return snapshot_; }
  const FlowHashKey& hash_key() const { return hash_key_; }
  const FlowTimeouts& timeouts() const { return timeouts_; }
  uint32_t mtu() const { return mtu_; }
  uint32_t icmp_rate_pps() const { return icmp_rate_pps_; }
  const MacAddress& gateway_mac() const { return gateway_mac_; }
  // Source address of ICMP errors Fulcrum sends: the outer source of that family, or nullptr.
  const std::optional<IpAddress>& source(bool v6) const { return v6 ? source_v6_ : source_v4_; }

  const VipMap& vip_map() const { return vip_map_; }
  const VipEntry& vip(uint32_t i) const { return vips_[i]; }
  size_t vip_count() const { return vips_.size(); }
  const BackendEntry& backend(uint32_t i) const { return backends_[i]; }
  const BackendSlot& backend_by_id(uint32_t id) const { return by_id_[id]; }

  ForwardingView view() const noexcept {
    return {vips_.data(), backends_.data(), by_id_.data(), hash_key_, mtu_};
  }
  uint32_t Pick(const VipEntry& vip, uint64_t hash) const noexcept {
    return view().Pick(vip, hash);
  }

 private:
  ForwardingState() = default;

  uint64_t generation_ = 0;
  shm::Snapshot snapshot_;  // owns the tables VipEntry points into (shared with older states)
  FlowHashKey hash_key_;
  FlowTimeouts timeouts_;
  uint32_t mtu_ = 1500;
  uint32_t icmp_rate_pps_ = 0;
  MacAddress gateway_mac_{};
  std::optional<IpAddress> source_v4_;
  std::optional<IpAddress> source_v6_;
  VipMap vip_map_;
  std::vector<VipEntry> vips_;
  std::vector<BackendEntry> backends_;
  std::vector<BackendSlot> by_id_ = std::vector<BackendSlot>(shm::kMaxBackends);
};

}  // namespace fulcrum
