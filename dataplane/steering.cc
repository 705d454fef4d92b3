// Steering: the af_xdp ports' VIP maps.
#include "dataplane/steering.h"

#include <net/if.h>
#include <rte_ethdev.h>

#include <cstring>

#include "absl/strings/str_format.h"
#include "dataplane/ports.h"

namespace fulcrum {

Steering Steering::ForPorts(const std::vector<uint16_t>& ports, std::vector<std::string>& log) {
  Steering s;
  for (uint16_t port : ports) {
    rte_eth_dev_info info;
    if (rte_eth_dev_info_get(port, &info) != 0 || info.driver_name == nullptr ||
        std::strcmp(info.driver_name, "net_af_xdp") != 0) {
      continue;
    }
    char name[IF_NAMESIZE] = "?";
    if_indextoname(info.if_index, name);
    absl::StatusOr<bpf::SteerMaps> maps =
        bpf::SteerMaps::ForInterface(static_cast<int>(info.if_index));
    if (!maps.ok()) {
      log.push_back(absl::StrFormat(
          "port %d (%s on %s): no steering program (%s): it takes every packet of its queue; "
          "give the vdev xdp_prog= (fulcrumd --write-steer-object PATH writes it)",
          port, PortName(port), name, maps.status().message()));
      continue;
    }
    log.push_back(absl::StrFormat("port %d (%s on %s): steering program %d", port, PortName(port),
                                  name, maps->prog_id()));
    s.maps_.push_back(*std::move(maps));
  }
  return s;
}

absl::Status Steering::Update(const shm::Snapshot& snapshot) {
  if (maps_.empty()) return absl::OkStatus();
  std::vector<bpf::SteerVip> vips;
  for (const shm::VipRecord& v : snapshot.vips) {
    bpf::SteerVip sv;
    std::memcpy(sv.address.bytes.data(), v.address, 16);
    sv.address.v6 = v.family == shm::Family::kIpv6;
    sv.proto = v.proto;
    sv.port = v.port;
    vips.push_back(sv);
  }
  absl::Status first = absl::OkStatus();
  for (bpf::SteerMaps& m : maps_) {
    if (absl::Status st = m.ReplaceVips(vips); !st.ok() && first.ok()) first = st;
  }
  return first;
}

}  // namespace fulcrum
