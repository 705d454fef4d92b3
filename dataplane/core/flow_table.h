// FlowTable: the per-core connection table (VIP + 5-tuple -> backend id) with lazy expiry.
//
// One table per worker lcore: fixed capacity, placed once in memory the caller provides (the
// data plane uses rte_malloc on the lcore's NUMA socket; MmapFlowTable below is the owner for
// tests and benchmarks), never resized, never shared, one writer. The model is VPP's
// src/plugins/lb/lbhash.h: 4-way buckets of one cache line, expiry by timestamp, an insert
// that may fail. docs/flow-table.md has the diagram, the reasoning and the measurements.
//
// Layout: a group of 192 bytes (3 cache lines) per 4 flows, 48 bytes per flow:
//   line 0  bucket: u16 sig[4] | u32 ports[4] | u32 backend[4] | u32 last_seen[4] |
//                   u8 proto[4] | u8 meta[4]            (meta: timeout class, flags)
//   line 1  {src[16], dst[16]} of ways 0 and 1
//   line 2  {src[16], dst[16]} of ways 2 and 3
// lbhash.h keeps only a hash and trusts it; we keep the whole key (16-byte addresses, so IPv4
// and IPv6 share one table) and compare it in full on every hit: a signature match alone is
// never a hit. The three lines of a group are adjacent, so a lookup touches one or two pages.
//
// Hash bits: HashToSlot (Maglev) uses the HIGH 32 bits of FlowHash; the group index is the LOW
// bits (hash & mask, at most 26 of them) and the signature the top 15 bits plus the family,
// bits the index never uses (see Signature).
//
// Overflow to the neighbour group (a measured departure from lbhash.h): when a flow's home
// group holds 4 live flows, the insert takes a free way of group home+1 and sets the home's
// "overflowed" flag; lookups probe the neighbour only when that flag is set and the home did
// not have the key. One step, adjacent memory, no displacement chains. Under churn it cuts
// failed inserts about 25x at load 0.25 (1.6 % -> 0.06 %): the same failure rate needs less
// than half the memory. The flag is sticky; Sweep() clears it once the neighbour holds no
// entry displaced from this group.
//
// Time: the caller passes "now" in whole seconds of any monotonic clock (the pipeline reads
// the TSC once per burst). 32-bit seconds wrap after 136 years, and last_seen changes at most
// once a second, so refreshing a hit seldom dirties its line. A flow is live while
// now - last_seen <= timeout: never expired before it has been idle the full timeout despite
// the 1 s resolution (it may live up to 1 s longer). Timeouts are applied at lookup, so a
// change of timeouts applies to every existing entry at once. now must never go backwards.
//
// Invariant: a key has at most one entry (live or expired) in the table, because Insert reuses
// or frees the key's own expired entry. So a lookup stops at the first key match.
#pragma once

#include <bit>
#include <cassert>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <utility>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "dataplane/core/ip_address.h"

namespace fulcrum {

// Idle timeouts in seconds, each in [1, FlowTable::kMaxTimeout]. Every protocol other than
// TCP uses udp_s (VIPs are TCP or UDP; ICMP errors are looked up as the flow they are about).
struct FlowTimeouts {
  uint32_t tcp_s = 300;
  uint32_t tcp_closing_s = 15;  // after a FIN or RST from the client; at most tcp_s
  uint32_t udp_s = 30;

  friend bool operator==(const FlowTimeouts&, const FlowTimeouts&) = default;
};

// Where a lookup found a key (hit) or, on a miss, the key's home group. A hit ref stays valid
// while its entry lives: until Remove, or until the flow expires and an Insert or Sweep takes
// its way back. Within one burst (one `now`) only Remove ends it.
struct FlowRef {
  static constexpr uint32_t kNoWay = 0xffffffff;

  uint32_t group = 0;
  uint32_t way = kNoWay;  // 32 bits: no padding, so a ref is stored with one instruction

