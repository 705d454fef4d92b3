// The shared-memory ABI between the control plane (writer of config) and fulcrumd (writer of
// stats): two POSIX shm segments, laid out by the structs below. docs/shm.md is the protocol.
//
// The data plane owns this format the way the kernel owns its uapi headers: everything here is
// fixed-width integers, fixed arrays and lock-free atomics; every size and offset that matters
// is pinned by a static_assert; enum values are never reused.
//
// Versioning. kAbiMajor changes when a reader built for the old layout would misread the new
// one: a field moved, resized or removed, a meaning changed, a limit lowered. kAbiMinor changes
// when something is appended that an old reader may ignore (a field in reserved space, a new
// reason or counter value). Readers reject another major, and a minor newer than their own for
// the config segment (an unknown setting might matter); the stats segment accepts newer minors.
// Every header also records its struct sizes, and readers check them: a layout change that
// forgot the version bump is still caught.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "dataplane/core/reasons.h"

namespace fulcrum::shm {

inline constexpr uint32_t kAbiMajor = 1;
inline constexpr uint32_t kAbiMinor = 0;

inline constexpr uint64_t kConfigMagic = 0x4746434d55524c46ull;  // "FLRUMCFG" little-endian
inline constexpr uint64_t kStatsMagic = 0x5453544d55524c46ull;   // "FLRUMSTT" little-endian

// Capacity of one snapshot. Changing a limit changes the layout: bump kAbiMajor.
inline constexpr uint32_t kMaxVips = 1024;              // VIP ids are 0..kMaxVips-1
inline constexpr uint32_t kMaxBackends = 16384;         // backend ids are 0..kMaxBackends-1
inline constexpr uint32_t kMaxBackendsPerVip = 4096;    // a table entry is a uint16 index
inline constexpr uint32_t kMaxTableEntries = 1u << 25;  // all VIPs' Maglev slots together
inline constexpr uint32_t kSlotCount = 2;
inline constexpr uint32_t kMaxLcores = 128;  // stats blocks
inline constexpr uint32_t kMaxPorts = 32;
inline constexpr uint32_t kNameLen = 16;  // VIP names, NUL-padded, not necessarily terminated
inline constexpr uint32_t kDetailLen = 192;

// --- Snapshot records (written by the control plane, copied out and validated by fulcrumd) --

enum class Family : uint8_t { kIpv4 = 4, kIpv6 = 6 };
enum class EncapKindSetting : uint8_t { kIpip = 0, kGue = 1 };
enum class FragmentPolicy : uint8_t {
  kDrop = 0,           // count and drop fragments to the VIP
  kHashAddresses = 1,  // pick the backend by addresses only (no flow-table entry)
};
enum class BackendState : uint8_t {
  kActive = 0,    // new and existing flows
  kDraining = 1,  // existing flows only; no table slots
  kDown = 2,      // health checks failed: no flows; existing ones re-pick
  kDisabled = 3,  // the operator took it out: like down
};

inline constexpr uint8_t kSettingsHasSourceV4 = 1u << 0;
inline constexpr uint8_t kSettingsHasSourceV6 = 1u << 1;

struct SnapshotSettings {
  uint8_t hash_key[16];  // FlowHashKey bytes (docs/flow-hash.md): cluster-wide
  uint8_t source_v4[4];  // outer source for IPv4 backends (kSettingsHasSourceV4)
  uint8_t source_v6[16];
  uint8_t gateway_mac[6];  // outer Ethernet destination: the routed next hop
  EncapKindSetting encap;
  uint8_t ttl;  // outer TTL / hop limit, 1..255
  uint16_t gue_port;
  uint16_t mtu;  // egress IP MTU, 576..9216: inner length + overhead above it is too big
  uint8_t flags;
  uint8_t reserved0[3];
  uint32_t tcp_timeout_s;  // flow-table idle timeouts (FlowTimeouts)
  uint32_t tcp_closing_timeout_s;
  uint32_t udp_timeout_s;
  uint32_t icmp_rate_pps;  // frag-needed / packet-too-big sent per second per lcore; 0 = none
  uint8_t reserved1[12];
};
static_assert(sizeof(SnapshotSettings) == 80);

struct VipRecord {
  uint8_t address[16];  // IPv4 in bytes 0..3, the rest zero (IpAddress's layout)
  uint16_t port;
  uint8_t proto;  // 6 (TCP) or 17 (UDP)
  Family family;
  FragmentPolicy fragments;
  uint8_t reserved0;
  uint16_t id;             // stable across generations; indexes per-VIP stats; < kMaxVips
  uint32_t backend_begin;  // its backends are backends[begin, begin + count)
  uint32_t backend_count;  // <= kMaxBackendsPerVip
  uint32_t table_begin;    // its Maglev table is table[begin, begin + size)
  uint32_t table_size;     // a prime, or 0 when no backend is eligible (new flows dropped)
  // TableDigest() of this VIP's backend records and table entries. The snapshot checksum
  // covers the records, and this digest the table: a reader that already holds a validated
  // table with the same digest reuses it instead of copying and checking it again, so a
  // change to one VIP costs one VIP's table, not all of them.
  uint64_t table_digest;
  char name[kNameLen];  // for logs and telemetry only
};
static_assert(sizeof(VipRecord) == 64);

struct BackendRecord {
  uint8_t address[16];
  Family family;
  BackendState state;
  uint16_t id;  // stable across generations; indexes per-backend stats; < kMaxBackends
  uint32_t weight;
  uint16_t port;  // part of the Maglev identity; 0 when the backend is just an address
  uint8_t reserved[6];
};
static_assert(sizeof(BackendRecord) == 32);

// A table entry is the position of the slot's owner in its VIP's backend range.
using TableEntry = uint16_t;

struct SnapshotHeader {
  uint64_t generation;  // > 0, strictly increasing over published snapshots
  uint64_t checksum;    // SnapshotChecksum() of header (this field zero), VIPs and backends
  uint32_t vip_count;
  uint32_t backend_count;
  uint32_t table_entries;  // table[0, table_entries) is in use
  uint32_t reserved0;
  uint64_t created_unix_ns;
  SnapshotSettings settings;
  uint8_t reserved1[8];
};
static_assert(sizeof(SnapshotHeader) == 128);

// One snapshot slot. `seq` is a seqlock: the writer makes it odd before it writes the slot and
// even (the next value) after, so a reader that saw the same even value before and after its
// copy knows the copy is whole. Only the used prefix of each array is written or copied; the
// segment is sparse, so the capacity costs address space, not memory.
struct alignas(64) SnapshotSlot {
  std::atomic<uint64_t> seq;
  uint8_t reserved[56];
  SnapshotHeader header;
  VipRecord vips[kMaxVips];
  BackendRecord backends[kMaxBackends];
  TableEntry table[kMaxTableEntries];
};
static_assert(offsetof(SnapshotSlot, header) == 64);
static_assert(offsetof(SnapshotSlot, vips) == 192);
static_assert(offsetof(SnapshotSlot, backends) == 192 + 64 * kMaxVips);
static_assert(offsetof(SnapshotSlot, table) == 192 + 64 * kMaxVips + 32 * kMaxBackends);

// --- The config segment --------------------------------------------------------------------

// Why fulcrumd refused a snapshot: X(enumerator, value, metric name, help).
#define FULCRUM_SNAPSHOT_REJECTS(X)                                                              \
  X(kNone, 0, "none", "not rejected")                                                            \
  X(kBadSlot, 1, "bad_slot", "the published slot index is not 0 or 1")                           \
  X(kTorn, 2, "torn", "the slot changed while it was copied, on every retry")                    \
  X(kGenerationMismatch, 3, "generation_mismatch",                                               \
    "the slot holds another generation than the published one")                                  \
  X(kChecksum, 4, "checksum", "the snapshot checksum or a table digest does not match")          \
  X(kCounts, 5, "counts", "VIP, backend or table-entry count beyond the segment's capacity")     \
  X(kSettings, 6, "settings", "a setting is out of range (TTL, MTU, GUE port, timeouts...)")     \
  X(kVip, 7, "vip", "a VIP record is malformed (family, protocol, id, address)")                 \
  X(kDuplicateVip, 8, "duplicate_vip", "two VIPs share an address, protocol and port, or an id") \
  X(kBackendRange, 9, "backend_range", "a VIP's backend range runs past the backend list")       \
  X(kBackend, 10, "backend", "a backend record is malformed (family, state, id, address)")       \
  X(kDuplicateBackend, 11, "duplicate_backend", "two backends share an id")                      \
  X(kTableRange, 12, "table_range", "a VIP's table runs past the table entries in use")          \
  X(kTableSize, 13, "table_size", "a VIP's table size is not a valid Maglev prime")              \
  X(kTableEntry, 14, "table_entry", "a table entry points past its VIP's backend list")          \
  X(kTableNotEligible, 15, "table_not_eligible",                                                 \
    "a table entry names a backend that is not active with a weight above zero")                 \
  X(kEncap, 16, "encap", "no encapsulation can reach a backend (family, source address)")        \
  X(kResources, 17, "resources", "the data plane could not allocate the forwarding state")
FULCRUM_DECLARE_REASONS(SnapshotReject, FULCRUM_SNAPSHOT_REJECTS)

// The published word: generation << 8 | slot, stored with release after the slot is written,
// so one acquire load gives a consistent (generation, slot) pair.
constexpr uint64_t PackPublished(uint64_t generation, uint32_t slot) {
  return generation << 8 | slot;
}
constexpr uint64_t PublishedGeneration(uint64_t word) { return word >> 8; }
constexpr uint32_t PublishedSlot(uint64_t word) { return static_cast<uint32_t>(word & 0xff); }

struct alignas(64) ConfigHeader {
  // Identity and layout: written once when the segment is created, checked by every reader.
  uint64_t magic;
  uint32_t abi_major;
  uint32_t abi_minor;
  uint32_t header_size;  // sizeof(ConfigHeader)
  uint32_t slot_size;    // sizeof(SnapshotSlot)
  uint32_t slot_count;   // kSlotCount
  uint32_t snapshot_header_size;
  uint32_t vip_record_size;
  uint32_t backend_record_size;
  uint32_t max_vips;
  uint32_t max_backends;
  uint32_t max_table_entries;
  uint32_t reserved0;
  uint64_t segment_size;  // bytes the segment must have: the header plus the slots

