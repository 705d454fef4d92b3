// VipMap: classifies a packet's destination as one of the snapshot's VIPs, or not.
//
// One open-addressing table of VIP addresses, power-of-two size with at least 4 slots per VIP,
// built once per snapshot and read-only afterwards (any number of lcores may read):
// * FindAddress(address): is this destination any VIP's address? Asked of every IP frame
//   before it is parsed, so that traffic for the host (SSH, BGP, health-check replies) goes to
//   the kernel for the cost of one probe, never the full parse.
// * FindService(entry, proto, port): which VIP, for a parsed packet, from the entry the
//   prefilter found: the services of an address are inline in its 64-byte slot, so classifying
//   costs no second probe (an address with more than 4 services has the rest in a second table).
// Hot path: no allocation, no locks; the load factor of at most 1/4 keeps probes close to 1.
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

  // One VIP address: what the prefilter finds, and the services on it, inline (up to 4; more
  // go to a second table). 64 bytes: a classification reads one line.
  struct Address {
    uint64_t lo = 0;
    uint64_t hi = 0;
    uint32_t family = 0;    // 4 or 6; 0 marks an empty slot
    uint8_t count = 0;      // inline services
    bool overflow = false;  // more services than inline: the rest are in the service table
    uint16_t reserved = 0;
    uint32_t key[4] = {};  // proto << 16 | port
    uint32_t vip[4] = {};
    uint32_t first_tcp = kNotFound;  // the address's first VIP of each protocol, for fragments
    uint32_t first_udp = kNotFound;
  };
  static_assert(sizeof(Address) == 64);

  // `keys[i]` is VIP i. InvalidArgument for two equal keys.
  static absl::StatusOr<VipMap> Build(std::span<const VipKey> keys);

  VipMap() = default;

  // An address as the table compares it: IPv4 in the low 4 bytes of lo, family 4 or 6.
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

  // The address's entry, or nullptr when no VIP has this address.
  const Address* FindAddress(const uint8_t* address, bool v6) const noexcept {
    return FindAddress(Load(address, v6));
  }
  const Address* FindAddress(const Words& w) const noexcept {
    for (uint32_t i = Hash(w, 0) & addr_mask_;; i = (i + 1) & addr_mask_) {
      const Address& a = addrs_[i];
      if (a.family == 0) return nullptr;
      if (a.lo == w.lo && a.hi == w.hi && a.family == w.family) return &a;
    }
  }
  bool IsVipAddress(const uint8_t* address, bool v6) const noexcept {
    return FindAddress(address, v6) != nullptr;
  }

  // The VIP index of (address, proto, port) given the address's entry, or kNotFound.
  uint32_t FindService(const Address& a, const uint8_t* address, bool v6, uint8_t proto,
                       uint16_t port) const noexcept {
    const uint32_t key = uint32_t{proto} << 16 | port;
    for (uint32_t i = 0; i < a.count; ++i) {
      if (a.key[i] == key) return a.vip[i];
    }
    return a.overflow ? FindInServices(address, v6, proto, port) : kNotFound;
  }
  uint32_t Find(const uint8_t* address, bool v6, uint8_t proto, uint16_t port) const noexcept {
    const Address* a = FindAddress(address, v6);
    return a == nullptr ? kNotFound : FindService(*a, address, v6, proto, port);
  }

  // The first VIP (lowest index) with this address and protocol, whatever its port, or
  // kNotFound: a non-first fragment carries no ports, so fragments of an address are all
  // handled by that VIP's fragment policy and table (docs/dataplane.md).
  static uint32_t FirstOfProtocol(const Address& a, uint8_t proto) noexcept {
    return proto == 6 ? a.first_tcp : proto == 17 ? a.first_udp : kNotFound;
  }
  uint32_t FindByAddress(const uint8_t* address, bool v6, uint8_t proto) const noexcept {
    const Address* a = FindAddress(address, v6);
    return a == nullptr ? kNotFound : FirstOfProtocol(*a, proto);
  }

  size_t size() const { return count_; }

 private:
  // The overflow service table: meta = family | proto << 8 | port << 16; 0 marks empty.
  struct Slot {
    uint64_t lo = 0;
    uint64_t hi = 0;
    uint32_t meta = 0;
    uint32_t value = 0;
    uint64_t reserved = 0;  // 32 bytes: two slots per line, never one across two
  };
  static_assert(sizeof(Slot) == 32);

  uint32_t FindInServices(const uint8_t* address, bool v6, uint8_t proto,
                          uint16_t port) const noexcept {
    const Words w = Load(address, v6);
    const uint32_t meta = w.family | uint32_t{proto} << 8 | uint32_t{port} << 16;
    for (uint32_t i = Hash(w, meta) & svc_mask_;; i = (i + 1) & svc_mask_) {
      const Slot& s = services_[i];
      if (s.meta == 0) return kNotFound;
      if (s.lo == w.lo && s.hi == w.hi && s.meta == meta) return s.value;
    }
  }

  // Not keyed: VIP addresses are the operator's, not the client's, so nobody can aim
  // collisions at this table.
  static uint32_t Hash(const Words& w, uint32_t meta) noexcept {
    const uint64_t x = (w.lo ^ (w.hi * 0x9e3779b97f4a7c15ull) ^ meta) * 0xbf58476d1ce4e5b9ull;
    return static_cast<uint32_t>(x >> 32);
  }

  std::vector<Address> addrs_ = std::vector<Address>(1);
  std::vector<Slot> services_ = std::vector<Slot>(1);
  uint32_t addr_mask_ = 0;
  uint32_t svc_mask_ = 0;
  size_t count_ = 0;
};

}  // namespace fulcrum