  bool hit() const noexcept { return way != kNoWay; }
};

// 32 bits wide so that FlowInsertResult has no padding and returns in two registers.
enum class FlowInsert : uint32_t {
  kInserted,  // a new entry, in an empty way or one whose flow had expired
  kPresent,   // the key already has a live entry (an earlier packet of this burst); unchanged
  kFull,      // home group and its neighbour are full of live flows: use Maglev, count it
};

struct FlowInsertResult {
  FlowInsert status;
  FlowRef ref;  // the entry for kInserted and kPresent; a miss ref for kFull
};

// How LookupBurst prefetches. kBucketThenKey is the default: it keeps one line per key in
// flight at a time (32 per burst, within the core's miss buffers), where kWholeGroup asks for
// three (96 per burst) to take the second dependent miss off a hit. Which wins depends on how
// many misses the core can have outstanding: on one host kWholeGroup measured 8-14 % faster,
// on another 45-75 % slower (docs/flow-table.md). The default is the one that is never far off.
// kCallerPrefetched is the default without its stage 1, for a caller that already ran
// PrefetchBucket on every key (the pipeline, as it hashes): the bucket lines are then in
// flight or arrived, and a second prefetch of each was 6 instructions a key for nothing.
enum class FlowPrefetch : uint8_t {
  kBucketThenKey,     // stage 1: bucket lines; stage 2: the address line of the matching way
  kWholeGroup,        // stage 1: all three lines of each key's group
  kCallerPrefetched,  // no stage 1 (the caller's PrefetchBucket); stage 2 as kBucketThenKey
};

namespace flow_table_internal {

inline constexpr uint32_t kWays = 4;

// meta[w] bits. kOverflowed lives in meta[0] only and belongs to the group, not to way 0.
// (The family is bit 0 of the signature.)
inline constexpr uint8_t kMetaClassShift = 1;  // 2 bits: TimeoutClass
inline constexpr uint8_t kMetaClassMask = 0x06;
inline constexpr uint8_t kMetaDisplaced = 0x08;  // this entry's home is the previous group
inline constexpr uint8_t kMetaOverflowed = 0x80;

enum TimeoutClass : uint8_t { kClassTcp = 0, kClassTcpClosing = 1, kClassOther = 2 };

struct alignas(64) Bucket {
  uint16_t sig[kWays];    // 0 = empty way; bit 0 = IPv6
  uint32_t ports[kWays];  // src_port | dst_port << 16
  uint32_t backend[kWays];
  uint32_t last_seen[kWays];  // seconds
  uint8_t proto[kWays];
  uint8_t meta[kWays];
};

// Source then destination address, exactly as in FlowTuple, so one 32-byte compare checks both.
struct AddressPair {
  uint8_t bytes[32];
};

struct alignas(64) Group {
  Bucket bucket;
  AddressPair addrs[kWays];
};

static_assert(sizeof(Bucket) == 64 && alignof(Bucket) == 64, "a bucket is one cache line");
static_assert(offsetof(Bucket, ports) == 8 && offsetof(Bucket, backend) == 24 &&
              offsetof(Bucket, last_seen) == 40 && offsetof(Bucket, proto) == 56 &&
              offsetof(Bucket, meta) == 60);
static_assert(sizeof(AddressPair) == 32);
static_assert(offsetof(Group, addrs) == 64, "ways 0-1 on line 1, ways 2-3 on line 2");
static_assert(sizeof(Group) == 192 && alignof(Group) == 64, "3 lines per 4 flows");
static_assert(sizeof(Group) / kWays <= 64, "the issue's budget: at most 64 bytes per flow");
static_assert(offsetof(FlowTuple, src) == 0 && offsetof(FlowTuple, dst) == 16,
              "FlowTuple's addresses are the 32 contiguous bytes an AddressPair stores");

// The top 15 bits of the hash, and the family in bit 0: a signature match then also proves
// the family, which leaves ports, protocol and addresses to compare. 0 marks an empty way, so
// an IPv4 signature of 0 becomes 2.
inline uint16_t Signature(uint64_t hash, bool v6) noexcept {
  const auto sig = static_cast<uint16_t>((hash >> 48 & 0xfffe) | uint64_t{v6});
  return sig != 0 ? sig : uint16_t{2};
}

inline uint32_t PackPorts(const FlowTuple& key) noexcept {
  return uint32_t{key.src_port} | uint32_t{key.dst_port} << 16;
}

#if defined(__SSE2__)
// One bit (0, 2, 4 or 6) per way whose signature equals sig: a 16-bit compare of the four
// lanes, its byte mask keeping one bit per lane. Six instructions where the SWAR form below,
// with its multiply-free broadcast of sig, took thirteen.
inline uint64_t MatchSignature(const Bucket& b, uint16_t sig) noexcept {
  const __m128i lanes = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(b.sig));
  const __m128i eq = _mm_cmpeq_epi16(lanes, _mm_set1_epi16(static_cast<short>(sig)));
  return static_cast<uint64_t>(_mm_movemask_epi8(eq)) & 0x55;
}
inline constexpr int kMatchBitsPerWay = 2;
#else
// One bit (15, 31, 47 or 63) per way whose signature equals sig; SWAR, exact (no borrow
// crosses lanes because each lane's low 15 bits are added separately).
inline uint64_t MatchSignature(const Bucket& b, uint16_t sig) noexcept {
  uint64_t lanes;
  std::memcpy(&lanes, b.sig, sizeof(lanes));
  constexpr uint64_t kLow = 0x7fff7fff7fff7fffull;
  const uint64_t x = lanes ^ (0x0001000100010001ull * sig);
  return ~(((x & kLow) + kLow) | x | kLow);
}
inline constexpr int kMatchBitsPerWay = 16;
#endif

// The lowest way of a MatchSignature result (not 0).
inline uint32_t WayOf(uint64_t match) noexcept {
  return static_cast<uint32_t>(std::countr_zero(match)) / kMatchBitsPerWay;
}

inline uint64_t Load64(const uint8_t* p) noexcept {
  uint64_t v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

inline bool AddressesEqual(const AddressPair& pair, const FlowTuple& key) noexcept {
#if defined(__SSE2__)
  // Two 16-byte compares; the pair is 32-byte aligned, the key need not be.
  const auto* a = reinterpret_cast<const __m128i*>(pair.bytes);
  const __m128i src = _mm_loadu_si128(reinterpret_cast<const __m128i*>(key.src.data()));
  const __m128i dst = _mm_loadu_si128(reinterpret_cast<const __m128i*>(key.dst.data()));
  const __m128i eq = _mm_and_si128(_mm_cmpeq_epi8(_mm_load_si128(a), src),
                                   _mm_cmpeq_epi8(_mm_load_si128(a + 1), dst));
  return _mm_movemask_epi8(eq) == 0xffff;
#else
  const uint8_t* a = pair.bytes;
  const uint8_t* b = key.src.data();  // src then dst (static_assert above)
  return ((Load64(a) ^ Load64(b)) | (Load64(a + 8) ^ Load64(b + 8)) |
          (Load64(a + 16) ^ Load64(b + 16)) | (Load64(a + 24) ^ Load64(b + 24))) == 0;
#endif
}

// Family is proven by the signature (see Signature).
inline bool KeyEquals(const Group& g, uint32_t w, const FlowTuple& key) noexcept {
  const Bucket& b = g.bucket;
  return b.ports[w] == PackPorts(key) && b.proto[w] == key.proto && AddressesEqual(g.addrs[w], key);
}

}  // namespace flow_table_internal

class FlowTable {
 public:
  static constexpr uint64_t kMinCapacity = flow_table_internal::kWays;
  static constexpr uint64_t kMaxCapacity = uint64_t{1} << 28;  // 12 GiB of table per lcore
  static constexpr size_t kAlignment = 64;
  static constexpr size_t kMaxBurst = 64;
  // 34 years: keeps now - last_seen far from the 2^32 wrap.
  static constexpr uint32_t kMaxTimeout = uint32_t{1} << 30;

