// FlowTable: the per-core connection table (VIP + 5-tuple -> backend id) with lazy expiry.
//
// One table per worker lcore: fixed capacity, placed once in memory the caller provides (the
// data plane uses rte_malloc on the lcore's NUMA socket; MmapFlowTable below is the owner for
// tests and benchmarks), never resized, never shared, one writer. The model is VPP's
// src/plugins/lb/lbhash.h: buckets of one cache line, expiry by timestamp, an insert that may
// fail. docs/flow-table.md has the diagram, the reasoning and the measurements.
//
// Layout: groups of 3 flows, 160 bytes each (53.3 per flow), in two arrays:
//   buckets  one line per group: u8 sig[3] | u8 proto[3] | u8 meta[3] | u16 backend[3] |
//            u32 ports[3] | u32 last_seen[3] | u64 addr4[3]   (meta: timeout class, flags)
//   v6       32 bytes per way, {src[16], dst[16]} of the group's IPv6 flows
// An IPv4 flow's whole key (both addresses in addr4, ports, protocol) lives in its bucket
// line, so an IPv4 hit or miss is one cache line; an IPv6 hit is two (its addresses are in the
// v6 array). lbhash.h keeps only a hash and trusts it; we keep the whole key and compare it in
// full on every hit: a signature match alone is never a hit.
//
// Hash bits: HashToSlot (Maglev) uses the HIGH 32 bits of FlowHash; the group index is the LOW
// bits (hash & mask, at most 26 of them) and the signature the top 7 bits plus the family,
// bits the index never uses (see Signature).
//
// Overflow to the neighbour group (a measured departure from lbhash.h): when a flow's home
// group holds 3 live flows, the insert takes a free way of group home+1 and sets the home's
// "overflowed" flag; lookups probe the neighbour only when that flag is set and the home did
// not have the key. One step, adjacent memory, no displacement chains. Under churn it cuts
// failed inserts 14-fold at load 0.25 (docs/flow-table.md "Load-factor guidance"). The flag is
// sticky; Sweep() clears it once the neighbour holds no entry displaced from this group.
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

// How LookupBurst prefetches. An IPv4 key needs only its bucket line, so the modes differ
// for IPv6 keys (and for the line an insert after a miss will write). kBucketThenKey is the
// default: stage 1 fetches bucket lines, stage 2 the v6 address pair of the matching way, so
// one line per key is in flight at a time (32 per burst, within the core's miss buffers).
// kWholeGroup asks for the bucket and, for IPv6 keys, the group's two v6 lines at once, to take
// the second dependent miss off an IPv6 hit; with 4-way groups of three lines it measured
// 8-14 % faster on one host and 45-75 % slower on another (docs/flow-table.md), so it is not
// the default. (The pipeline does not batch: it prefetches each bucket line as it hashes,
// PrefetchV6Key for IPv6 keys, and then looks each key up on its own; see PrefetchBucket.)
enum class FlowPrefetch : uint8_t {
  kBucketThenKey,  // stage 1: bucket lines; stage 2: the v6 pair of the matching way
  kWholeGroup,     // stage 1: the bucket line, and for IPv6 keys the group's v6 lines
};

