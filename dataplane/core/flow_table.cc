// FlowTable: construction, the batched lookup, insert, sweep, and the mmap owner.
#include "dataplane/core/flow_table.h"

#include <sys/mman.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "absl/strings/str_format.h"

namespace fulcrum {

using flow_table_internal::kClassOther;
using flow_table_internal::kClassTcp;
using flow_table_internal::kGroupBytes;
using flow_table_internal::kMetaClassShift;
using flow_table_internal::kMetaDisplaced;
using flow_table_internal::kMetaOverflowed;
using flow_table_internal::MatchSignature;
using flow_table_internal::Signature;
using flow_table_internal::WayOf;

absl::StatusOr<uint64_t> FlowTable::RoundedCapacity(uint64_t capacity) {
  if (capacity < kMinCapacity || capacity > kMaxCapacity) {
    return absl::InvalidArgumentError(
        absl::StrFormat("flow table capacity must be in [%d, %d] flows, got %d", kMinCapacity,
                        kMaxCapacity, capacity));
  }
  return kWays * std::bit_ceil((capacity + kWays - 1) / kWays);
}

absl::StatusOr<size_t> FlowTable::BytesNeeded(uint64_t capacity) {
  absl::StatusOr<uint64_t> rounded = RoundedCapacity(capacity);
  if (!rounded.ok()) return rounded.status();
  return static_cast<size_t>(*rounded / kWays * kGroupBytes);
}

absl::Status FlowTable::ValidateTimeouts(const FlowTimeouts& t) {
  for (const auto& [name, value] :
       {std::pair{"tcp_s", t.tcp_s}, {"tcp_closing_s", t.tcp_closing_s}, {"udp_s", t.udp_s}}) {
    if (value < 1 || value > kMaxTimeout) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "flow timeouts: %s must be in [1, %d] seconds, got %d", name, kMaxTimeout, value));
    }
  }
  if (t.tcp_closing_s > t.tcp_s) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "flow timeouts: tcp_closing_s (%d) must not exceed tcp_s (%d): a FIN or RST shortens "
        "a flow's timeout, never lengthens it",
        t.tcp_closing_s, t.tcp_s));
  }
  return absl::OkStatus();
}

absl::StatusOr<FlowTable> FlowTable::Create(void* memory, size_t bytes, uint64_t capacity,
                                            const FlowTimeouts& timeouts) {
  absl::StatusOr<size_t> needed = BytesNeeded(capacity);
  if (!needed.ok()) return needed.status();
  if (absl::Status s = ValidateTimeouts(timeouts); !s.ok()) return s;
  if (memory == nullptr) {
    return absl::InvalidArgumentError("flow table memory is null");
  }
  if (reinterpret_cast<uintptr_t>(memory) % kAlignment != 0) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "flow table memory must be %d-byte aligned, got address %p", kAlignment, memory));
  }
  if (bytes < *needed) {
    return absl::InvalidArgumentError(
        absl::StrFormat("a flow table of capacity %d (rounded up from %d) needs %d bytes, got %d",
                        *RoundedCapacity(capacity), capacity, *needed, bytes));
  }
  std::memset(memory, 0, *needed);  // every signature 0: every way empty
  return FlowTable(memory, static_cast<uint32_t>(*needed / kGroupBytes), timeouts);
}

FlowTable::FlowTable(void* memory, uint32_t groups, const FlowTimeouts& timeouts) noexcept
    : buckets_(static_cast<Bucket*>(memory)),
      v6_(reinterpret_cast<AddressPair*>(buckets_ + groups)),
      mask_(groups - 1) {
  SetTimeoutsUnchecked(timeouts);
}

FlowTable::FlowTable(FlowTable&& other) noexcept
    : buckets_(std::exchange(other.buckets_, nullptr)),
      v6_(std::exchange(other.v6_, nullptr)),
      mask_(std::exchange(other.mask_, 0)),
      sweep_cursor_(std::exchange(other.sweep_cursor_, 0)),
      used_(std::exchange(other.used_, 0)),
      timeouts_(other.timeouts_) {
  std::memcpy(timeout_by_class_, other.timeout_by_class_, sizeof(timeout_by_class_));
}

FlowTable& FlowTable::operator=(FlowTable&& other) noexcept {
  if (this != &other) {
    buckets_ = std::exchange(other.buckets_, nullptr);
    v6_ = std::exchange(other.v6_, nullptr);
    mask_ = std::exchange(other.mask_, 0);
    sweep_cursor_ = std::exchange(other.sweep_cursor_, 0);
    used_ = std::exchange(other.used_, 0);
    timeouts_ = other.timeouts_;
    std::memcpy(timeout_by_class_, other.timeout_by_class_, sizeof(timeout_by_class_));
  }
  return *this;
}