  // Capacity in flows, rounded up to a power of two (the group index is a mask of the hash).
  // InvalidArgument outside [kMinCapacity, kMaxCapacity].
  static absl::StatusOr<uint64_t> RoundedCapacity(uint64_t capacity);
  // Bytes of kAlignment-aligned memory that Create needs for this capacity: 48 per flow.
  static absl::StatusOr<size_t> BytesNeeded(uint64_t capacity);
  static absl::Status ValidateTimeouts(const FlowTimeouts& timeouts);

  // Builds an empty table in `memory` (BytesNeeded(capacity) bytes, kAlignment-aligned, owned
  // by the caller and outliving the table). Clears the whole region, which also faults every
  // page in now rather than on the data path. No allocation here or later.
  static absl::StatusOr<FlowTable> Create(void* memory, size_t bytes, uint64_t capacity,
                                          const FlowTimeouts& timeouts = {});

  FlowTable(FlowTable&& other) noexcept;
  FlowTable& operator=(FlowTable&& other) noexcept;
  FlowTable(const FlowTable&) = delete;  // one writer: a copy would be a second one
  FlowTable& operator=(const FlowTable&) = delete;
  ~FlowTable() = default;

  // --- Hot path: owning lcore only; never allocates, locks, logs or throws. ---------------
  // `hash` is FlowHash(key) (the same key must always come with the same hash); `now` is in
  // seconds, as in the file comment.

