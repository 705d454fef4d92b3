// ForwardingState construction from a validated snapshot.
#include "dataplane/forwarding.h"

#include <cstring>

#include "absl/strings/str_format.h"

namespace fulcrum {
namespace {

// Templates are built with this placeholder source MAC; the pipeline overwrites it with the
// egress port's address, so one template serves every port.
constexpr MacAddress kPlaceholderMac = {0x02, 0, 0, 0, 0, 0x01};

}  // namespace

absl::StatusOr<std::unique_ptr<ForwardingState>> ForwardingState::Build(shm::Snapshot snapshot) {
  std::unique_ptr<ForwardingState> st(new ForwardingState());
  const shm::SnapshotSettings& set = snapshot.header.settings;
  st->generation_ = snapshot.header.generation;
  std::memcpy(&st->hash_key_.k0, set.hash_key, 8);
  std::memcpy(&st->hash_key_.k1, set.hash_key + 8, 8);
  st->timeouts_ = {set.tcp_timeout_s, set.tcp_closing_timeout_s, set.udp_timeout_s};
  st->mtu_ = set.mtu;
  st->icmp_rate_pps_ = set.icmp_rate_pps;
  std::memcpy(st->gateway_mac_.data(), set.gateway_mac, 6);

  EncapConfig encap = shm::EncapConfigOf(set);
  encap.src_mac = kPlaceholderMac;
  st->source_v4_ = encap.source_v4;
  st->source_v6_ = encap.source_v6;

  std::vector<VipKey> keys;
  keys.reserve(snapshot.vips.size());
  st->backends_.resize(snapshot.backends.size());
  for (size_t v = 0; v < snapshot.vips.size(); ++v) {
    const shm::VipRecord& rec = snapshot.vips[v];
    VipEntry e;
    e.table = snapshot.tables[v]->data();
    e.table_size = rec.table_size;
    e.backend_begin = rec.backend_begin;
    e.backend_count = rec.backend_count;
    e.id = rec.id;
    e.fragments = rec.fragments;
    e.proto = rec.proto;
    e.v6 = rec.family == shm::Family::kIpv6;
    VipKey key;
    std::memcpy(key.address.data(), rec.address, 16);
    key.v6 = e.v6;
    key.proto = rec.proto;
    key.port = rec.port;
    keys.push_back(key);
    for (uint32_t b = rec.backend_begin; b < rec.backend_begin + rec.backend_count; ++b) {
      const shm::BackendRecord& br = snapshot.backends[b];
      BackendEntry& be = st->backends_[b];
      be.id = br.id;
      be.state = br.state;
      const IpAddress address = IpAddress::FromBytes(br.address, br.family == shm::Family::kIpv6);
      // Only the VIP's own family is ever carried to this backend (ICMP errors about its flows
      // are of that family too), so only that template is built.
      absl::StatusOr<EncapTemplate> t = BuildEncapTemplate(encap, address, e.v6);
      if (!t.ok()) {
        return absl::InvalidArgumentError(absl::StrFormat(
            "vips[%d] backend %s (id %d): %s", v, address.ToString(), br.id, t.status().message()));
      }
      be.encap[e.v6] = *t;
      be.encap_ok[e.v6] = true;
      BackendSlot& slot = st->by_id_[br.id];
      slot.index = b;
      slot.vip = static_cast<uint16_t>(v);
      slot.keeps_flows =
          br.state == shm::BackendState::kActive || br.state == shm::BackendState::kDraining;
    }
    st->vips_.push_back(e);
  }
  absl::StatusOr<VipMap> map = VipMap::Build(keys);
  if (!map.ok()) return map.status();
  st->vip_map_ = *std::move(map);
  st->snapshot_ = std::move(snapshot);  // the tables stay where VipEntry points: shared_ptrs
  return st;
}

}  // namespace fulcrum