namespace flow_table_internal {

inline constexpr uint32_t kWays = 3;

// meta[w] bits. kOverflowed lives in meta[0] only and belongs to the group, not to way 0.
// (The family is bit 0 of the signature.)
inline constexpr uint8_t kMetaClassShift = 1;  // 2 bits: TimeoutClass
inline constexpr uint8_t kMetaClassMask = 0x06;
inline constexpr uint8_t kMetaDisplaced = 0x08;  // this entry's home is the previous group
inline constexpr uint8_t kMetaOverflowed = 0x80;

enum TimeoutClass : uint8_t { kClassTcp = 0, kClassTcpClosing = 1, kClassOther = 2 };

// Everything about a group's three flows except IPv6 addresses: one cache line.
struct alignas(64) Bucket {
  uint8_t sig[kWays];  // 0 = empty way; bit 0 = IPv6
  uint8_t proto[kWays];
  uint8_t meta[kWays];
  uint8_t pad;
  uint16_t backend[kWays];
  uint32_t ports[kWays];      // src_port | dst_port << 16
  uint32_t last_seen[kWays];  // seconds
  uint64_t addr4[kWays];      // IPv4 flows: src | dst << 32 (V4Addresses); unused for IPv6
};

// Source then destination address, exactly as in FlowTuple, so one 32-byte compare checks both.
struct alignas(32) AddressPair {
  uint8_t bytes[32];
};

static_assert(sizeof(Bucket) == 64 && alignof(Bucket) == 64, "a bucket is one cache line");
static_assert(offsetof(Bucket, proto) == 3 && offsetof(Bucket, meta) == 6 &&
              offsetof(Bucket, backend) == 10 && offsetof(Bucket, ports) == 16 &&
              offsetof(Bucket, last_seen) == 28 && offsetof(Bucket, addr4) == 40);
static_assert(sizeof(AddressPair) == 32);
// A group's share of the table: its bucket line and its ways' IPv6 address pairs.
inline constexpr size_t kGroupBytes = sizeof(Bucket) + kWays * sizeof(AddressPair);
static_assert(kGroupBytes == 160 && kGroupBytes / kWays <= 64,
              "the issue's budget: at most 64 bytes per flow");
static_assert(offsetof(FlowTuple, src) == 0 && offsetof(FlowTuple, dst) == 16,
              "FlowTuple's addresses are the 32 contiguous bytes an AddressPair stores");

// The top 7 bits of the hash, and the family in bit 0: a signature match then also proves
// the family, which leaves ports, protocol and addresses to compare. 0 marks an empty way, so
// an IPv4 signature of 0 becomes 2. Seven bits let one in 128 non-matching entries through to
// the full compare, which for an IPv4 entry reads the same line.
inline uint8_t Signature(uint64_t hash, bool v6) noexcept {
  const auto sig = static_cast<uint8_t>((hash >> 56 & 0xfe) | uint64_t{v6});
  return sig != 0 ? sig : uint8_t{2};
}

inline uint32_t PackPorts(const FlowTuple& key) noexcept {
  return uint32_t{key.src_port} | uint32_t{key.dst_port} << 16;
}

inline uint32_t Load32(const uint8_t* p) noexcept {
  uint32_t v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

// An IPv4 key's two addresses (bytes 0..3 of src and dst; the other twelve are zero, see
// IpAddress) as one word.
inline uint64_t V4Addresses(const FlowTuple& key) noexcept {
  return uint64_t{Load32(key.src.data())} | uint64_t{Load32(key.dst.data())} << 32;
}

#if defined(__SSE2__)
// One bit (0, 1 or 2) per way whose signature equals sig: a byte compare of the first four
// bytes of the bucket (the three signatures and a protocol byte, masked off).
inline uint64_t MatchSignature(const Bucket& b, uint8_t sig) noexcept {
  const __m128i lanes = _mm_cvtsi32_si128(static_cast<int>(Load32(b.sig)));
  const __m128i eq = _mm_cmpeq_epi8(lanes, _mm_set1_epi8(static_cast<char>(sig)));
  return static_cast<uint64_t>(_mm_movemask_epi8(eq)) & 0x7;
}
inline constexpr int kMatchBitsPerWay = 1;
#else
// One bit (7, 15 or 23) per way whose signature equals sig; SWAR, exact (no carry crosses
// lanes because each lane's low 7 bits are added separately).
inline uint64_t MatchSignature(const Bucket& b, uint8_t sig) noexcept {
  const uint64_t lanes = Load32(b.sig) & 0xffffff;
  constexpr uint64_t kLow = 0x7f7f7f;
  const uint64_t x = lanes ^ (0x010101ull * sig);
  return ~(((x & kLow) + kLow) | x | kLow) & 0x808080;
}
inline constexpr int kMatchBitsPerWay = 8;
#endif

// The lowest way of a MatchSignature result (not 0).
inline uint32_t WayOf(uint64_t match) noexcept {
  return static_cast<uint32_t>(std::countr_zero(match)) / kMatchBitsPerWay;
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
  return std::memcmp(pair.bytes, key.src.data(), sizeof(pair.bytes)) == 0;
#endif
}

}  // namespace flow_table_internal

class FlowTable {
 public:
  static constexpr uint64_t kMinCapacity = flow_table_internal::kWays;
  static constexpr uint64_t kMaxCapacity = uint64_t{3} << 26;  // 10 GiB of table per lcore
  // Backend ids are stored in 16 bits (the data plane's are below shm::kMaxBackends).
  static constexpr uint32_t kMaxBackend = 0xffff;
  static constexpr size_t kAlignment = 64;
  static constexpr size_t kMaxBurst = 64;
  // 34 years: keeps now - last_seen far from the 2^32 wrap.
  static constexpr uint32_t kMaxTimeout = uint32_t{1} << 30;

