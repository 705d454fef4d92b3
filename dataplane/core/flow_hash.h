// FlowHash: the keyed hash of a 5-tuple that picks a flow's Maglev slot and flow-table bucket.
//
// Every Fulcrum host of a cluster must compute the same value for the same flow (that is what
// keeps a flow on its backend when ECMP moves it to another host), so the function is part of
// the cluster's contract: docs/flow-hash.md specifies it, tests/fixtures/flow_hash_ref.py
// is an independent implementation, and the unit tests compare the two. Changing anything here
// remaps every flow of every cluster.
//
// The key is 128 bits, cluster-wide and secret, so that a client cannot compute which backend
// a 5-tuple reaches and aim many flows at one backend. The construction is a wyhash-style
// multiply-fold (64x64->128 multiply, xor the halves): two multiplies for IPv4, three for
// IPv6. It is not a cryptographic PRF; SipHash would be, at several times the cost.
// Cost: 1.6 ns (IPv4) and 2.4 ns (IPv6) per tuple; DPDK jhash 2.9 and 13.2 ns in the same
// run (bench/flow_hash_bench.cc, README "Benchmarks").
#pragma once

#include <cstdint>
#include <cstring>
#include <string_view>

#include "absl/status/statusor.h"
#include "dataplane/core/ip_address.h"

namespace fulcrum {

struct FlowHashKey {
  uint64_t k0 = 0;
  uint64_t k1 = 0;

  // 32 hex digits; bytes 0..7 of the key are k0 read little-endian, bytes 8..15 are k1.
  static absl::StatusOr<FlowHashKey> FromHex(std::string_view hex);

  friend bool operator==(const FlowHashKey&, const FlowHashKey&) = default;
};

namespace flow_hash_internal {

// wyhash's constants: odd, with balanced bits.
inline constexpr uint64_t kP0 = 0xa0761d6478bd642full;
inline constexpr uint64_t kP1 = 0xe7037ed1a0b428dbull;

inline uint64_t Load64(const uint8_t* p) noexcept {
  uint64_t v;
  std::memcpy(&v, p, sizeof(v));
  return v;  // little-endian hosts only (static_assert below)
}
inline uint64_t Load32(const uint8_t* p) noexcept {
  uint32_t v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}
// __extension__: the 128-bit product is a GCC/Clang extension, one MUL instruction on x86-64.
__extension__ typedef unsigned __int128 Uint128;

// a, b := low and high halves of a·b.
inline void Mum(uint64_t& a, uint64_t& b) noexcept {
  const Uint128 r = static_cast<Uint128>(a) * b;
  a = static_cast<uint64_t>(r);
  b = static_cast<uint64_t>(r >> 64);
}
inline uint64_t Mix(uint64_t a, uint64_t b) noexcept {
  Mum(a, b);
  return a ^ b;
}

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "FlowHash reads wire bytes as LE");

}  // namespace flow_hash_internal

inline uint64_t FlowHash(const FlowTuple& t, const FlowHashKey& key) noexcept {
  using namespace flow_hash_internal;
  // src_port | dst_port << 16 | proto << 32, with one load (FlowTuple's layout is pinned). The
  // parser writes these bytes with one store for it (parse.h StorePortsAndProto): after
  // separate stores of the fields this load cannot be forwarded from the store buffer, which
  // cost the pipeline 5 ns a packet (docs/dataplane.md "Cost").
  const uint64_t ports = Load64(reinterpret_cast<const uint8_t*>(&t.src_port)) & 0xffffffffffull;
  uint64_t a;
  uint64_t b;
  if (!t.v6) {
    a = Load32(t.src.data()) | Load32(t.dst.data()) << 32;
    b = ports | uint64_t{4} << 40;
  } else {
    // The client chooses its source freely (64 bits of interface id), so the 128 source bits
    // pass through a keyed multiply before they are folded to 64: a linear fold would let it
    // make many sources that collide and aim them all at one backend. The destination is the
    // VIP, which the client does not choose, and enters linearly like IPv4 addresses.
    a = Mix(Load64(t.src.data()) ^ key.k0, Load64(t.src.data() + 8) ^ key.k1) ^
        Load64(t.dst.data());
    b = (ports | uint64_t{6} << 40) ^ Load64(t.dst.data() + 8);
  }
  a ^= key.k0;
  b ^= key.k1;
  Mum(a, b);
  return Mix(a ^ kP0, b ^ kP1);
}

// The Maglev slot of a hash: the high 32 bits scaled to [0, size) (Lemire's multiply-shift,
// uniform like a modulo without a division). The flow table indexes with the low bits.
inline uint32_t HashToSlot(uint64_t hash, uint32_t size) noexcept {
  return static_cast<uint32_t>(((hash >> 32) * size) >> 32);
}

}  // namespace fulcrum
