// VipMap: classifies a packet's destination as one of the snapshot's VIPs, or not.
//
// Two lookups, both open-addressing tables of power-of-two size with at least 4 slots per
// entry, built once per snapshot and read-only afterwards (any number of lcores may read):
// * IsVipAddress(address): is this destination any VIP's address? Asked of every IP frame
//   before it is parsed, so that traffic for the host (SSH, BGP, health-check replies) goes to
//   the kernel for the cost of one probe, never the full parse.
// * Find(address, proto, port): which VIP, for a parsed packet.
// Hot path: no allocation, no locks; a probe reads one 32-byte slot (two per line), and the
// load factor of at most 1/4 keeps the expected probe length close to 1.
#pragma once

#include <cstdint>
#include <cstring>
#include <span>
#include <vector>

#include "absl/status/statusor.h"
#include "dataplane/core/ip_address.h"

namespace fulcrum {

struct VipKey {
  std::array<uint8_t, 16> address{};
  bool v6 = false;
  uint8_t proto = 0;
  uint16_t port = 0;
};

class VipMap {
 public:
  static constexpr uint32_t kNotFound = 0xffffffff;

  // `keys[i]` is VIP i. InvalidArgument for two equal keys.
  static absl::StatusOr<VipMap> Build(std::span<const VipKey> keys);

  VipMap() = default;

  bool IsVipAddress(const uint8_t* address, bool v6) const noexcept {
    const Words w = Load(address, v6);
    for (uint32_t i = Hash(w, 0) & addr_mask_;; i = (i + 1) & addr_mask_) {
      const Slot& s = addrs_[i];
      if (s.meta == kEmpty) return false;
      if (s.lo == w.lo && s.hi == w.hi && s.meta == w.family) return true;
    }
  }

  // The VIP index, or kNotFound.
  uint32_t Find(const uint8_t* address, bool v6, uint8_t proto, uint16_t port) const noexcept {
    const Words w = Load(address, v6);
    const uint32_t meta = w.family | uint32_t{proto} << 8 | uint32_t{port} << 16;
    for (uint32_t i = Hash(w, meta) & svc_mask_;; i = (i + 1) & svc_mask_) {
      const Slot& s = services_[i];
      if (s.meta == kEmpty) return kNotFound;
      if (s.lo == w.lo && s.hi == w.hi && s.meta == meta) return s.value;
    }
  }

  // The first VIP (lowest index) with this address and protocol, whatever its port, or
  // kNotFound: a non-first fragment carries no ports, so fragments of an address are all
  // handled by that VIP's fragment policy and table (docs/dataplane.md).
  uint32_t FindByAddress(const uint8_t* address, bool v6, uint8_t proto) const noexcept {
    const Words w = Load(address, v6);
    const uint32_t meta = w.family | uint32_t{proto} << 8;
    for (uint32_t i = Hash(w, meta) & addr_mask_;; i = (i + 1) & addr_mask_) {
      const Slot& s = by_address_[i];
      if (s.meta == kEmpty) return kNotFound;
      if (s.lo == w.lo && s.hi == w.hi && s.meta == meta) return s.value;
    }
  }

  size_t size() const { return count_; }

 private:
  // meta: family (4 or 6) | proto << 8 | port << 16; 0 marks an empty slot (family is never 0).
  static constexpr uint32_t kEmpty = 0;
  struct Slot {
    uint64_t lo = 0;
    uint64_t hi = 0;
    uint32_t meta = kEmpty;
    uint32_t value = 0;
    uint64_t reserved = 0;  // 32 bytes: two slots per line, never one across two
  };
  static_assert(sizeof(Slot) == 32);
  struct Words {
    uint64_t lo;
    uint64_t hi;
    uint32_t family;
  };

  static Words Load(const uint8_t* address, bool v6) noexcept {
    Words w{0, 0, v6 ? 6u : 4u};
    if (v6) {
      std::memcpy(&w.lo, address, 8);
      std::memcpy(&w.hi, address + 8, 8);
    } else {
      uint32_t v4;
      std::memcpy(&v4, address, 4);
      w.lo = v4;
    }
    return w;
  }
  // Not keyed: VIP addresses are the operator's, not the client's, so nobody can aim
  // collisions at this table.
  static uint32_t Hash(const Words& w, uint32_t meta) noexcept {
    const uint64_t x = (w.lo ^ (w.hi * 0x9e3779b97f4a7c15ull) ^ meta) * 0xbf58476d1ce4e5b9ull;
    return static_cast<uint32_t>(x >> 32);
  }

  std::vector<Slot> addrs_ = std::vector<Slot>(1);
  std::vector<Slot> services_ = std::vector<Slot>(1);
  std::vector<Slot> by_address_ = std::vector<Slot>(1);  // (address, proto): first VIP
  uint32_t addr_mask_ = 0;
  uint32_t svc_mask_ = 0;
  size_t count_ = 0;
};

}  // namespace fulcrum