  // Capacity in flows, rounded up to 3 times a power of two (3 ways a group; the group index
  // is a mask of the hash). InvalidArgument outside [kMinCapacity, kMaxCapacity].
  static absl::StatusOr<uint64_t> RoundedCapacity(uint64_t capacity);
  // Bytes of kAlignment-aligned memory that Create needs for this capacity: 160 per group of 3.
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
  // anyway, and building one cost 4 instructions a hit. Stage 1 prefetches each key's bucket
  // line, stage 2 matches signatures as the bucket lines arrive (and prefetches an IPv6
  // candidate's addresses, or the neighbour group where the home overflowed), stage 3 compares
  // whole keys and checks expiry.
  // Cost per key, burst 32, random IPv4 flows, half as many as the requested capacity
  // (bench/flow_table_bench.cc, docs/flow-table.md "Measured costs"): hit 19.7 ns at 1 Mi,
  // 28.1 ns at 16 Mi (2 MiB pages), IPv6 36.8 and 44.7; miss 15.6 and 27.1 ns.
  // rte_hash_lookup_bulk_data on the same keys in the same run (4 KiB pages): hit 49.6 and
  // 90.7 ns; on the same 4 KiB pages the table's hit is 0.42 and 0.39 of that.
  template <FlowPrefetch kPrefetch = FlowPrefetch::kBucketThenKey>
  void LookupBurst(std::span<const FlowTuple> keys, std::span<const uint64_t> hashes, uint32_t now,
                   std::span<FlowRef> refs) const noexcept;

  // Starts fetching the bucket line of the key with this hash, for a Lookup to come: the
  // pipeline calls it as each packet's hash is known, a whole parse stage ahead of the lookup,
  // which it then does per packet, just before that packet's selection, so that the wait for
  // the last lines of a burst overlaps the forwarding of its first packets (docs/dataplane.md
  // "One line per IPv4 hit"). An IPv4 key needs nothing more.
  void PrefetchBucket(uint64_t hash) const noexcept {
    __builtin_prefetch(&buckets_[static_cast<uint32_t>(hash) & mask_]);
  }
  // After PrefetchBucket, for the hash of an IPv6 key: reads its bucket line (in flight or arrived)
  // and starts fetching the second line a Lookup or Insert of the key will read, as LookupBurst's
  // stage 2 does (the matching way's address pair, the neighbour where the home overflowed, or
  // the free way's pair an insert after a miss will write).
  void PrefetchV6Key(uint64_t hash) const noexcept {
    const auto g = static_cast<uint32_t>(hash) & mask_;
    MatchAndPrefetch<true>(g, flow_table_internal::Signature(hash, true), true);
  }

  // One key, no prefetch of its own: the pipeline's lookup (after PrefetchBucket), and tests.
  FlowRef Lookup(const FlowTuple& key, uint64_t hash, uint32_t now) const noexcept;