absl::Status FlowTable::SetTimeouts(const FlowTimeouts& timeouts) {
  if (absl::Status s = ValidateTimeouts(timeouts); !s.ok()) return s;
  SetTimeoutsUnchecked(timeouts);
  return absl::OkStatus();
}

void FlowTable::SetTimeoutsUnchecked(const FlowTimeouts& timeouts) noexcept {
  timeouts_ = timeouts;
  timeout_by_class_[kClassTcp] = timeouts.tcp_s;
  timeout_by_class_[flow_table_internal::kClassTcpClosing] = timeouts.tcp_closing_s;
  timeout_by_class_[kClassOther] = timeouts.udp_s;
  timeout_by_class_[3] = timeouts.udp_s;
}

template <FlowPrefetch kPrefetch>
void FlowTable::LookupBurst(std::span<const FlowTuple> keys, std::span<const uint64_t> hashes,
                            uint32_t now, std::span<FlowRef> refs) const noexcept {
  assert(keys.size() <= kMaxBurst && hashes.size() >= keys.size() && refs.size() >= keys.size());
  const size_t n = keys.size() < kMaxBurst ? keys.size() : kMaxBurst;
  auto key = [&](size_t i) -> const FlowTuple& { return keys[i]; };
  uint32_t home[kMaxBurst];
  uint8_t sig[kMaxBurst];
  uint64_t match[kMaxBurst];

  // Stage 1: start every key's memory accesses before waiting for any of them.
  for (size_t i = 0; i < n; ++i) {
    const auto g = static_cast<uint32_t>(hashes[i]) & mask_;
    __builtin_prefetch(&buckets_[g]);
    if constexpr (kPrefetch == FlowPrefetch::kWholeGroup) {
      if (key(i).v6) PrefetchV6(g);
    }
  }
  // Stage 2: signatures, as the bucket lines arrive. An IPv4 key needs nothing more; an IPv6
  // candidate's addresses are in the v6 array. A key without a candidate in an overflowed home
  // may be a displaced flow: fetch the neighbour now, or such a hit would wait for two misses
  // in stage 3.
  for (size_t i = 0; i < n; ++i) {
    home[i] = static_cast<uint32_t>(hashes[i]) & mask_;
    const bool is_v6 = key(i).v6;
    sig[i] = Signature(hashes[i], is_v6);
    match[i] = MatchAndPrefetch<kPrefetch != FlowPrefetch::kWholeGroup>(home[i], sig[i], is_v6);
  }
  // Stage 3: whole keys and expiry.
  for (size_t i = 0; i < n; ++i) refs[i] = Resolve(home[i], match[i], key(i), sig[i], now);
}

FlowRef FlowTable::ResolveInNeighbour(uint32_t home, const FlowTuple& key, uint8_t sig,
                                      uint32_t now) const noexcept {
  const uint32_t next = (home + 1) & mask_;
  const Bucket& n = buckets_[next];
  const uint32_t w = FindKey(next, MatchSignature(n, sig), key);
  if (w != FlowRef::kNoWay && Live(n, w, now)) return FlowRef{next, w};
  return FlowRef{home, FlowRef::kNoWay};
}

template void FlowTable::LookupBurst<FlowPrefetch::kBucketThenKey>(
    std::span<const FlowTuple>, std::span<const uint64_t>, uint32_t,
    std::span<FlowRef>) const noexcept;
template void FlowTable::LookupBurst<FlowPrefetch::kWholeGroup>(std::span<const FlowTuple>,
                                                                std::span<const uint64_t>, uint32_t,
                                                                std::span<FlowRef>) const noexcept;

void FlowTable::WriteEntry(uint32_t g, uint32_t w, uint8_t sig, const FlowTuple& key,
                           uint32_t backend, uint32_t now, bool displaced) noexcept {
  assert(backend <= kMaxBackend);
  Bucket& b = buckets_[g];
  b.sig[w] = sig;
  b.proto[w] = key.proto;
  const auto cls = static_cast<uint8_t>(key.proto == 6 ? kClassTcp : kClassOther);
  b.meta[w] = static_cast<uint8_t>((b.meta[w] & kMetaOverflowed) | cls << kMetaClassShift |
                                   (displaced ? kMetaDisplaced : 0));
  b.backend[w] = static_cast<uint16_t>(backend);
  b.ports[w] = flow_table_internal::PackPorts(key);
  b.last_seen[w] = now;
  if (key.v6) {
    std::memcpy(v6(g, w).bytes, key.src.data(), sizeof(AddressPair));
  } else {
    b.addr4[w] = flow_table_internal::V4Addresses(key);
  }
}

