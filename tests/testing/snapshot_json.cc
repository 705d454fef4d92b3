// Snapshots from JSON.
#include "tests/testing/snapshot_json.h"

#include <cstring>
#include <string>

#include "absl/strings/str_format.h"
#include "dataplane/core/encap.h"
#include "dataplane/core/flow_hash.h"

namespace fulcrum::testing {
namespace {

using nlohmann::json;

absl::StatusOr<IpAddress> Address(const json& j, const char* field) {
  if (!j.contains(field) || !j[field].is_string()) {
    return absl::InvalidArgumentError(absl::StrFormat("%s: missing", field));
  }
  return IpAddress::Parse(j[field].get<std::string>());
}

absl::Status Mac(const std::string& text, uint8_t* out) {
  const std::optional<MacAddress> mac = ParseMac(text);
  if (!mac.has_value()) {
    return absl::InvalidArgumentError(absl::StrFormat("gateway_mac: '%s' is not a MAC", text));
  }
  std::memcpy(out, mac->data(), 6);
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<SnapshotDescription> DescriptionFromJson(const json& j) {
  try {
    SnapshotDescription d;
    d.generation = j.value("generation", uint64_t{1});
    const json s = j.value("settings", json::object());
    shm::SnapshotSettings& set = d.settings;
    absl::StatusOr<FlowHashKey> key =
        FlowHashKey::FromHex(s.value("hash_key", std::string("0123456789abcdef0123456789abcdef")));
    if (!key.ok()) return key.status();
    std::memcpy(set.hash_key, &key->k0, 8);
    std::memcpy(set.hash_key + 8, &key->k1, 8);
    if (s.contains("source_v4")) {
      absl::StatusOr<IpAddress> a = Address(s, "source_v4");
      if (!a.ok()) return a.status();
      std::memcpy(set.source_v4, a->bytes.data(), 4);
      set.flags |= shm::kSettingsHasSourceV4;
    }
    if (s.contains("source_v6")) {
      absl::StatusOr<IpAddress> a = Address(s, "source_v6");
      if (!a.ok()) return a.status();
      std::memcpy(set.source_v6, a->bytes.data(), 16);
      set.flags |= shm::kSettingsHasSourceV6;
    }
    if (absl::Status st =
            Mac(s.value("gateway_mac", std::string("02:00:00:00:03:01")), set.gateway_mac);
        !st.ok()) {
      return st;
    }
    set.encap = s.value("encap", std::string("ipip")) == "gue" ? shm::EncapKindSetting::kGue
                                                               : shm::EncapKindSetting::kIpip;
    set.gue_port = s.value("gue_port", uint16_t{6080});
    set.mtu = s.value("mtu", uint16_t{1500});
    set.ttl = s.value("ttl", uint8_t{64});
    set.icmp_rate_pps = s.value("icmp_rate_pps", uint32_t{100});
    set.tcp_timeout_s = s.value("tcp_timeout_s", uint32_t{300});
    set.tcp_closing_timeout_s = s.value("tcp_closing_timeout_s", uint32_t{15});
    set.udp_timeout_s = s.value("udp_timeout_s", uint32_t{30});
    for (const json& v : j.value("vips", json::array())) {
      shm::VipSpec spec;
      spec.name = v.value("name", std::string("vip"));
      absl::StatusOr<IpAddress> a = Address(v, "address");
      if (!a.ok()) return a.status();
      spec.address = *a;
      spec.port = v.value("port", uint16_t{80});
      spec.proto = v.value("proto", std::string("tcp")) == "udp" ? 17 : 6;
      spec.fragments = v.value("fragments", std::string("drop")) == "hash-addresses"
                           ? shm::FragmentPolicy::kHashAddresses
                           : shm::FragmentPolicy::kDrop;
      spec.id = v.at("id").get<uint16_t>();
      spec.table_size = v.value("table_size", uint32_t{65537});
      for (const json& b : v.value("backends", json::array())) {
        shm::BackendSpec bs;
        absl::StatusOr<IpAddress> ba = Address(b, "address");
        if (!ba.ok()) return ba.status();
        bs.address = *ba;
        bs.port = b.value("port", uint16_t{0});
        bs.weight = b.value("weight", uint32_t{1});
        const std::string state = b.value("state", std::string("active"));
        bs.state = state == "draining"   ? shm::BackendState::kDraining
                   : state == "down"     ? shm::BackendState::kDown
                   : state == "disabled" ? shm::BackendState::kDisabled
                                         : shm::BackendState::kActive;
        bs.id = b.at("id").get<uint16_t>();
        spec.backends.push_back(bs);
      }
      d.vips.push_back(std::move(spec));
    }
    return d;
  } catch (const json::exception& e) {
    return absl::InvalidArgumentError(absl::StrFormat("snapshot JSON: %s", e.what()));
  }
}

absl::StatusOr<shm::Snapshot> SnapshotFromJson(const json& j) {
  absl::StatusOr<SnapshotDescription> d = DescriptionFromJson(j);
  if (!d.ok()) return d.status();
  return shm::BuildSnapshot(d->generation, d->settings, d->vips);
}

}  // namespace fulcrum::testing
