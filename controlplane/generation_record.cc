// GenerationRecord: names and the JSON form stored in the state directory.
#include "controlplane/generation_record.h"

#include <array>
#include <utility>

#include "absl/strings/str_format.h"

namespace fulcrum::controlplane {
namespace {

constexpr std::array<std::pair<Cause, std::string_view>, 9> kCauses = {{
    {Cause::kInitial, "initial"},
    {Cause::kApply, "apply"},
    {Cause::kRollback, "rollback"},
    {Cause::kAutoRollback, "auto_rollback"},
    {Cause::kDrain, "drain"},
    {Cause::kUndrain, "undrain"},
    {Cause::kWeight, "weight"},
    {Cause::kHealth, "health"},
    {Cause::kRestore, "restore"},
}};

constexpr std::array<std::pair<AckResult, std::string_view>, 5> kResults = {{
    {AckResult::kPending, "pending"},
    {AckResult::kAcked, "acked"},
    {AckResult::kNoDataplane, "no_dataplane"},
    {AckResult::kTimeout, "timeout"},
    {AckResult::kRejected, "rejected"},
}};

}  // namespace

std::string_view CauseName(Cause c) {
  for (const auto& [cause, name] : kCauses) {
    if (cause == c) return name;
  }
  return "unknown";
}

std::optional<Cause> CauseFromName(std::string_view name) {
  for (const auto& [cause, n] : kCauses) {
    if (n == name) return cause;
  }
  return std::nullopt;
}

bool IsOperatorChange(Cause c) { return c != Cause::kHealth && c != Cause::kRestore; }

std::string_view AckResultName(AckResult r) {
  for (const auto& [result, name] : kResults) {
    if (result == r) return name;
  }
  return "unknown";
}

nlohmann::json OverridesToJson(const Overrides& o) {
  nlohmann::json out = nlohmann::json::object();
  for (const auto& [key, ov] : o) {
    nlohmann::json j = nlohmann::json::object();
    if (ov.state.has_value()) j["state"] = OperatorStateName(*ov.state);
    if (ov.weight.has_value()) j["weight"] = *ov.weight;
    out[key] = j;
  }
  return out;
}

absl::StatusOr<Overrides> OverridesFromJson(const nlohmann::json& j) {
  if (!j.is_object()) return absl::InvalidArgumentError("overrides: want an object");
  try {
    Overrides out;
    for (const auto& [key, v] : j.items()) {
      BackendOverride ov;
      if (v.contains("state")) {
        const std::string s = v["state"].get<std::string>();
        if (s == "active") {
          ov.state = OperatorState::kActive;
        } else if (s == "draining") {
          ov.state = OperatorState::kDraining;
        } else if (s == "disabled") {
          ov.state = OperatorState::kDisabled;
        } else {
          return absl::InvalidArgumentError(absl::StrFormat("overrides[%s].state: '%s'", key, s));
        }
      }
      if (v.contains("weight")) ov.weight = v["weight"].get<uint32_t>();
      out[key] = ov;
    }
    return out;
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(std::string("overrides: ") + e.what());
  }
}

nlohmann::json RecordToJson(const GenerationRecord& r) {
  return {{"generation", r.generation},
          {"cause", CauseName(r.cause)},
          {"created_unix_ms", r.created_unix_ms},
          {"who",
           {{"uid", r.who.uid},
            {"gid", r.who.gid},
            {"pid", r.who.pid},
            {"user", r.who.user},
            {"reported_user", r.who.reported_user}}},
          {"config_yaml", r.config_yaml},
          {"overrides", OverridesToJson(r.overrides)},
          {"down", r.down},
          {"origin", r.origin},
          {"rollback_of", r.rollback_of},
          {"reason", r.reason},
          {"forced", r.forced},
          {"plan_summary", r.plan_summary},
          {"result", AckResultName(r.result)},
          {"result_detail", r.result_detail},
          {"watch", r.watch}};
}

absl::StatusOr<GenerationRecord> RecordFromJson(const nlohmann::json& j) {
  // nlohmann throws on type mismatches; a record is input (a disk can lie): catch here.
  try {
    GenerationRecord r;
    r.generation = j.at("generation").get<uint64_t>();
    const std::optional<Cause> cause = CauseFromName(j.at("cause").get<std::string>());
    if (!cause.has_value()) return absl::InvalidArgumentError("record: unknown cause");
    r.cause = *cause;
    r.created_unix_ms = j.at("created_unix_ms").get<int64_t>();
    const nlohmann::json& who = j.at("who");
    r.who.uid = who.at("uid").get<uint32_t>();
    r.who.gid = who.at("gid").get<uint32_t>();
    r.who.pid = who.at("pid").get<int32_t>();
    r.who.user = who.at("user").get<std::string>();
    r.who.reported_user = who.at("reported_user").get<std::string>();
    r.config_yaml = j.at("config_yaml").get<std::string>();
    absl::StatusOr<Overrides> ov = OverridesFromJson(j.at("overrides"));
    if (!ov.ok()) return ov.status();
    r.overrides = *std::move(ov);
    r.down = j.at("down").get<std::vector<std::string>>();
    r.origin = j.at("origin").get<uint64_t>();
    r.rollback_of = j.at("rollback_of").get<uint64_t>();
    r.reason = j.at("reason").get<std::string>();
    r.forced = j.at("forced").get<bool>();
    r.plan_summary = j.at("plan_summary");
    const std::string result = j.at("result").get<std::string>();
    bool known = false;
    for (AckResult a : {AckResult::kPending, AckResult::kAcked, AckResult::kNoDataplane,
                        AckResult::kTimeout, AckResult::kRejected}) {
      if (AckResultName(a) == result) {
        r.result = a;
        known = true;
      }
    }
    if (!known) return absl::InvalidArgumentError("record: unknown result " + result);
    r.result_detail = j.at("result_detail").get<std::string>();
    r.watch = j.at("watch");
    if (r.generation == 0) return absl::InvalidArgumentError("record: generation 0");
    return r;
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(std::string("record: ") + e.what());
  }
}

}  // namespace fulcrum::controlplane