  // After a miss: adds key -> backend (at most kMaxBackend) with last_seen = now. Reads the
  // home group again (in cache after the lookup) rather than trusting the miss, to find a free way
  // and to catch a key that an earlier packet of the same burst inserted: two packets of a new flow
  // never make two entries. Cost after a burst lookup: 22 ns at 1 Mi, 19 ns at 16 Mi (median,
  // docs/flow-table.md "Measured costs"); without the lookup before it, 71 and 85 ns.
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
    void SetBackend(uint32_t backend) noexcept {
      assert(backend <= kMaxBackend);
      b_.backend[w_] = static_cast<uint16_t>(backend);
    }

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
  // and spares lookups the neighbour probe. Cost 3.8 ns per group at 1 Mi, 5.3 ns at 16 Mi.
  uint64_t Sweep(uint32_t now, uint32_t max_groups) noexcept;

  uint64_t capacity() const noexcept { return (uint64_t{mask_} + 1) * kWays; }
  // Occupancy for stats, O(1): ways holding an entry, i.e. the live flows plus the expired
  // ones that no insert has reused and no Sweep has freed yet. An upper bound on live flows.
  uint64_t used() const noexcept { return used_; }
  // Live entries at `now`: a full scan (2.5 ms for a table created for 1 Mi, 38 ms for 16 Mi), for
  // tests and diagnostics, not for the burst loop.
  uint64_t CountLive(uint32_t now) const noexcept;
  // The key stored in a hit ref's entry (diagnostics, tests).
  FlowTuple Key(FlowRef ref) const noexcept;

 private:
  static constexpr uint32_t kWays = flow_table_internal::kWays;
  using AddressPair = flow_table_internal::AddressPair;
  using Bucket = flow_table_internal::Bucket;

  FlowTable(void* memory, uint32_t groups, const FlowTimeouts& timeouts) noexcept;