  // Writer (the control plane): liveness and the published snapshot.
  alignas(64) std::atomic<uint32_t> writer_pid;
  std::atomic<uint64_t> writer_heartbeat_ns;  // CLOCK_MONOTONIC, every second while alive
  std::atomic<uint64_t> published;            // PackPublished(); 0: nothing yet

  // Reader (fulcrumd): what it made of the published snapshots. `acked_generation` is the
  // generation in use. A rejection writes the detail, then the reason, then (release) the
  // generation; a reader of the rejection loads the generation first (acquire).
  alignas(64) std::atomic<uint32_t> reader_pid;
  std::atomic<uint64_t> reader_heartbeat_ns;
  std::atomic<uint64_t> acked_generation;
  std::atomic<uint64_t> rejected_generation;
  std::atomic<uint32_t> reject_reason;  // SnapshotReject
  char reject_detail[kDetailLen];       // NUL-terminated, e.g. "vips[3]: table_size 65536 ..."
};
static_assert(offsetof(ConfigHeader, writer_pid) == 64);
static_assert(offsetof(ConfigHeader, reader_pid) == 128);
static_assert(sizeof(ConfigHeader) == 384);

inline constexpr uint64_t kConfigSegmentSize =
    sizeof(ConfigHeader) + uint64_t{kSlotCount} * sizeof(SnapshotSlot);

// --- The stats segment (written by fulcrumd only) ------------------------------------------

// Per-lcore packet counters: X(enumerator, value, metric name, help). Drops are separate.
#define FULCRUM_LCORE_COUNTERS(X)                                                              \
  X(kRxPackets, 0, "rx_packets", "packets received from the NIC queues of this lcore")         \
  X(kRxBytes, 1, "rx_bytes", "bytes received from the NIC queues of this lcore")               \
  X(kTxPackets, 2, "tx_packets", "encapsulated packets sent towards backends")                 \
  X(kTxBytes, 3, "tx_bytes", "bytes of encapsulated packets sent towards backends")            \
  X(kToKernel, 4, "to_kernel", "packets not for a VIP, handed to the kernel (exception path)") \
  X(kFromKernel, 5, "from_kernel", "packets the kernel sent out through the exception path")   \
  X(kFlowHits, 6, "flow_hits", "packets of a flow already in the flow table")                  \
  X(kNewFlows, 7, "new_flows", "flows given a backend by the Maglev table and inserted")       \
  X(kFlowTableFull, 8, "flow_table_full",                                                      \
    "new flows forwarded by Maglev alone because the flow table had no room (stateless)")      \
  X(kRepicked, 9, "repicked", "tracked flows whose backend was removed or down: re-picked")    \
  X(kIcmpToBackend, 10, "icmp_to_backend",                                                     \
    "ICMP frag-needed / packet-too-big about a VIP flow, sent to that flow's backend")         \
  X(kIcmpSent, 11, "icmp_sent", "frag-needed / packet-too-big sent to clients (MTU exceeded)") \
  X(kIcmpRateLimited, 12, "icmp_rate_limited",                                                 \
    "frag-needed / packet-too-big not sent: rate limit")                                       \
  X(kFragmentsHashed, 13, "fragments_hashed", "VIP fragments forwarded by addresses only")     \
  X(kNoSnapshotPackets, 14, "no_snapshot_packets",                                             \
    "IP packets seen while no snapshot was in use (all went to the kernel)")                   \
  X(kFlowRepeats, 15, "flow_repeats",                                                          \
    "packets of the flow of the packet before them in their burst, which took its lookup")
FULCRUM_DECLARE_REASONS(LcoreCounter, FULCRUM_LCORE_COUNTERS)

// Why a packet was dropped (freed, not sent anywhere): X(enumerator, value, metric, help).
#define FULCRUM_DROP_REASONS(X)                                                              \
  X(kMalformed, 0, "malformed", "not parseable as IP (per-reason parse counters say why)")   \
  X(kVipNoBackend, 1, "vip_no_backend", "VIP traffic while the VIP has no eligible backend") \
  X(kFragment, 2, "fragment", "fragment to a VIP whose fragment policy is drop")             \
  X(kMtuExceeded, 3, "mtu_exceeded", "larger than the egress MTU once encapsulated")         \
  X(kNoHeadroom, 4, "no_headroom", "mbuf without room to prepend the outer headers")         \
  X(kTxFull, 5, "tx_full", "the NIC TX queue was full")                                      \
  X(kKernelFull, 6, "kernel_full", "the exception path (TAP) queue was full or absent")      \
  X(kUnsupportedVipPacket, 7, "unsupported_vip_packet",                                      \
    "to a VIP address and port but not usable (no ports in an unfragmented packet, ICMP "    \
    "error about an unknown flow shape)")
FULCRUM_DECLARE_REASONS(DropReason, FULCRUM_DROP_REASONS)

inline constexpr uint32_t kCounterSlots = 32;  // capacity for appended counters
inline constexpr uint32_t kDropSlots = 32;
inline constexpr uint32_t kParseSlots = 32;  // indexed by ParseResult
static_assert(kLcoreCounterCount <= kCounterSlots && kDropReasonCount <= kDropSlots);

// One writer per cache line, and every counter is a relaxed atomic that its writer bumps with a
// plain load + store (no locked instruction): readers may see a slightly old value, never a
// torn one.
struct VipCounters {
  std::atomic<uint64_t> packets;
  std::atomic<uint64_t> bytes;
  std::atomic<uint64_t> new_flows;
  std::atomic<uint64_t> drops;
};
struct BackendCounters {
  std::atomic<uint64_t> packets;
  std::atomic<uint64_t> bytes;
  std::atomic<uint64_t> new_flows;
};
static_assert(sizeof(VipCounters) == 32 && sizeof(BackendCounters) == 24);

struct alignas(64) LcoreStats {
  std::atomic<uint64_t> heartbeat_ns;  // CLOCK_MONOTONIC at the end of a loop, ~every ms
  std::atomic<uint32_t> active;        // 1 while a worker runs on this block
  std::atomic<uint32_t> lcore_id;
  std::atomic<uint64_t> generation;  // the snapshot generation this lcore last used
  std::atomic<uint64_t> flow_table_used;
  std::atomic<uint64_t> flow_table_capacity;
  uint8_t reserved[24];
  std::atomic<uint64_t> counters[kCounterSlots];  // LcoreCounter
  std::atomic<uint64_t> drops[kDropSlots];        // DropReason
  std::atomic<uint64_t> parse[kParseSlots];       // ParseResult of every received frame
  VipCounters vips[kMaxVips];                     // by VIP id
  BackendCounters backends[kMaxBackends];         // by backend id
};
static_assert(offsetof(LcoreStats, counters) == 64);
static_assert(offsetof(LcoreStats, vips) == 64 + 8 * (kCounterSlots + kDropSlots + kParseSlots));

struct alignas(64) PortStats {
  std::atomic<uint64_t> rx_packets;  // rte_eth_stats, copied by the main lcore every ~100 ms
  std::atomic<uint64_t> rx_bytes;
  std::atomic<uint64_t> tx_packets;
  std::atomic<uint64_t> tx_bytes;
  std::atomic<uint64_t> rx_missed;  // imissed: the NIC had no descriptor
  std::atomic<uint64_t> rx_errors;
  std::atomic<uint64_t> tx_errors;
  std::atomic<uint64_t> rx_nombuf;
  char name[64];  // the DPDK device name
};
static_assert(sizeof(PortStats) == 128);

struct alignas(64) StatsHeader {
  uint64_t magic;
  uint32_t abi_major;
  uint32_t abi_minor;
  uint32_t header_size;
  uint32_t lcore_stats_size;
  uint32_t port_stats_size;
  uint32_t max_lcores;
  uint32_t max_ports;
  uint32_t max_vips;
  uint32_t max_backends;
  uint32_t reserved0;
  uint64_t segment_size;
  uint64_t start_unix_ns;
  std::atomic<uint32_t> writer_pid;
  std::atomic<uint32_t> lcore_count;  // blocks in use: lcores[0, lcore_count)
  std::atomic<uint32_t> port_count;
  uint32_t reserved1;
  std::atomic<uint64_t> heartbeat_ns;       // main lcore, CLOCK_MONOTONIC, ~every ms
  std::atomic<uint64_t> generation_in_use;  // what every worker has moved to
  uint8_t reserved2[32];
};
static_assert(sizeof(StatsHeader) == 128);

struct StatsSegment {
  StatsHeader header;
  PortStats ports[kMaxPorts];
  LcoreStats lcores[kMaxLcores];
};
inline constexpr uint64_t kStatsSegmentSize = sizeof(StatsSegment);

static_assert(std::atomic<uint64_t>::is_always_lock_free &&
                  std::atomic<uint32_t>::is_always_lock_free,
              "shared-memory atomics must be lock-free: another process maps them");
static_assert(std::is_standard_layout_v<ConfigHeader> && std::is_standard_layout_v<SnapshotSlot> &&
              std::is_standard_layout_v<StatsSegment>);

// Single-writer counter bump: a plain load and store, no locked instruction (the lcore that
// owns the block is its only writer).
inline void Bump(std::atomic<uint64_t>& counter, uint64_t n = 1) noexcept {
  counter.store(counter.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
}

}  // namespace fulcrum::shm
