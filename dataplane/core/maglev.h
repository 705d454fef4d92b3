// Maglev consistent hashing: builds a VIP's lookup table from its backends (NSDI 2016, §3.4).
//
// Properties the control plane and the data plane rely on (each is a test in
// tests/unit/maglev_test.cc):
// * Identity, not position: a backend is its (address, port). The same backend set gives the
//   same table on every host and in every process, whatever the input order.
// * Even spread: each eligible backend owns ⌊M·w/W⌋ or ⌈M·w/W⌉ slots (largest-remainder
//   apportionment of the M slots by weight); with equal weights that is ⌊M/N⌋ or ⌈M/N⌉.
// * Minimal disruption: removing or adding one backend moves few slots besides its own.
//
// Runs at config time in the control plane, never per packet.
// Cost: 1.5 ms for M = 65537, N = 1000; 16.8 ms for M = 655373, N = 1000 (bench/maglev_bench.cc;
// the paper reports 1.8 ms and 22.9 ms, its Pseudocode 1 measures 2.2 and 29.8 ms here).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "dataplane/core/ip_address.h"

namespace fulcrum {

inline constexpr uint32_t kMaglevDefaultTableSize = 65537;
inline constexpr uint32_t kMaglevMinTableSize = 251;
// The largest prime below 2^24. Larger tables buy nothing: the paper's guidance is M ≫ 100·N,
// and a VIP with 160 000 backends is out of scope.
inline constexpr uint32_t kMaglevMaxTableSize = 16777213;

struct MaglevBackend {
  IpAddress address;
  uint16_t port = 0;    // part of the identity when a VIP has several backends per host
  uint32_t weight = 1;  // relative; 0 excludes the backend
  bool active = true;   // draining, disabled or down backends get no table slots
};

// slots[i] is the position, in the builder's input, of the backend that owns slot i.
// No eligible backend gives an explicitly empty table (no slots), never a stale one.
struct MaglevTable {
  std::vector<uint32_t> slots;
  std::vector<uint32_t> slot_counts;  // indexed like the input; 0 for excluded backends

  bool empty() const { return slots.empty(); }
};

// OK when `size` is a prime in [kMaglevMinTableSize, kMaglevMaxTableSize]; otherwise
// InvalidArgument naming the nearest valid sizes.
absl::Status CheckMaglevTableSize(uint64_t size);

// InvalidArgument for a bad table size or two backends with the same identity.
absl::StatusOr<MaglevTable> BuildMaglevTable(std::span<const MaglevBackend> backends,
                                             uint32_t table_size);

}  // namespace fulcrum