  Bucket& bucket(FlowRef ref) noexcept {
    assert(ref.hit() && ref.group <= mask_);
    return buckets_[ref.group];
  }
  const Bucket& bucket(FlowRef ref) const noexcept {
    assert(ref.hit() && ref.group <= mask_);
    return buckets_[ref.group];
  }
  AddressPair& v6(uint32_t group, uint32_t w) noexcept { return v6_[group * kWays + w]; }
  const AddressPair& v6(uint32_t group, uint32_t w) const noexcept {
    return v6_[group * kWays + w];
  }
  bool Live(const Bucket& b, uint32_t w, uint32_t now) const noexcept {
    namespace internal = flow_table_internal;
    return now - b.last_seen[w] <=
           timeout_by_class_[(b.meta[w] & internal::kMetaClassMask) >> internal::kMetaClassShift];
  }
  // Whether way w of group g holds `key`, given that its signature matched (which proves the
  // family). An IPv4 key is compared within the bucket line; an IPv6 key reads its v6 pair.
  bool KeyEquals(uint32_t g, uint32_t w, const FlowTuple& key) const noexcept {
    const Bucket& b = buckets_[g];
    if (b.ports[w] != flow_table_internal::PackPorts(key) || b.proto[w] != key.proto) return false;
    return key.v6 ? flow_table_internal::AddressesEqual(v6(g, w), key)
                  : b.addr4[w] == flow_table_internal::V4Addresses(key);
  }
  // The way of `key` among `match` (signature hits) in group g, or kNoWay.
  uint32_t FindKey(uint32_t g, uint64_t match, const FlowTuple& key) const noexcept {
    for (; match != 0; match &= match - 1) {
      const uint32_t w = flow_table_internal::WayOf(match);
      if (KeyEquals(g, w, key)) return w;
    }
    return FlowRef::kNoWay;
  }
  // LookupBurst's stage 2 for one key of group g: the signature matches, and the prefetch of the
  // line a lookup of it reads next (see the stage). kPairs: also an IPv6 candidate's or free
  // way's address pair (kWholeGroup fetched those already).
  template <bool kPairs>
  uint64_t MatchAndPrefetch(uint32_t g, uint8_t sig, bool is_v6) const noexcept {
    const Bucket& b = buckets_[g];
    const uint64_t match = flow_table_internal::MatchSignature(b, sig);
    if (match != 0) {
      if (kPairs && is_v6) __builtin_prefetch(&v6(g, flow_table_internal::WayOf(match)));
    } else if ((b.meta[0] & flow_table_internal::kMetaOverflowed) != 0) {
      const uint32_t next = (g + 1) & mask_;
      __builtin_prefetch(&buckets_[next]);
      if (is_v6) PrefetchV6(next);
    } else if (kPairs && is_v6) {
      // A sure miss, and the pipeline inserts after nearly every miss: for an IPv6 key, fetch
      // for writing the address pair Insert will fill (the first free way). An IPv4 insert
      // writes only the bucket line, which is here.
      if (const uint64_t empty = flow_table_internal::MatchSignature(b, 0); empty != 0) {
        __builtin_prefetch(&v6(g, flow_table_internal::WayOf(empty)), 1);
      }
    }
    return match;
  }
  // The group's 96 bytes of IPv6 address pairs span two lines (either half of one and all of
  // the next, or all of one and half of the next).
  void PrefetchV6(uint32_t g) const noexcept {
    const auto* p = reinterpret_cast<const char*>(&v6_[g * kWays]);
    __builtin_prefetch(p);
    __builtin_prefetch(p + 64);
  }
  void WriteEntry(uint32_t g, uint32_t w, uint8_t sig, const FlowTuple& key, uint32_t backend,
                  uint32_t now, bool displaced) noexcept;
  // The rest of a lookup once the home bucket line is at hand: verify the signature matches,
  // then the neighbour if the home overflowed. Shared by Lookup and LookupBurst's stage 3.
  FlowRef Resolve(uint32_t home, uint64_t match, const FlowTuple& key, uint8_t sig,
                  uint32_t now) const noexcept;
  // Out of line: few lookups get here, and inlining it costs the common path registers.
  FlowRef ResolveInNeighbour(uint32_t home, const FlowTuple& key, uint8_t sig,
                             uint32_t now) const noexcept;
  // For an insert: the first empty way (counted in used_), else the first expired one.
  uint32_t TakeFreeWay(const Bucket& b, uint32_t now) noexcept;
  void SetTimeoutsUnchecked(const FlowTimeouts& timeouts) noexcept;

  Bucket* buckets_ = nullptr;  // one per group
  AddressPair* v6_ = nullptr;  // kWays per group, right after the buckets
  uint32_t mask_ = 0;          // groups - 1
  uint32_t sweep_cursor_ = 0;
  uint64_t used_ = 0;
  uint32_t timeout_by_class_[4] = {};  // indexed by TimeoutClass; 3 is unused (= other)
  FlowTimeouts timeouts_;
};

inline FlowRef FlowTable::Resolve(uint32_t home, uint64_t match, const FlowTuple& key, uint8_t sig,
                                  uint32_t now) const noexcept {
  const uint32_t w = FindKey(home, match, key);
  if (w != FlowRef::kNoWay) {
    return FlowRef{home, Live(buckets_[home], w, now) ? w : FlowRef::kNoWay};
  }
  if ((buckets_[home].meta[0] & flow_table_internal::kMetaOverflowed) == 0) [[likely]] {
    return FlowRef{home, FlowRef::kNoWay};
  }
  return ResolveInNeighbour(home, key, sig, now);
}

inline FlowRef FlowTable::Lookup(const FlowTuple& key, uint64_t hash, uint32_t now) const noexcept {
  const auto home = static_cast<uint32_t>(hash) & mask_;
  const uint8_t sig = flow_table_internal::Signature(hash, key.v6);
  return Resolve(home, flow_table_internal::MatchSignature(buckets_[home], sig), key, sig, now);
}

// Owns a FlowTable in anonymous memory, mmap'd with madvise(MADV_HUGEPAGE) (2 MiB-aligned so
// transparent huge pages can back all of it: 24 Mi flows then need 640 TLB entries, not 320 K).
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
