// Spread harness: how Maglev and the flow hash spread flows over a VIP's backends, and how
// many flows move when a backend leaves. Prints a table; takes no NIC and no privileges.
//   spread [BACKENDS=3] [FLOWS=1000000] [TABLE_SIZE=65537]
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <vector>

#include "dataplane/core/flow_hash.h"
#include "dataplane/core/maglev.h"

namespace fulcrum {
namespace {

int Run(uint32_t n, uint32_t flows, uint32_t m) {
  std::vector<MaglevBackend> backends(n);
  for (uint32_t i = 0; i < n; ++i) {
    backends[i].address = IpAddress::V4(10, 10, 2, static_cast<uint8_t>(11 + i));
  }
  auto table = BuildMaglevTable(backends, m);
  if (!table.ok()) {
    std::fprintf(stderr, "spread: %s\n", table.status().ToString().c_str());
    return 1;
  }
  auto fewer = backends;
  fewer.pop_back();
  const MaglevTable after = BuildMaglevTable(fewer, m).value();

  // Random clients of one VIP, hashed with a random cluster key.
  std::mt19937_64 rng(std::random_device{}());
  const FlowHashKey key{rng(), rng()};
  FlowTuple t;
  t.dst = IpAddress::V4(10, 10, 0, 100).bytes;
  t.dst_port = 80;
  t.proto = 6;
  std::vector<uint64_t> per_backend(n, 0);
  uint64_t moved = 0;
  uint64_t on_removed = 0;
  for (uint32_t f = 0; f < flows; ++f) {
    const uint64_t r = rng();
    std::memcpy(t.src.data(), &r, 4);
    t.src_port = static_cast<uint16_t>(r >> 32);
    const uint32_t slot = HashToSlot(FlowHash(t, key), m);
    const uint32_t b = table->slots[slot];
    ++per_backend[b];
    if (b == n - 1) {
      ++on_removed;
    } else {
      moved += after.slots[slot] != b;
    }
  }

  std::printf("VIP 10.10.0.100:80/tcp, %u backends, Maglev table of %u slots, %u random flows\n\n",
              n, m, flows);
  std::printf("  %-12s %8s %8s %10s %8s\n", "backend", "slots", "share", "flows", "share");
  uint64_t max_flows = 0;
  for (uint32_t i = 0; i < n; ++i) {
    std::printf("  %-12s %8u %7.2f%% %10lu %7.2f%%\n", backends[i].address.ToString().c_str(),
                table->slot_counts[i], 100.0 * table->slot_counts[i] / m, per_backend[i],
                100.0 * static_cast<double>(per_backend[i]) / flows);
    max_flows = std::max(max_flows, per_backend[i]);
  }
  std::printf("\n  imbalance (busiest / mean): %.3f\n", static_cast<double>(max_flows) * n / flows);
  std::printf("  remove %s: its %.2f%% of flows move; of the others' flows %.3f%% move\n",
              backends[n - 1].address.ToString().c_str(),
              100.0 * static_cast<double>(on_removed) / flows,
              100.0 * static_cast<double>(moved) / static_cast<double>(flows - on_removed));
  return 0;
}

}  // namespace
}  // namespace fulcrum

int main(int argc, char** argv) {
  auto arg = [&](int i, uint32_t fallback) {
    return argc > i ? static_cast<uint32_t>(std::strtoul(argv[i], nullptr, 10)) : fallback;
  };
  const uint32_t n = arg(1, 3);
  if (n < 2 || n > 250) {
    std::fprintf(stderr, "usage: %s [BACKENDS 2..250] [FLOWS] [TABLE_SIZE]\n", argv[0]);
    return 2;
  }
  return fulcrum::Run(n, arg(2, 1000000), arg(3, fulcrum::kMaglevDefaultTableSize));
}