FlowInsertResult FlowTable::Insert(const FlowTuple& key, uint64_t hash, uint32_t backend,
                                   uint32_t now) noexcept {
  const auto home = static_cast<uint32_t>(hash) & mask_;
  const uint32_t next = (home + 1) & mask_;
  const uint8_t sig = Signature(hash, key.v6);
  Bucket& g = buckets_[home];
  Bucket& n = buckets_[next];

  // The key's own entry, live (an earlier packet of this burst inserted it) or expired: reuse
  // or free it, which keeps one entry per key however the timeouts change later.
  if (const uint32_t w = FindKey(home, MatchSignature(g, sig), key); w != FlowRef::kNoWay) {
    if (Live(g, w, now)) return {FlowInsert::kPresent, {home, w}};
    WriteEntry(home, w, sig, key, backend, now, false);
    return {FlowInsert::kInserted, {home, w}};
  }
  if ((g.meta[0] & kMetaOverflowed) != 0) {
    if (const uint32_t w = FindKey(next, MatchSignature(n, sig), key); w != FlowRef::kNoWay) {
      if (Live(n, w, now)) return {FlowInsert::kPresent, {next, w}};
      n.sig[w] = 0;  // expired and displaced: the new entry goes home if it can
      --used_;
    }
  }
  if (const uint32_t w = TakeFreeWay(g, now); w != FlowRef::kNoWay) {
    WriteEntry(home, w, sig, key, backend, now, false);
    return {FlowInsert::kInserted, {home, w}};
  }
  // Home is full of live flows. (A one-group table has no neighbour: next == home.)
  if (next != home) {
    if (const uint32_t w = TakeFreeWay(n, now); w != FlowRef::kNoWay) {
      WriteEntry(next, w, sig, key, backend, now, true);
      g.meta[0] |= kMetaOverflowed;
      return {FlowInsert::kInserted, {next, w}};
    }
  }
  return {FlowInsert::kFull, {home, FlowRef::kNoWay}};
}

uint32_t FlowTable::TakeFreeWay(const Bucket& b, uint32_t now) noexcept {
  // An empty way first: one SWAR test, and expired entries stay reachable by their own key.
  if (const uint64_t empty = MatchSignature(b, 0); empty != 0) {
    ++used_;
    return WayOf(empty);
  }
  for (uint32_t w = 0; w < kWays; ++w) {
    if (!Live(b, w, now)) return w;
  }
  return FlowRef::kNoWay;
}

namespace {

// Groups ahead that a scan prefetches: about one DRAM latency of scanning.
constexpr uint32_t kSweepPrefetchDistance = 16;

}  // namespace

uint64_t FlowTable::Sweep(uint32_t now, uint32_t max_groups) noexcept {
  uint64_t freed = 0;
  const uint64_t groups = uint64_t{mask_} + 1;
  const uint64_t count = max_groups < groups ? max_groups : groups;
  for (uint64_t i = 0; i < count; ++i) {
    const uint32_t home = sweep_cursor_;
    sweep_cursor_ = (sweep_cursor_ + 1) & mask_;
    // Consecutive lines now (the hardware prefetchers may manage alone), but the hint is cheap
    // and was kept from the 192-byte stride of the 4-way layout without measuring it again.
    __builtin_prefetch(&buckets_[(home + kSweepPrefetchDistance) & mask_], 1);
    Bucket& b = buckets_[home];
    // Branch-free test first: whether a way is in use is a coin toss, and mispredicting it
    // cost more than the scan itself.
    uint32_t expired = 0;
    for (uint32_t w = 0; w < kWays; ++w) {
      expired |= static_cast<uint32_t>((b.sig[w] != 0) & !Live(b, w, now)) << w;
    }
    for (; expired != 0; expired &= expired - 1) {
      b.sig[std::countr_zero(expired)] = 0;
      ++freed;
    }
    if ((b.meta[0] & kMetaOverflowed) == 0) continue;
    // The flag may go once the neighbour holds no entry displaced from here. Its expired
    // displaced entries are freed first, so none is left behind invisible to lookups.
    Bucket& nb = buckets_[(home + 1) & mask_];
    bool needed = false;
    for (uint32_t w = 0; w < kWays; ++w) {
      if (nb.sig[w] == 0 || (nb.meta[w] & kMetaDisplaced) == 0) continue;
      if (Live(nb, w, now)) {
        needed = true;
      } else {
        nb.sig[w] = 0;
        ++freed;
      }
    }
    if (!needed) b.meta[0] = static_cast<uint8_t>(b.meta[0] & ~kMetaOverflowed);
  }
  used_ -= freed;
  return freed;
}

