// GenerationRecord: one published generation as the state directory keeps it: the config text
// and operator overrides it ran with, why it was made, by whom and when, what the plan said,
// and what the data plane answered. Enough to rebuild its snapshot and to roll back to it.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "controlplane/effective_state.h"
#include "nlohmann/json.hpp"

namespace fulcrum::controlplane {

enum class Cause : uint8_t {
  kInitial,       // the first config of an empty state directory (`serve --config`)
  kApply,         // `fulcrumctl apply`
  kRollback,      // `fulcrumctl rollback`
  kAutoRollback,  // `apply --watch` found a problem
  kDrain,         // `fulcrumctl backend drain|undrain|weight`
  kUndrain,
  kWeight,
  kHealth,   // a health check changed a backend's state (same config)
  kRestore,  // republished at start (the segment was gone or held something else)
};
std::string_view CauseName(Cause c);
std::optional<Cause> CauseFromName(std::string_view name);
// Operator changes are what `rollback` steps over; health and restore records are not.
bool IsOperatorChange(Cause c);

enum class AckResult : uint8_t {
  kPending,      // published (or about to be); no answer recorded yet
  kAcked,        // the data plane runs it
  kNoDataplane,  // published while no data plane was attached
  kTimeout,      // a data plane was attached but did not answer in time
  kRejected,     // the data plane refused it and kept the previous one
};
std::string_view AckResultName(AckResult r);

struct Who {
  uint32_t uid = 0;
  uint32_t gid = 0;
  int32_t pid = 0;
  std::string user;           // from uid
  std::string reported_user;  // what the client said (SUDO_USER / USER): informative only
};

struct GenerationRecord {
  uint64_t generation = 0;
  Cause cause = Cause::kApply;
  int64_t created_unix_ms = 0;
  Who who;
  std::string config_yaml;
  Overrides overrides;
  std::vector<std::string> down;  // probe targets that were down, for the reader
  uint64_t origin = 0;            // the operator change whose config and overrides these are
  uint64_t rollback_of = 0;       // rollbacks: the generation restored
  std::string reason;             // automatic changes: why
  bool forced = false;
  nlohmann::json plan_summary = nlohmann::json::object();
  AckResult result = AckResult::kPending;
  std::string result_detail;
  nlohmann::json watch = nullptr;  // apply --watch: its outcome
};

nlohmann::json RecordToJson(const GenerationRecord& r);
absl::StatusOr<GenerationRecord> RecordFromJson(const nlohmann::json& j);
nlohmann::json OverridesToJson(const Overrides& o);
absl::StatusOr<Overrides> OverridesFromJson(const nlohmann::json& j);

}  // namespace fulcrum::controlplane