  // Up to kMaxBurst keys (the pipeline passes its burst of 32): refs[i] is the live entry of
  // keys[i] or a miss (refs[i].hit()). No hit mask is returned: every caller reads the refs
  // anyway, and building one cost 4 instructions a hit. Stage 1 prefetches each key's
  // group, stage 2 matches signatures as the bucket lines arrive (and prefetches the
  // neighbour group where the home overflowed), stage 3 compares whole keys and checks expiry.
  // Cost per key, burst 32, random IPv4 flows, load 0.5 (bench/flow_table_bench.cc, README
  // "Benchmarks"): hit 19.7 ns at 1 Mi capacity, 32.2 ns at 16 Mi (2 MiB pages); miss 15.2
  // and 24.0 ns. rte_hash_lookup_bulk_data on the same keys in the same run (4 KiB pages):
  // hit 49.0 and 65.3 ns; on the same 4 KiB pages the table's hit is 0.47 and 0.52 of that.
  template <FlowPrefetch kPrefetch = FlowPrefetch::kBucketThenKey>
  void LookupBurst(std::span<const FlowTuple> keys, std::span<const uint64_t> hashes, uint32_t now,
                   std::span<FlowRef> refs) const noexcept {
    LookupBurst<kPrefetch>(keys.data(), sizeof(FlowTuple), hashes.first(keys.size()), now, refs);
  }
  // The same, for hashes.size() keys that are `stride` bytes apart from `first` on: the
  // pipeline looks its keys up where the parser wrote them, inside its parsed packets, rather
  // than copying each 40-byte tuple into an array first.
  template <FlowPrefetch kPrefetch = FlowPrefetch::kBucketThenKey>
  void LookupBurst(const FlowTuple* first, size_t stride, std::span<const uint64_t> hashes,
                   uint32_t now, std::span<FlowRef> refs) const noexcept;

  // Starts fetching the bucket line of the key with this hash, for a LookupBurst to come: the
  // pipeline calls it as each packet's hash is known, a whole parse stage ahead of the lookup
  // (which then runs as kCallerPrefetched). At 1 Mi flows that measured 3-4 ns a packet faster
  // than the lookup's prefetch alone (docs/dataplane.md "Cost").
  void PrefetchBucket(uint64_t hash) const noexcept {
    __builtin_prefetch(&groups_[static_cast<uint32_t>(hash) & mask_]);
  }

  // One key, no prefetch: for tests, the exception path and the CLI's "lookup".
  FlowRef Lookup(const FlowTuple& key, uint64_t hash, uint32_t now) const noexcept;

  // After a miss: adds key -> backend with last_seen = now. Reads the home group again (in
  // cache after the lookup) rather than trusting the miss, to find a free way and to catch a
  // key that an earlier packet of the same burst inserted: two packets of a new flow never
  // make two entries. Cost after a burst lookup: 20 ns at 1 Mi, 27 ns at 16 Mi (median,
  // README "Benchmarks"); without the lookup before it, 74 and 107 ns (two misses in a row).
  FlowInsertResult Insert(const FlowTuple& key, uint64_t hash, uint32_t backend,
                          uint32_t now) noexcept;

