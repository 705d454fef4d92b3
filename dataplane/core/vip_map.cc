// VipMap construction.
#include "dataplane/core/vip_map.h"

#include <bit>

#include "absl/strings/str_format.h"

namespace fulcrum {

absl::StatusOr<VipMap> VipMap::Build(std::span<const VipKey> keys) {
  VipMap m;
  const size_t slots = std::bit_ceil(std::max<size_t>(16, keys.size() * 4));
  m.addrs_.assign(slots, Slot{});
  m.services_.assign(slots, Slot{});
  m.by_address_.assign(slots, Slot{});
  m.addr_mask_ = static_cast<uint32_t>(slots - 1);
  m.svc_mask_ = static_cast<uint32_t>(slots - 1);
  for (size_t k = 0; k < keys.size(); ++k) {
    const VipKey& key = keys[k];
    const Words w = Load(key.address.data(), key.v6);
    const uint32_t meta = w.family | uint32_t{key.proto} << 8 | uint32_t{key.port} << 16;
    uint32_t i = Hash(w, meta) & m.svc_mask_;
    while (m.services_[i].meta != kEmpty) {
      const Slot& s = m.services_[i];
      if (s.lo == w.lo && s.hi == w.hi && s.meta == meta) {
        IpAddress ip;
        ip.bytes = key.address;
        ip.v6 = key.v6;
        return absl::InvalidArgumentError(
            absl::StrFormat("VIPs %d and %d are both %s port %d protocol %d", s.value, k,
                            ip.ToString(), key.port, key.proto));
      }
      i = (i + 1) & m.svc_mask_;
    }
    m.services_[i] = Slot{w.lo, w.hi, meta, static_cast<uint32_t>(k), 0};
    // The address set holds each address once, however many services it has.
    uint32_t j = Hash(w, 0) & m.addr_mask_;
    while (m.addrs_[j].meta != kEmpty &&
           !(m.addrs_[j].lo == w.lo && m.addrs_[j].hi == w.hi && m.addrs_[j].meta == w.family)) {
      j = (j + 1) & m.addr_mask_;
    }
    m.addrs_[j] = Slot{w.lo, w.hi, w.family, 0, 0};
    const uint32_t proto_meta = w.family | uint32_t{key.proto} << 8;
    uint32_t p = Hash(w, proto_meta) & m.addr_mask_;
    bool seen = false;
    for (; m.by_address_[p].meta != kEmpty; p = (p + 1) & m.addr_mask_) {
      const Slot& s = m.by_address_[p];
      if (s.lo == w.lo && s.hi == w.hi && s.meta == proto_meta) {
        seen = true;  // an earlier VIP of this address and protocol keeps it
        break;
      }
    }
    if (!seen) m.by_address_[p] = Slot{w.lo, w.hi, proto_meta, static_cast<uint32_t>(k), 0};
  }
  m.count_ = keys.size();
  return m;
}

}  // namespace fulcrum
