// Render: the human-readable forms of what fulcrumctl prints. Each takes the same JSON that
// `--json` prints, so the two outputs can never disagree.
#pragma once

#include <string>

#include "nlohmann/json.hpp"

namespace fulcrum::controlplane {

std::string RenderPlan(const nlohmann::json& plan);
std::string RenderStatus(const nlohmann::json& status);
// The status plus data-plane counters and rates (`fulcrumctl stats`).
std::string RenderStats(const nlohmann::json& status);
std::string RenderHistory(const nlohmann::json& history);
std::string RenderRecord(const nlohmann::json& record);
std::string RenderLookup(const nlohmann::json& lookup);
std::string RenderWatchProgress(const nlohmann::json& progress);

// "12.3%", "-" for null.
std::string Share(const nlohmann::json& v);
std::string Rate(const nlohmann::json& v);
std::string UnixMsText(int64_t ms);

}  // namespace fulcrum::controlplane
