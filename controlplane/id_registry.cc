// IdRegistry: assignment with quarantine, and its JSON form.
#include "controlplane/id_registry.h"

#include <set>

#include "absl/strings/str_format.h"

namespace fulcrum::controlplane {

absl::StatusOr<std::map<std::string, uint16_t>> IdRegistry::Assign(
    const std::vector<std::string>& keys, int64_t now_ms) {
  const std::set<std::string> wanted(keys.begin(), keys.end());
  for (auto& [key, e] : entries_) {
    if (e.released_ms == 0 && wanted.count(key) == 0) e.released_ms = now_ms;
  }
  std::map<std::string, uint16_t> out;
  for (const std::string& key : keys) {
    if (out.count(key) != 0) continue;
    if (auto it = entries_.find(key); it != entries_.end()) {
      it->second.released_ms = 0;
      out[key] = it->second.id;
      continue;
    }
    if (next_fresh_ < capacity_) {
      entries_[key] = Entry{static_cast<uint16_t>(next_fresh_++), 0};
      out[key] = entries_[key].id;
      continue;
    }
    // Every id has been used: recycle the one released longest ago, past its quarantine.
    auto oldest = entries_.end();
    for (auto it = entries_.begin(); it != entries_.end(); ++it) {
      const int64_t r = it->second.released_ms;
      if (r != 0 && now_ms - r >= quarantine_ms_ &&
          (oldest == entries_.end() || r < oldest->second.released_ms)) {
        oldest = it;
      }
    }
    if (oldest == entries_.end()) {
      return absl::ResourceExhaustedError(absl::StrFormat(
          "no free id for '%s': all %d are in use or were released less than %d s ago (their "
          "counters would be attributed to the wrong thing)",
          key, capacity_, quarantine_ms_ / 1000));
    }
    const uint16_t id = oldest->second.id;
    entries_.erase(oldest);
    entries_[key] = Entry{id, 0};
    out[key] = id;
  }
  return out;
}

std::optional<uint16_t> IdRegistry::Find(const std::string& key) const {
  auto it = entries_.find(key);
  if (it == entries_.end()) return std::nullopt;
  return it->second.id;
}

std::vector<uint16_t> IdRegistry::AllIds() const {
  std::vector<uint16_t> out;
  for (const auto& [key, e] : entries_) out.push_back(e.id);
  return out;
}

nlohmann::json IdRegistry::ToJson() const {
  nlohmann::json entries = nlohmann::json::object();
  for (const auto& [key, e] : entries_) {
    entries[key] = {{"id", e.id}, {"released_ms", e.released_ms}};
  }
  return {{"next_fresh", next_fresh_}, {"entries", entries}};
}

absl::StatusOr<IdRegistry> IdRegistry::FromJson(const nlohmann::json& j, uint32_t capacity,
                                                int64_t quarantine_ms) {
  IdRegistry r(capacity, quarantine_ms);
  if (!j.is_object() || !j.contains("next_fresh") || !j["next_fresh"].is_number_unsigned() ||
      !j.contains("entries") || !j["entries"].is_object()) {
    return absl::InvalidArgumentError("id registry: want {next_fresh, entries}");
  }
  r.next_fresh_ = j["next_fresh"].get<uint32_t>();
  if (r.next_fresh_ > capacity) {
    return absl::InvalidArgumentError(
        absl::StrFormat("id registry: next_fresh %d beyond capacity %d", r.next_fresh_, capacity));
  }
  std::set<uint16_t> ids;
  for (const auto& [key, e] : j["entries"].items()) {
    if (!e.is_object() || !e.contains("id") || !e["id"].is_number_unsigned() ||
        !e.contains("released_ms") || !e["released_ms"].is_number_integer()) {
      return absl::InvalidArgumentError(absl::StrFormat("id registry: entry '%s' malformed", key));
    }
    const uint32_t id = e["id"].get<uint32_t>();
    if (id >= r.next_fresh_ || !ids.insert(static_cast<uint16_t>(id)).second) {
      return absl::InvalidArgumentError(
          absl::StrFormat("id registry: entry '%s' has id %d, out of range or repeated", key, id));
    }
    r.entries_[key] = Entry{static_cast<uint16_t>(id), e["released_ms"].get<int64_t>()};
  }
  return r;
}

}  // namespace fulcrum::controlplane
