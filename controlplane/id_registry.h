// IdRegistry: stable small integer ids for named things (VIPs by name, backends by VIP name,
// address and port). The ids index the data plane's counters, so they must not change while
// a thing exists, and must not pass to another thing soon after it is removed: a reader of the
// counters would otherwise attribute one backend's traffic to another.
//
// Policy: a key keeps its id for as long as the registry remembers it, also while it is
// absent from the config (a backend that comes back gets its old id, and its counters
// continue). A new key takes the lowest id never handed out; only when every id has been used
// does it take the id released longest ago, and only once that release is older than the
// quarantine. Persisted as JSON in the state directory (state_store.h).
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace fulcrum::controlplane {

class IdRegistry {
 public:
  IdRegistry(uint32_t capacity, int64_t quarantine_ms)
      : capacity_(capacity), quarantine_ms_(quarantine_ms) {}

  // Ids for `keys` (each once), keeping the ones already known. Keys the registry knows but
  // `keys` lacks are marked released at `now_ms` (if not already). ResourceExhausted when no
  // id is free.
  absl::StatusOr<std::map<std::string, uint16_t>> Assign(const std::vector<std::string>& keys,
                                                         int64_t now_ms);
  std::optional<uint16_t> Find(const std::string& key) const;

  nlohmann::json ToJson() const;
  // Accepts what ToJson wrote; InvalidArgument (naming the problem) for anything else.
  static absl::StatusOr<IdRegistry> FromJson(const nlohmann::json& j, uint32_t capacity,
                                             int64_t quarantine_ms);

  size_t size() const { return entries_.size(); }
  // Every id the registry remembers (in use or released): the stats sampler reads them all, so
  // that a rollback finds its counters' history.
  std::vector<uint16_t> AllIds() const;

 private:
  struct Entry {
    uint16_t id = 0;
    int64_t released_ms = 0;  // 0 while the key is in use
  };

  uint32_t capacity_;
  int64_t quarantine_ms_;
  uint32_t next_fresh_ = 0;  // ids below this have been handed out at least once
  std::map<std::string, Entry> entries_;
};

}  // namespace fulcrum::controlplane
