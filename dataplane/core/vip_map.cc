// VipMap construction.
#include "dataplane/core/vip_map.h"

#include <bit>

#include "absl/strings/str_format.h"

namespace fulcrum {

absl::StatusOr<VipMap> VipMap::Build(std::span<const VipKey> keys) {
  VipMap m;
  const size_t slots = std::bit_ceil(std::max<size_t>(16, keys.size() * 4));
  m.addrs_.assign(slots, Address{});
  m.services_.assign(slots, Slot{});
  m.addr_mask_ = static_cast<uint32_t>(slots - 1);
  m.svc_mask_ = static_cast<uint32_t>(slots - 1);
  for (size_t k = 0; k < keys.size(); ++k) {
    const VipKey& key = keys[k];
    const Words w = Load(key.address.data(), key.v6);
    const auto index = static_cast<uint32_t>(k);
    if (const uint32_t other = m.Find(key.address.data(), key.v6, key.proto, key.port);
        other != kNotFound) {
      IpAddress ip;
      ip.bytes = key.address;
      ip.v6 = key.v6;
      return absl::InvalidArgumentError(
          absl::StrFormat("VIPs %d and %d are both %s port %d protocol %d", other, k, ip.ToString(),
                          key.port, key.proto));
    }
    uint32_t i = Hash(w, 0) & m.addr_mask_;
    while (m.addrs_[i].family != 0 &&
           !(m.addrs_[i].lo == w.lo && m.addrs_[i].hi == w.hi && m.addrs_[i].family == w.family)) {
      i = (i + 1) & m.addr_mask_;
    }
    Address& a = m.addrs_[i];
    a.lo = w.lo;
    a.hi = w.hi;
    a.family = w.family;
    if (key.proto == 6 && a.first_tcp == kNotFound) a.first_tcp = index;
    if (key.proto == 17 && a.first_udp == kNotFound) a.first_udp = index;
    if (a.count < 4) {
      a.key[a.count] = uint32_t{key.proto} << 16 | key.port;
      a.vip[a.count] = index;
      ++a.count;
      continue;
    }
    a.overflow = true;
    const uint32_t meta = w.family | uint32_t{key.proto} << 8 | uint32_t{key.port} << 16;
    uint32_t j = Hash(w, meta) & m.svc_mask_;
    while (m.services_[j].meta != 0) j = (j + 1) & m.svc_mask_;
    m.services_[j] = Slot{w.lo, w.hi, meta, index, 0};
  }
  m.count_ = keys.size();
  return m;
}

}  // namespace fulcrum
