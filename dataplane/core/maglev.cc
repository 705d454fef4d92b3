// Maglev table population (NSDI 2016, §3.4), extended to weights by apportionment.
#include "dataplane/core/maglev.h"

#include <xxhash.h>

#include <algorithm>
#include <numeric>
#include <string>
#include <tuple>

#include "absl/strings/str_format.h"

namespace fulcrum {
namespace {

bool IsPrime(uint64_t n) {
  if (n < 2) return false;
  if (n % 2 == 0) return n == 2;
  for (uint64_t d = 3; d * d <= n; d += 2) {
    if (n % d == 0) return false;
  }
  return true;
}

std::string Identity(const MaglevBackend& b) {
  if (b.port == 0) return b.address.ToString();
  return b.address.v6 ? absl::StrFormat("[%s]:%d", b.address.ToString(), b.port)
                      : absl::StrFormat("%s:%d", b.address.ToString(), b.port);
}

bool IdentityLess(const MaglevBackend& a, const MaglevBackend& b) {
  return std::tie(a.address, a.port) < std::tie(b.address, b.port);
}

// The backend's place in the paper's permutation: offset = h1 mod M, skip = h2 mod (M-1) + 1,
// with h1, h2 the two halves of XXH3-128 over (family, address, port). A fixed function of
// the identity, so every host and every process derives the same permutation. Changing it
// reshuffles every table (docs/maglev.md).
struct Permutation {
  uint32_t offset;
  uint32_t skip;
};

Permutation PermutationOf(const MaglevBackend& b, uint32_t m) {
  constexpr uint64_t kSeed = 0x4d41474c4556;  // "MAGLEV"
  uint8_t key[19];
  key[0] = b.address.v6 ? 6 : 4;
  std::copy(b.address.bytes.begin(), b.address.bytes.end(), key + 1);
  key[17] = static_cast<uint8_t>(b.port >> 8);
  key[18] = static_cast<uint8_t>(b.port);
  const XXH128_hash_t h = XXH3_128bits_withSeed(key, sizeof(key), kSeed);
  return {static_cast<uint32_t>(h.low64 % m), static_cast<uint32_t>(h.high64 % (m - 1) + 1)};
}

// The population state of one eligible backend.
struct Filler {
  uint32_t input_index;
  uint32_t pos;  // its next preferred slot: offset + j·skip mod M
  uint32_t skip;
  uint32_t quota;  // slots it must end up with
  uint32_t taken = 0;
  uint64_t weight;
  uint64_t credit = 0;
};

// Slot counts by largest remainder: ⌊M·w/W⌋ each, and the leftover slots to the largest
// fractional parts (ties to the canonical order), so every count is within one slot of M·w/W.
void Apportion(std::span<Filler> fillers, uint32_t m) {
  uint64_t total_weight = 0;
  for (const Filler& f : fillers) total_weight += f.weight;
  std::vector<std::pair<uint64_t, size_t>> remainders;  // (remainder, canonical position)
  uint64_t assigned = 0;
  for (size_t i = 0; i < fillers.size(); ++i) {
    // M < 2^24 and weight < 2^32: the product fits in 64 bits.
    const uint64_t scaled = uint64_t{m} * fillers[i].weight;
    fillers[i].quota = static_cast<uint32_t>(scaled / total_weight);
    assigned += fillers[i].quota;
    remainders.emplace_back(scaled % total_weight, i);
  }
  std::sort(remainders.begin(), remainders.end(), [](const auto& a, const auto& b) {
    return a.first != b.first ? a.first > b.first : a.second < b.second;
  });
  for (uint64_t k = 0; k < m - assigned; ++k) ++fillers[remainders[k].second].quota;
}

}  // namespace

absl::Status CheckMaglevTableSize(uint64_t size) {
  if (size >= kMaglevMinTableSize && size <= kMaglevMaxTableSize && IsPrime(size)) {
    return absl::OkStatus();
  }
  if (size < kMaglevMinTableSize || size > kMaglevMaxTableSize) {
    return absl::InvalidArgumentError(
        absl::StrFormat("table size %d is out of range: use a prime from %d to %d (default %d)",
                        size, kMaglevMinTableSize, kMaglevMaxTableSize, kMaglevDefaultTableSize));
  }
  uint64_t below = size - 1;
  while (!IsPrime(below)) --below;
  uint64_t above = size + 1;
  while (!IsPrime(above)) ++above;
  std::string hint = absl::StrFormat("%d or %d", below, above);
  if (below < kMaglevMinTableSize) hint = absl::StrFormat("%d", above);
  if (above > kMaglevMaxTableSize) hint = absl::StrFormat("%d", below);
  return absl::InvalidArgumentError(
      absl::StrFormat("table size %d is not prime; the nearest primes are %s", size, hint));
}

absl::StatusOr<MaglevTable> BuildMaglevTable(std::span<const MaglevBackend> backends,
                                             uint32_t table_size) {
  if (absl::Status s = CheckMaglevTableSize(table_size); !s.ok()) return s;
  const uint32_t m = table_size;

  // Canonical order: by identity, so the input order cannot matter.
  std::vector<uint32_t> order(backends.size());
  std::iota(order.begin(), order.end(), 0u);
  std::sort(order.begin(), order.end(),
            [&](uint32_t a, uint32_t b) { return IdentityLess(backends[a], backends[b]); });
  for (size_t i = 1; i < order.size(); ++i) {
    const MaglevBackend& a = backends[order[i - 1]];
    const MaglevBackend& b = backends[order[i]];
    if (!IdentityLess(a, b)) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "backends %d and %d are both %s: a backend may appear only once",
          std::min(order[i - 1], order[i]), std::max(order[i - 1], order[i]), Identity(a)));
    }
  }

  MaglevTable table;
  table.slot_counts.assign(backends.size(), 0);
  std::vector<Filler> fillers;
  for (uint32_t i : order) {
    const MaglevBackend& b = backends[i];
    if (b.weight == 0 || !b.active) continue;
    const Permutation p = PermutationOf(b, m);
    fillers.push_back(
        {.input_index = i, .pos = p.offset, .skip = p.skip, .quota = 0, .weight = b.weight});
  }
  if (fillers.empty()) return table;
  Apportion(fillers, m);
  std::erase_if(fillers, [](const Filler& f) { return f.quota == 0; });

  // The paper's round robin, weighted: every round each backend earns its weight in credit
  // and takes its next preferred free slot when it holds the largest weight's worth, so the
  // heaviest backend takes one slot per round and a backend of half its weight every second
  // round. A backend leaves the rotation when it holds its quota.
  table.slots.resize(m);
  std::vector<uint64_t> used((m + 63) / 64, 0);  // 8 KiB at M = 65537: probes stay in L1
  auto max_weight = [&] {
    uint64_t w = 0;
    for (const Filler& f : fillers) w = std::max(w, f.weight);
    return w;
  };
  uint64_t threshold = max_weight();
  uint32_t remaining = m;
  while (remaining > 0) {
    bool someone_done = false;
    for (Filler& f : fillers) {
      if (f.taken == f.quota) continue;  // never probe for a full backend: it could spin
      f.credit += f.weight;
      if (f.credit < threshold) continue;
      f.credit -= threshold;
      // skip < M and M is prime, so the walk visits every slot and finds a free one.
      uint32_t p = f.pos;
      while (used[p >> 6] >> (p & 63) & 1) {
        p += f.skip;
        p = p >= m ? p - m : p;
      }
      used[p >> 6] |= uint64_t{1} << (p & 63);
      table.slots[p] = f.input_index;
      p += f.skip;
      f.pos = p >= m ? p - m : p;
      --remaining;
      someone_done |= ++f.taken == f.quota;
    }
    if (someone_done) {
      std::erase_if(fillers, [](const Filler& f) { return f.taken == f.quota; });
      threshold = max_weight();
    }
  }
  for (uint32_t s : table.slots) ++table.slot_counts[s];
  return table;
}

}  // namespace fulcrum