uint64_t FlowTable::CountLive(uint32_t now) const noexcept {
  uint64_t live = 0;
  for (uint64_t gi = 0; gi <= mask_; ++gi) {
    __builtin_prefetch(&buckets_[(gi + kSweepPrefetchDistance) & mask_]);
    const Bucket& b = buckets_[gi];
    for (uint32_t w = 0; w < kWays; ++w) live += (b.sig[w] != 0) & Live(b, w, now);
  }
  return live;
}

FlowTuple FlowTable::Key(FlowRef ref) const noexcept {
  const Bucket& b = bucket(ref);
  FlowTuple key;
  key.v6 = (b.sig[ref.way] & 1) != 0;
  if (key.v6) {
    std::memcpy(key.src.data(), v6(ref.group, ref.way).bytes, sizeof(AddressPair));
  } else {
    const uint64_t a = b.addr4[ref.way];
    const auto src = static_cast<uint32_t>(a);
    const auto dst = static_cast<uint32_t>(a >> 32);
    std::memcpy(key.src.data(), &src, sizeof(src));
    std::memcpy(key.dst.data(), &dst, sizeof(dst));
  }
  key.src_port = static_cast<uint16_t>(b.ports[ref.way]);
  key.dst_port = static_cast<uint16_t>(b.ports[ref.way] >> 16);
  key.proto = b.proto[ref.way];
  return key;
}

// --- MmapFlowTable ---------------------------------------------------------------------------

namespace {

constexpr size_t kHugePage = size_t{2} << 20;

}  // namespace

absl::StatusOr<MmapFlowTable> MmapFlowTable::Create(uint64_t capacity,
                                                    const FlowTimeouts& timeouts) {
  absl::StatusOr<size_t> needed = FlowTable::BytesNeeded(capacity);
  if (!needed.ok()) return needed.status();
  // Map one huge page more than needed and trim both ends to a 2 MiB-aligned range, so that
  // transparent huge pages can back all of it whatever address the kernel picks.
  const size_t bytes = (*needed + kHugePage - 1) / kHugePage * kHugePage;
  const size_t mapped = bytes + kHugePage;
  void* raw = mmap(nullptr, mapped, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (raw == MAP_FAILED) {
    const int err = errno;
    return absl::ResourceExhaustedError(
        absl::StrFormat("flow table of capacity %d: mmap of %d bytes failed: %s", capacity, mapped,
                        std::strerror(err)));
  }
  const auto start = reinterpret_cast<uintptr_t>(raw);
  const uintptr_t aligned = (start + kHugePage - 1) / kHugePage * kHugePage;
  if (aligned > start) munmap(raw, aligned - start);
  if (const uintptr_t tail = start + mapped - (aligned + bytes); tail > 0) {
    munmap(reinterpret_cast<void*>(aligned + bytes), tail);
  }
  void* memory = reinterpret_cast<void*>(aligned);
  // Advice only: where THP is off this fails (EINVAL) and the table works on 4 KiB pages.
  (void)madvise(memory, bytes, MADV_HUGEPAGE);
  absl::StatusOr<FlowTable> table = FlowTable::Create(memory, bytes, capacity, timeouts);
  if (!table.ok()) {
    munmap(memory, bytes);
    return table.status();
  }
  return MmapFlowTable(memory, bytes, *std::move(table));
}

MmapFlowTable::MmapFlowTable(MmapFlowTable&& other) noexcept
    : memory_(std::exchange(other.memory_, nullptr)),
      bytes_(std::exchange(other.bytes_, 0)),
      table_(std::move(other.table_)) {}

MmapFlowTable& MmapFlowTable::operator=(MmapFlowTable&& other) noexcept {
  if (this != &other) {
    Unmap();
    memory_ = std::exchange(other.memory_, nullptr);
    bytes_ = std::exchange(other.bytes_, 0);
    table_ = std::move(other.table_);
  }
  return *this;
}

MmapFlowTable::~MmapFlowTable() { Unmap(); }

void MmapFlowTable::Unmap() noexcept {
  if (memory_ != nullptr) munmap(memory_, bytes_);
  memory_ = nullptr;
  bytes_ = 0;
}

}  // namespace fulcrum
