// Snapshot: an owned copy of one config snapshot, its checksum, how to build one from VIP and
// backend specs (Maglev included), and the validation fulcrumd applies before using one.
//
// The control plane builds with BuildSnapshot() and publishes with ConfigWriter; fulcrumd copies
// with ConfigReader and trusts nothing until ValidateSnapshot() has passed. Both sides use this
// one implementation, so what the writer produces is by construction what the reader accepts;
// the reader's checks exist for what the writer did not produce (corruption, another build,
// a hostile process with access to the segment). Control code: allocates, never per packet.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "dataplane/core/encap.h"
#include "dataplane/core/ip_address.h"
#include "dataplane/shm/abi.h"

namespace fulcrum::shm {

using Table = std::vector<TableEntry>;

struct Snapshot {
  SnapshotHeader header{};  // counts, offsets, digests and checksum follow the vectors: Seal()
  std::vector<VipRecord> vips;
  std::vector<BackendRecord> backends;
  // tables[i] is vips[i]'s Maglev table (table_size entries; empty when table_size is 0).
  // Shared: a reader reuses an unchanged table from the previous snapshot instead of copying.
  std::vector<std::shared_ptr<const Table>> tables;

  // Sets the counts, each VIP's table_begin and table_digest, and the checksum (writer side).
  void Seal();
  // The VIP's backend records.
  std::span<const BackendRecord> BackendsOf(const VipRecord& v) const {
    return std::span<const BackendRecord>(backends).subspan(v.backend_begin, v.backend_count);
  }
};

// XXH3-64 over the header (with checksum taken as 0), the VIP records and the backend records.
uint64_t SnapshotChecksum(const SnapshotHeader& header, std::span<const VipRecord> vips,
                          std::span<const BackendRecord> backends);
// XXH3-64 over one VIP's backend records and its table entries.
uint64_t TableDigest(std::span<const BackendRecord> vip_backends,
                     std::span<const TableEntry> table);

// --- Building (control plane, tests) --------------------------------------------------------

struct BackendSpec {
  IpAddress address;
  uint16_t port = 0;
  uint32_t weight = 1;
  BackendState state = BackendState::kActive;
  uint16_t id = 0;  // stable; unique within the snapshot
};

struct VipSpec {
  std::string name;
  IpAddress address;
  uint16_t port = 0;
  uint8_t proto = 6;
  FragmentPolicy fragments = FragmentPolicy::kDrop;
  uint16_t id = 0;  // stable; unique within the snapshot
  uint32_t table_size = 65537;
  std::vector<BackendSpec> backends;
};

// Lays out the records and builds every VIP's Maglev table (active backends with weight > 0;
// none: an empty table, table_size 0). InvalidArgument with the VIP's name for anything
// ValidateSnapshot would refuse; ResourceExhausted beyond the segment's capacity.
absl::StatusOr<Snapshot> BuildSnapshot(uint64_t generation, const SnapshotSettings& settings,
                                       std::span<const VipSpec> vips);

// --- Validation (fulcrumd) ------------------------------------------------------------------

struct Verdict {
  SnapshotReject reason = SnapshotReject::kNone;
  std::string detail;  // where and what, e.g. "vips[2].table_size: 65536 is not prime"

  bool ok() const { return reason == SnapshotReject::kNone; }
};

// Every bound and field: counts, settings, each VIP and backend record, the ranges that tie
// them together (each VIP's backends and table slots follow the previous VIP's, in order), the
// table sizes and every table entry. Tables with `trusted[i]` set are not walked again, nor
// their sizes tested for primality (the costliest check of a VIP record): the
// reader reused them from an earlier validated snapshot for a VIP with identical backend
// records. Checksums and digests are the copy's business (ConfigReader).
Verdict ValidateSnapshot(const Snapshot& s, const std::vector<bool>* trusted = nullptr);

// The encapsulation settings of a snapshot, as the data plane builds its outer headers from
// them (the control plane's probes through the tunnel use the same). src_mac is left zero: the
// sender fills in its port's own address.
EncapConfig EncapConfigOf(const SnapshotSettings& settings);

}  // namespace fulcrum::shm