  // The entry behind a hit ref (from a lookup or Insert in this burst), its bucket's address
  // computed once for the several operations a packet does on it.
  class Entry {
   public:
    uint32_t backend() const noexcept { return b_.backend[w_]; }
    // A hit extends the flow's life. Stores only when the second changed: most hits stay reads.
    void Refresh(uint32_t now) noexcept {
      if (b_.last_seen[w_] != now) b_.last_seen[w_] = now;
    }
    // A FIN or RST from the client: a TCP entry moves to tcp_closing_s; other protocols ignore
    // it.
    void MarkClosing() noexcept {
      namespace internal = flow_table_internal;
      uint8_t& meta = b_.meta[w_];
      if ((meta & internal::kMetaClassMask) >> internal::kMetaClassShift == internal::kClassTcp) {
        meta = static_cast<uint8_t>((meta & ~internal::kMetaClassMask) |
                                    internal::kClassTcpClosing << internal::kMetaClassShift);
      }
    }
    // The flow's backend was removed or is down: the caller re-picked one with Maglev.
    void SetBackend(uint32_t backend) noexcept { b_.backend[w_] = backend; }

   private:
    friend class FlowTable;
    Entry(flow_table_internal::Bucket& b, uint32_t w) noexcept : b_(b), w_(w) {}
    flow_table_internal::Bucket& b_;
    uint32_t w_;
  };
  Entry At(FlowRef ref) noexcept { return Entry(bucket(ref), ref.way); }

  // A hit ref's backend, for a reader that does nothing else with the entry.
  uint32_t Backend(FlowRef ref) const noexcept { return bucket(ref).backend[ref.way]; }
  void Remove(FlowRef ref) noexcept {
    assert(ref.hit() && bucket(ref).sig[ref.way] != 0);
    bucket(ref).sig[ref.way] = 0;
    --used_;
  }

  // --- Owning lcore, between bursts. ----------------------------------------------------
  // Applies to existing entries at once (expiry is computed at lookup). On error the table
  // keeps its timeouts.
  absl::Status SetTimeouts(const FlowTimeouts& timeouts);
  const FlowTimeouts& timeouts() const noexcept { return timeouts_; }

  // Frees the expired entries of the next `max_groups` groups (round robin) and clears
  // overflow flags that are no longer needed; returns the number of entries freed. Optional:
  // expired ways are reused by inserts anyway; sweeping keeps used() close to the live count
  // and spares lookups the neighbour probe. Cost 6.2 ns per group at 1 Mi, 6.7 ns at 16 Mi.
  uint64_t Sweep(uint32_t now, uint32_t max_groups) noexcept;

  uint64_t capacity() const noexcept { return (uint64_t{mask_} + 1) * kWays; }
  // Occupancy for stats, O(1): ways holding an entry, i.e. the live flows plus the expired
  // ones that no insert has reused and no Sweep has freed yet. An upper bound on live flows.
  uint64_t used() const noexcept { return used_; }
  // Live entries at `now`: a full scan (1.2 ms at 1 Mi capacity, 38 ms at 16 Mi), for tests and
  // diagnostics, not for the burst loop.
  uint64_t CountLive(uint32_t now) const noexcept;
  // The key stored in a hit ref's entry (diagnostics, tests).
  FlowTuple Key(FlowRef ref) const noexcept;

 private:
  static constexpr uint32_t kWays = flow_table_internal::kWays;
  using Bucket = flow_table_internal::Bucket;
  using Group = flow_table_internal::Group;

  FlowTable(Group* groups, uint32_t mask, const FlowTimeouts& timeouts) noexcept;

