// Snapshot: checksum, building from specs, validation.
#include "dataplane/shm/snapshot.h"

#define XXH_STATIC_LINKING_ONLY  // XXH3_state_t on the stack
#include <xxhash.h>

#include <algorithm>
#include <cstring>
#include <set>
#include <tuple>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "dataplane/core/flow_table.h"
#include "dataplane/core/maglev.h"

namespace fulcrum::shm {
namespace {

bool AllZero(const uint8_t* p, size_t n) {
  return std::all_of(p, p + n, [](uint8_t b) { return b == 0; });
}

IpAddress ToIp(const uint8_t (&bytes)[16], Family family) {
  IpAddress ip;
  std::memcpy(ip.bytes.data(), bytes, 16);
  ip.v6 = family == Family::kIpv6;
  return ip;
}

Verdict Reject(SnapshotReject reason, std::string detail) {
  return Verdict{reason, std::move(detail)};
}

bool ValidFamily(Family f) { return f == Family::kIpv4 || f == Family::kIpv6; }

// An address record: the family is 4 or 6, an IPv4 address keeps bytes 4..15 zero, and the
// address is not all zero.
bool ValidAddress(const uint8_t (&address)[16], Family family) {
  if (!ValidFamily(family)) return false;
  if (family == Family::kIpv4 && !AllZero(address + 4, 12)) return false;
  return !AllZero(address, 16);
}

Verdict ValidateSettings(const SnapshotSettings& s) {
  if (s.encap != EncapKindSetting::kIpip && s.encap != EncapKindSetting::kGue) {
    return Reject(SnapshotReject::kSettings,
                  absl::StrFormat("settings.encap: unknown value %d", static_cast<int>(s.encap)));
  }
  if (s.ttl == 0) return Reject(SnapshotReject::kSettings, "settings.ttl: 0");
  if (s.encap == EncapKindSetting::kGue && s.gue_port == 0) {
    return Reject(SnapshotReject::kSettings, "settings.gue_port: 0 with encap gue");
  }
  if (s.mtu < 576 || s.mtu > 9216) {
    return Reject(SnapshotReject::kSettings,
                  absl::StrFormat("settings.mtu: %d is outside 576..9216", s.mtu));
  }
  if ((s.flags & ~(kSettingsHasSourceV4 | kSettingsHasSourceV6)) != 0) {
    return Reject(SnapshotReject::kSettings,
                  absl::StrFormat("settings.flags: unknown bits %#x", s.flags));
  }
  if ((s.flags & kSettingsHasSourceV4) != 0 && AllZero(s.source_v4, 4)) {
    return Reject(SnapshotReject::kSettings, "settings.source_v4: 0.0.0.0");
  }
  if ((s.flags & kSettingsHasSourceV6) != 0 && AllZero(s.source_v6, 16)) {
    return Reject(SnapshotReject::kSettings, "settings.source_v6: ::");
  }
  if (AllZero(s.gateway_mac, 6) || (s.gateway_mac[0] & 1) != 0) {
    return Reject(SnapshotReject::kSettings, "settings.gateway_mac: not a unicast MAC address");
  }
  const FlowTimeouts timeouts{s.tcp_timeout_s, s.tcp_closing_timeout_s, s.udp_timeout_s};
  if (absl::Status st = FlowTable::ValidateTimeouts(timeouts); !st.ok()) {
    return Reject(SnapshotReject::kSettings, absl::StrCat("settings: ", st.message()));
  }
  return {};
}

}  // namespace

uint64_t SnapshotChecksum(const SnapshotHeader& header, std::span<const VipRecord> vips,
                          std::span<const BackendRecord> backends) {
  SnapshotHeader h = header;
  h.checksum = 0;
  XXH3_state_t state;
  XXH3_64bits_reset(&state);
  XXH3_64bits_update(&state, &h, sizeof(h));
  XXH3_64bits_update(&state, vips.data(), vips.size_bytes());
  XXH3_64bits_update(&state, backends.data(), backends.size_bytes());
  return XXH3_64bits_digest(&state);
}

uint64_t TableDigest(std::span<const BackendRecord> vip_backends,
                     std::span<const TableEntry> table) {
  XXH3_state_t state;
  XXH3_64bits_reset(&state);
  XXH3_64bits_update(&state, vip_backends.data(), vip_backends.size_bytes());
  XXH3_64bits_update(&state, table.data(), table.size_bytes());
  return XXH3_64bits_digest(&state);
}

void Snapshot::Seal() {
  header.vip_count = static_cast<uint32_t>(vips.size());
  header.backend_count = static_cast<uint32_t>(backends.size());
  uint32_t next = 0;
  for (size_t i = 0; i < vips.size(); ++i) {
    const Table& t = *tables[i];
    vips[i].table_begin = next;
    vips[i].table_size = static_cast<uint32_t>(t.size());
    vips[i].table_digest = TableDigest(BackendsOf(vips[i]), t);
    next += static_cast<uint32_t>(t.size());
  }
  header.table_entries = next;
  header.checksum = SnapshotChecksum(header, vips, backends);
}

absl::StatusOr<Snapshot> BuildSnapshot(uint64_t generation, const SnapshotSettings& settings,
                                       std::span<const VipSpec> vips) {
  if (vips.size() > kMaxVips) {
    return absl::ResourceExhaustedError(
        absl::StrFormat("%d VIPs: the config segment holds at most %d", vips.size(), kMaxVips));
  }
  Snapshot s;
  s.header.generation = generation;
  s.header.settings = settings;
  size_t table_entries = 0;
  for (const VipSpec& spec : vips) {
    if (spec.backends.size() > kMaxBackendsPerVip) {
      return absl::ResourceExhaustedError(absl::StrFormat("VIP %s: %d backends, at most %d per VIP",
                                                          spec.name, spec.backends.size(),
                                                          kMaxBackendsPerVip));
    }
    if (s.backends.size() + spec.backends.size() > kMaxBackends) {
      return absl::ResourceExhaustedError(absl::StrFormat(
          "VIP %s: more than %d backends in all VIPs together", spec.name, kMaxBackends));
    }
    VipRecord v{};
    std::memcpy(v.address, spec.address.bytes.data(), 16);
    v.port = spec.port;
    v.proto = spec.proto;
    v.family = spec.address.v6 ? Family::kIpv6 : Family::kIpv4;
    v.fragments = spec.fragments;
    v.id = spec.id;
    v.backend_begin = static_cast<uint32_t>(s.backends.size());
    v.backend_count = static_cast<uint32_t>(spec.backends.size());
    // NUL-padded (the record is zeroed), not terminated when the name fills it.
    std::memcpy(v.name, spec.name.data(), std::min<size_t>(spec.name.size(), kNameLen));

    std::vector<MaglevBackend> maglev;
    for (const BackendSpec& b : spec.backends) {
      BackendRecord r{};
      std::memcpy(r.address, b.address.bytes.data(), 16);
      r.family = b.address.v6 ? Family::kIpv6 : Family::kIpv4;
      r.state = b.state;
      r.id = b.id;
      r.weight = b.weight;
      r.port = b.port;
      s.backends.push_back(r);
      maglev.push_back({.address = b.address,
                        .port = b.port,
                        .weight = b.weight,
                        .active = b.state == BackendState::kActive});
    }
    absl::StatusOr<MaglevTable> table = BuildMaglevTable(maglev, spec.table_size);
    if (!table.ok()) {
      return absl::InvalidArgumentError(
          absl::StrFormat("VIP %s: %s", spec.name, table.status().message()));
    }
    table_entries += table->slots.size();
    if (table_entries > kMaxTableEntries) {
      return absl::ResourceExhaustedError(
          absl::StrFormat("VIP %s: the Maglev tables of all VIPs together exceed %d slots",
                          spec.name, kMaxTableEntries));
    }
    s.tables.push_back(std::make_shared<const Table>(table->slots.begin(), table->slots.end()));
    s.vips.push_back(v);
  }
  s.Seal();
  if (Verdict verdict = ValidateSnapshot(s); !verdict.ok()) {
    return absl::InvalidArgumentError(absl::StrFormat("the snapshot would be rejected (%s): %s",
                                                      ReasonName(verdict.reason), verdict.detail));
  }
  return s;
}

Verdict ValidateSnapshot(const Snapshot& s, const std::vector<bool>* trusted) {
  const SnapshotHeader& h = s.header;
  if (h.vip_count != s.vips.size() || h.backend_count != s.backends.size() ||
      s.tables.size() != s.vips.size() || h.vip_count > kMaxVips ||
      h.backend_count > kMaxBackends || h.table_entries > kMaxTableEntries) {
    return Reject(SnapshotReject::kCounts,
                  absl::StrFormat("%d VIPs, %d backends, %d table entries (capacity %d, %d, %d)",
                                  h.vip_count, h.backend_count, h.table_entries, kMaxVips,
                                  kMaxBackends, kMaxTableEntries));
  }
  if (h.generation == 0) return Reject(SnapshotReject::kCounts, "generation 0");
  if (Verdict v = ValidateSettings(h.settings); !v.ok()) return v;

  std::vector<bool> backend_ids(kMaxBackends, false);
  for (size_t i = 0; i < s.backends.size(); ++i) {
    const BackendRecord& b = s.backends[i];
    if (!ValidAddress(b.address, b.family)) {
      return Reject(
          SnapshotReject::kBackend,
          absl::StrFormat("backends[%d]: family %d with address %s", i, static_cast<int>(b.family),
                          ToIp(b.address, b.family).ToString()));
    }
    if (b.state > BackendState::kDisabled) {
      return Reject(
          SnapshotReject::kBackend,
          absl::StrFormat("backends[%d].state: unknown value %d", i, static_cast<int>(b.state)));
    }
    if (b.id >= kMaxBackends) {
      return Reject(
          SnapshotReject::kBackend,
          absl::StrFormat("backends[%d].id: %d, ids are below %d", i, b.id, kMaxBackends));
    }
    if (backend_ids[b.id]) {
      return Reject(SnapshotReject::kDuplicateBackend,
                    absl::StrFormat("backends[%d].id: %d appears twice", i, b.id));
    }
    backend_ids[b.id] = true;
    const bool has_source =
        (h.settings.flags &
         (b.family == Family::kIpv4 ? kSettingsHasSourceV4 : kSettingsHasSourceV6)) != 0;
    if (!has_source) {
      return Reject(SnapshotReject::kEncap,
                    absl::StrFormat("backends[%d] %s: no outer source address of its family", i,
                                    ToIp(b.address, b.family).ToString()));
    }
  }

  std::vector<bool> vip_ids(kMaxVips, false);
  std::set<std::tuple<std::array<uint8_t, 16>, Family, uint8_t, uint16_t>> services;
  uint32_t next_backend = 0;
  uint32_t next_table = 0;
  std::vector<uint8_t> eligible;
  for (size_t i = 0; i < s.vips.size(); ++i) {
    const VipRecord& v = s.vips[i];
    if (!ValidAddress(v.address, v.family) || (v.proto != 6 && v.proto != 17) || v.id >= kMaxVips ||
        (v.fragments != FragmentPolicy::kDrop && v.fragments != FragmentPolicy::kHashAddresses)) {
      return Reject(
          SnapshotReject::kVip,
          absl::StrFormat("vips[%d]: family %d, address %s, proto %d, id %d, "
                          "fragments %d",
                          i, static_cast<int>(v.family), ToIp(v.address, v.family).ToString(),
                          v.proto, v.id, static_cast<int>(v.fragments)));
    }
    std::array<uint8_t, 16> address;
    std::memcpy(address.data(), v.address, 16);
    if (vip_ids[v.id] || !services.emplace(address, v.family, v.proto, v.port).second) {
      return Reject(
          SnapshotReject::kDuplicateVip,
          absl::StrFormat("vips[%d] (%s:%d/%d, id %d) repeats an earlier VIP's "
                          "service or id",
                          i, ToIp(v.address, v.family).ToString(), v.port, v.proto, v.id));
    }
    vip_ids[v.id] = true;
    if (v.backend_begin != next_backend || v.backend_count > kMaxBackendsPerVip ||
        uint64_t{v.backend_begin} + v.backend_count > s.backends.size()) {
      return Reject(SnapshotReject::kBackendRange,
                    absl::StrFormat("vips[%d]: backends [%d, +%d) (want them to start at %d, "
                                    "within %d backends, at most %d)",
                                    i, v.backend_begin, v.backend_count, next_backend,
                                    s.backends.size(), kMaxBackendsPerVip));
    }
    next_backend += v.backend_count;
    if (s.tables[i] == nullptr) {
      return Reject(SnapshotReject::kTableRange, absl::StrFormat("vips[%d]: no table", i));
    }
    const Table& table = *s.tables[i];
    if (v.table_begin != next_table || uint64_t{v.table_begin} + v.table_size > h.table_entries ||
        table.size() != v.table_size) {
      return Reject(SnapshotReject::kTableRange,
                    absl::StrFormat("vips[%d]: table [%d, +%d) (want it to start at %d, within "
                                    "%d entries)",
                                    i, v.table_begin, v.table_size, next_table, h.table_entries));
    }
    next_table += v.table_size;
    const bool walk = trusted == nullptr || i >= trusted->size() || !(*trusted)[i];
    // A trusted table's size was checked when it came in (and is equal, checked above).
    if (walk && v.table_size != 0) {
      if (absl::Status st = CheckMaglevTableSize(v.table_size); !st.ok()) {
        return Reject(SnapshotReject::kTableSize,
                      absl::StrFormat("vips[%d].table_size: %s", i, st.message()));
      }
    }
    const BackendRecord* vb = s.backends.data() + v.backend_begin;
    // The walk is one load a slot: eligible[e] is 1 for an active backend of non-zero weight, 0
    // for any other, and every entry past the backend list reads eligible[count], 0. The slot at
    // fault is looked for only when one is wrong.
    if (walk) {
      eligible.assign(v.backend_count + 1, 0);
      for (uint32_t b = 0; b < v.backend_count; ++b) {
        eligible[b] = vb[b].state == BackendState::kActive && vb[b].weight != 0;
      }
      uint8_t all = 1;
      for (uint32_t slot = 0; slot < v.table_size; ++slot) {
        all &= eligible[std::min<uint32_t>(table[slot], v.backend_count)];
      }
      for (uint32_t slot = 0; all == 0 && slot < v.table_size; ++slot) {
        const TableEntry e = table[slot];
        if (e >= v.backend_count) {
          return Reject(SnapshotReject::kTableEntry,
                        absl::StrFormat("vips[%d] table slot %d: backend %d of %d", i, slot, e,
                                        v.backend_count));
        }
        if (eligible[e] == 0) {
          return Reject(
              SnapshotReject::kTableNotEligible,
              absl::StrFormat("vips[%d] table slot %d: backend %d (id %d) is %s", i, slot, e,
                              vb[e].id, vb[e].weight == 0 ? "of weight 0" : "not active"));
        }
      }
    }
    // The one encapsulation with no stock decapsulator: IPv6 inside IPv4 by IPIP.
    if (v.family == Family::kIpv6 && h.settings.encap == EncapKindSetting::kIpip) {
      for (uint32_t j = 0; j < v.backend_count; ++j) {
        if (vb[j].family == Family::kIpv4) {
          return Reject(SnapshotReject::kEncap,
                        absl::StrFormat("vips[%d] is IPv6 and backend %d (id %d) IPv4: IPIP "
                                        "cannot carry IPv6 in IPv4 (use GUE)",
                                        i, j, vb[j].id));
        }
      }
    }
  }
  if (next_backend != s.backends.size() || next_table != h.table_entries) {
    return Reject(SnapshotReject::kBackendRange,
                  absl::StrFormat("%d backends and %d table entries, of which the VIPs use %d "
                                  "and %d",
                                  s.backends.size(), h.table_entries, next_backend, next_table));
  }
  return {};
}

EncapConfig EncapConfigOf(const SnapshotSettings& set) {
  EncapConfig encap;
  std::memcpy(encap.gateway_mac.data(), set.gateway_mac, 6);
  encap.ttl = set.ttl;
  encap.type = set.encap == EncapKindSetting::kGue ? EncapType::kGue : EncapType::kIpip;
  encap.gue_port = set.gue_port;
  if ((set.flags & kSettingsHasSourceV4) != 0) {
    encap.source_v4 = IpAddress::FromBytes(set.source_v4, false);
  }
  if ((set.flags & kSettingsHasSourceV6) != 0) {
    encap.source_v6 = IpAddress::FromBytes(set.source_v6, true);
  }
  return encap;
}

}  // namespace fulcrum::shm
