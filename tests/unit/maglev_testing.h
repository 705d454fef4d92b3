// Helpers shared by the Maglev tests and the cross-process digest tool.
#pragma once

#include <xxhash.h>

#include <algorithm>
#include <cstdint>
#include <random>
#include <vector>

#include "dataplane/core/maglev.h"

namespace fulcrum::testing {

// n distinct backends 10.a.b.c (every fourth with a port), in an order shuffled by `seed`
// (seed 0: not shuffled).
inline std::vector<MaglevBackend> GenerateBackends(uint32_t n, uint32_t seed) {
  std::vector<MaglevBackend> out;
  for (uint32_t i = 0; i < n; ++i) {
    MaglevBackend b;
    b.address = IpAddress::V4(10, static_cast<uint8_t>(i >> 16), static_cast<uint8_t>(i >> 8),
                              static_cast<uint8_t>(i));
    b.port = i % 4 == 0 ? 8080 : 0;
    out.push_back(b);
  }
  if (seed != 0) std::shuffle(out.begin(), out.end(), std::mt19937(seed));
  return out;
}

// A digest of which backend (by identity, not input position) owns each slot.
inline uint64_t Digest(const std::vector<MaglevBackend>& backends, const MaglevTable& table) {
  XXH3_state_t* state = XXH3_createState();
  XXH3_64bits_reset(state);
  for (uint32_t slot : table.slots) {
    const MaglevBackend& b = backends[slot];
    XXH3_64bits_update(state, b.address.bytes.data(), b.address.bytes.size());
    XXH3_64bits_update(state, &b.address.v6, sizeof(b.address.v6));
    XXH3_64bits_update(state, &b.port, sizeof(b.port));
  }
  const uint64_t digest = XXH3_64bits_digest(state);
  XXH3_freeState(state);
  return digest;
}

}  // namespace fulcrum::testing