  Bucket& bucket(FlowRef ref) noexcept {
    assert(ref.hit() && ref.group <= mask_);
    return groups_[ref.group].bucket;
  }
  const Bucket& bucket(FlowRef ref) const noexcept {
    assert(ref.hit() && ref.group <= mask_);
    return groups_[ref.group].bucket;
  }
  bool Live(const Bucket& b, uint32_t w, uint32_t now) const noexcept {
    namespace internal = flow_table_internal;
    return now - b.last_seen[w] <=
           timeout_by_class_[(b.meta[w] & internal::kMetaClassMask) >> internal::kMetaClassShift];
  }
  // The way of `key` among `match` (signature hits) in group g, or kNoWay.
  static uint32_t FindKey(const Group& g, uint64_t match, const FlowTuple& key) noexcept {
    for (; match != 0; match &= match - 1) {
      const uint32_t w = flow_table_internal::WayOf(match);
      if (flow_table_internal::KeyEquals(g, w, key)) return w;
    }
    return FlowRef::kNoWay;
  }
  // The rest of a lookup once the home bucket line is at hand: verify the signature matches,
  // then the neighbour if the home overflowed. Shared by Lookup and LookupBurst's stage 3.
  FlowRef Resolve(uint32_t home, uint64_t match, const FlowTuple& key, uint16_t sig,
                  uint32_t now) const noexcept;
  // Out of line: few lookups get here, and inlining it costs the common path registers.
  FlowRef ResolveInNeighbour(uint32_t home, const FlowTuple& key, uint16_t sig,
                             uint32_t now) const noexcept;
  // For an insert: the first empty way (counted in used_), else the first expired one.
  uint32_t TakeFreeWay(const Bucket& b, uint32_t now) noexcept;
  void SetTimeoutsUnchecked(const FlowTimeouts& timeouts) noexcept;

  Group* groups_ = nullptr;
  uint32_t mask_ = 0;  // groups - 1
  uint32_t sweep_cursor_ = 0;
  uint64_t used_ = 0;
  uint32_t timeout_by_class_[4] = {};  // indexed by TimeoutClass; 3 is unused (= other)
  FlowTimeouts timeouts_;
};

inline FlowRef FlowTable::Resolve(uint32_t home, uint64_t match, const FlowTuple& key, uint16_t sig,
                                  uint32_t now) const noexcept {
  const Group& g = groups_[home];
  const uint32_t w = FindKey(g, match, key);
  if (w != FlowRef::kNoWay) {
    return FlowRef{home, Live(g.bucket, w, now) ? w : FlowRef::kNoWay};
  }
  if ((g.bucket.meta[0] & flow_table_internal::kMetaOverflowed) == 0) [[likely]] {
    return FlowRef{home, FlowRef::kNoWay};
  }
  return ResolveInNeighbour(home, key, sig, now);
}

inline FlowRef FlowTable::Lookup(const FlowTuple& key, uint64_t hash, uint32_t now) const noexcept {
  const auto home = static_cast<uint32_t>(hash) & mask_;
  const uint16_t sig = flow_table_internal::Signature(hash, key.v6);
  return Resolve(home, flow_table_internal::MatchSignature(groups_[home].bucket, sig), key, sig,
                 now);
}

// Owns a FlowTable in anonymous memory, mmap'd with madvise(MADV_HUGEPAGE) (2 MiB-aligned so
// transparent huge pages can back all of it: 16 M flows then need 384 TLB entries, not 196 K).
// For tests, benchmarks and tools; the data plane places its tables with rte_malloc instead.
class MmapFlowTable {
 public:
  static absl::StatusOr<MmapFlowTable> Create(uint64_t capacity, const FlowTimeouts& timeouts = {});

  MmapFlowTable(MmapFlowTable&& other) noexcept;
  MmapFlowTable& operator=(MmapFlowTable&& other) noexcept;
  MmapFlowTable(const MmapFlowTable&) = delete;
  MmapFlowTable& operator=(const MmapFlowTable&) = delete;
  ~MmapFlowTable();

  FlowTable& table() noexcept { return table_; }
  const FlowTable& table() const noexcept { return table_; }
  FlowTable* operator->() noexcept { return &table_; }
  const FlowTable* operator->() const noexcept { return &table_; }
  size_t mapped_bytes() const noexcept { return bytes_; }

 private:
  MmapFlowTable(void* memory, size_t bytes, FlowTable table) noexcept
      : memory_(memory), bytes_(bytes), table_(std::move(table)) {}
  void Unmap() noexcept;

  void* memory_ = nullptr;
  size_t bytes_ = 0;
  FlowTable table_;
};

}  // namespace fulcrum
