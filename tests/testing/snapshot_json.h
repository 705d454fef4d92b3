// Snapshots from JSON, for the data plane's tests, benchmarks and the test writer tool.
//
// {"generation": 1,
//  "settings": {"hash_key": "<32 hex>", "source_v4": "10.10.3.2", "source_v6": "fd00:3::2",
//               "gateway_mac": "02:00:00:00:03:01", "encap": "ipip"|"gue", "gue_port": 6080,
//               "mtu": 1500, "ttl": 64, "icmp_rate_pps": 100,
//               "tcp_timeout_s": 300, "tcp_closing_timeout_s": 15, "udp_timeout_s": 30},
//  "vips": [{"name": "web", "address": "10.10.0.100", "port": 80, "proto": "tcp"|"udp",
//            "fragments": "drop"|"hash-addresses", "id": 0, "table_size": 65537,
//            "backends": [{"address": "10.10.2.11", "port": 0, "weight": 1,
//                          "state": "active"|"draining"|"down"|"disabled", "id": 0}]}]}
// Every field but addresses, ids and names has the default shown. This is a test writer's
// format, not the operator's config (that is the control plane's YAML).
#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "dataplane/shm/snapshot.h"
#include "nlohmann/json.hpp"

namespace fulcrum::testing {

struct SnapshotDescription {
  uint64_t generation = 1;
  shm::SnapshotSettings settings{};
  std::vector<shm::VipSpec> vips;
};

absl::StatusOr<SnapshotDescription> DescriptionFromJson(const nlohmann::json& j);
// DescriptionFromJson, then BuildSnapshot.
absl::StatusOr<shm::Snapshot> SnapshotFromJson(const nlohmann::json& j);

}  // namespace fulcrum::testing
