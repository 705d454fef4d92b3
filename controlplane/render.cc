// Render: fixed-width tables for a terminal.
#include "controlplane/render.h"

#include <algorithm>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/time.h"

namespace fulcrum::controlplane {
namespace {

using nlohmann::json;

// A table whose columns size themselves to their widest cell.
class Table {
 public:
  explicit Table(std::vector<std::string> header) { rows_.push_back(std::move(header)); }
  void Row(std::vector<std::string> row) { rows_.push_back(std::move(row)); }
  std::string Render(const std::string& indent = "  ") const {
    std::vector<size_t> width;
    for (const auto& r : rows_) {
      width.resize(std::max(width.size(), r.size()), 0);
      for (size_t i = 0; i < r.size(); ++i) width[i] = std::max(width[i], r[i].size());
    }
    std::string out;
    for (const auto& r : rows_) {
      std::string line = indent;
      for (size_t i = 0; i < r.size(); ++i) {
        line += r[i];
        if (i + 1 < r.size()) line += std::string(width[i] - r[i].size() + 2, ' ');
      }
      while (!line.empty() && line.back() == ' ') line.pop_back();
      out += line + "\n";
    }
    return out;
  }

 private:
  std::vector<std::vector<std::string>> rows_;
};

std::string Str(const json& v) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_null()) return "-";
  return v.dump();
}

std::string Ratio(const json& v) {
  if (!v.is_number()) return "-";
  return absl::StrFormat("%.2f", v.get<double>());
}

std::string Age(const json& v) {
  if (!v.is_number() || v.get<double>() < 0) return "never";
  const double s = v.get<double>();
  if (s < 1) return absl::StrFormat("%.0f ms ago", s * 1000);
  return absl::StrFormat("%.1f s ago", s);
}

}  // namespace

std::string Share(const json& v) {
  if (!v.is_number()) return "-";
  return absl::StrFormat("%.2f%%", 100 * v.get<double>());
}

std::string Rate(const json& v) {
  if (!v.is_number()) return "-";
  const double r = v.get<double>();
  if (r >= 1e6) return absl::StrFormat("%.2fM", r / 1e6);
  if (r >= 1e4) return absl::StrFormat("%.1fk", r / 1e3);
  return absl::StrFormat("%.0f", r);
}

std::string UnixMsText(int64_t ms) {
  return absl::FormatTime("%Y-%m-%d %H:%M:%S UTC", absl::FromUnixMillis(ms), absl::UTCTimeZone());
}

std::string RenderPlan(const json& plan) {
  std::string out;
  const uint64_t against = plan.value("against_generation", uint64_t{0});
  out += against == 0 ? "plan against an empty state (nothing runs yet)\n"
                      : absl::StrFormat("plan against generation %d\n", against);
  for (const json& c : plan["settings_changes"]) out += absl::StrCat("  setting: ", Str(c), "\n");
  for (const json& v : plan["vips"]) {
    const std::string change = Str(v["change"]);
    out += absl::StrFormat("\nVIP %s %s  [%s]  table %s", Str(v["name"]), Str(v["service"]), change,
                           Str(v["table_size"]));
    if (change == "changed" || change == "removed") {
      out += absl::StrFormat("  moved %s of flows", Share(v["moved_fraction"]));
    }
    if (v["new_flow_rate"].is_number()) {
      out += absl::StrFormat("  now %s new flows/s", Rate(v["new_flow_rate"]));
    }
    if (v["panic"].get<bool>()) out += "  PANIC (failing open)";
    out += "\n";
    for (const json& c : v["changes"]) out += absl::StrCat("    ", Str(c), "\n");
    Table t({"", "BACKEND", "CHANGE", "STATE", "HEALTH", "WEIGHT", "SLOTS", "TABLE", "WEIGHT%",
             "WAS", "EXPECTED/S", "CAPACITY", "LOAD"});
    for (const json& b : v["backends"]) {
      std::string state = Str(b["state"]);
      if (b.value("overridden", false)) state += "*";
      if (Str(b["published"]) == "down" && state != "disabled") state += " (down)";
      std::string change_text = Str(b["change"]);
      for (const json& c : b["changes"]) change_text += absl::StrCat(" ", Str(c), ";");
      const bool removed = Str(b["change"]) == "removed";
      t.Row({b["load"].is_number() && b["load"].get<double>() > 1 ? "!" : "", Str(b["name"]),
             change_text, state, Str(b["health"]), Str(b["weight"]),
             removed ? "-" : Str(b["slots"]), removed ? "-" : Share(b["table_share"]),
             removed ? "-" : Share(b["weight_share"]),
             change == "added" ? "-" : Share(b["old_table_share"]), Rate(b["expected_cps"]),
             Rate(b["capacity_cps"]), b["load"].is_number() ? Share(b["load"]) : "-"});
    }
    out += t.Render("    ");
    for (const json& g : v["guards"]) {
      out += absl::StrFormat("    guard %-18s %s  %s\n", Str(g["guard"]),
                             g["ok"].get<bool>() ? "ok  " : "FAIL", Str(g["detail"]));
    }
    for (const json& i : v["inconsistencies"])
      out += absl::StrCat("    INTERNAL ERROR: ", Str(i), "\n");
  }
  out += "\n";
  if (!plan.value("has_changes", true)) {
    out += "no changes\n";
  } else if (plan.value("ok", false)) {
    out += "guards: all pass\n";
  } else {
    out += "guards: REFUSED — apply needs --force:\n";
    for (const json& v : plan["violations"]) out += absl::StrCat("  ", Str(v), "\n");
  }
  out += "(* operator override: fulcrumctl backend ...)\n";
  return out;
}

std::string RenderStatus(const json& status) {
  std::string out;
  const json& dp = status["dataplane"];
  const json& cp = status["controlplane"];
  if (dp["attached"].get<bool>()) {
    out +=
        absl::StrFormat("data plane    fulcrumd pid %s, alive (heartbeat %s), runs generation %s",
                        Str(dp["pid"]), Age(dp["heartbeat_age_s"]), Str(dp["acked_generation"]));
  } else {
    out += absl::StrFormat(
        "data plane    NOT ATTACHED (pid %s, heartbeat %s), last acknowledged "
        "generation %s",
        Str(dp["pid"]), Age(dp["heartbeat_age_s"]), Str(dp["acked_generation"]));
  }
  const json& st = dp["stats"];
  if (st["attached"].get<bool>()) {
    out += absl::StrFormat("; %s lcores use generation %s\n", Str(st["lcores"]),
                           Str(st["generation_in_use"]));
  } else {
    out += absl::StrFormat("; no stats (%s)\n", Str(st.value("error", json(nullptr))));
  }
  out += absl::StrFormat("control plane pid %s, published generation %s", Str(cp["pid"]),
                         Str(cp["published_generation"]));
  if (cp.contains("current")) {
    const json& c = cp["current"];
    out += absl::StrFormat(" (%s by %s, %s)", Str(c["cause"]), Str(c["user"]),
                           UnixMsText(c["created_unix_ms"].get<int64_t>()));
  }
  out += "\n";
  if (cp.contains("watch") && cp["watch"].is_object()) {
    out +=
        absl::StrFormat("watch         generation %s, %.0f s left, rolls back to %s on trouble\n",
                        Str(cp["watch"]["generation"]), cp["watch"]["remaining_s"].get<double>(),
                        Str(cp["watch"]["rollback_to"]));
  }
  out += absl::StrFormat("window        %.1f s\n", status.value("window_s", 0.0));
  if (status.contains("bgp") && status["bgp"].value("configured", false)) {
    const json& sp = status["bgp"]["speaker"];
    out += absl::StrFormat("bgp           host %s, BIRD at %s: %s\n", Str(status["bgp"]["host"]),
                           Str(sp["socket"]),
                           sp["reachable"].get<bool>()
                               ? absl::StrFormat("told %s times, file %s", Str(sp["configures"]),
                                                 Str(sp["include_file"]))
                               : absl::StrCat("UNREACHABLE: ", Str(sp["error"])));
  }
  for (const json& v : status["vips"]) {
    out += absl::StrFormat(
        "\nVIP %s %s  id %s  table %s  new flows %s/s  packets %s/s  "
        "imbalance %s  healthy %s%s\n",
        Str(v["name"]), Str(v["service"]), Str(v["id"]), Str(v["table_size"]),
        Rate(v["new_flow_rate"]), Rate(v["packet_rate"]), Ratio(v["imbalance"]),
        Share(v["healthy_fraction"]), v["panic"].get<bool>() ? "  PANIC (failing open)" : "");
    if (v.contains("announcement") && v["announcement"].is_object()) {
      out += absl::StrFormat("  bgp: %s\n", Str(v["announcement"]["text"]));
    }
    Table t({"BACKEND", "ID", "STATE", "HEALTH", "PUBLISHED", "WEIGHT", "EXPECTED", "FLOWS",
             "PACKETS", "NEW/S", "CAPACITY", "LOAD", "CHECK"});
    for (const json& b : v["backends"]) {
      std::string state = Str(b["state"]);
      if (b.value("overridden", false)) state += "*";
      t.Row({Str(b["name"]), Str(b["id"]), state, Str(b["health"]), Str(b["published"]),
             Str(b["weight"]), Share(b["expected_share"]), Share(b["observed_flow_share"]),
             Share(b["observed_packet_share"]), Rate(b["new_flow_rate"]), Rate(b["capacity_cps"]),
             b["load"].is_number() ? Share(b["load"]) : "-", Str(b["health_detail"])});
    }
    out += t.Render();
  }
  out += "\n";
  if (status["alerts"].empty()) {
    out += "alerts: none\n";
  } else {
    out += absl::StrFormat("alerts (%d):\n", status["alerts"].size());
    for (const json& a : status["alerts"]) {
      out += absl::StrFormat("  [%s] %s\n", Str(a["kind"]), Str(a["message"]));
    }
  }
  return out;
}

std::string RenderStats(const json& status) {
  std::string out = RenderStatus(status);
  const json& st = status["dataplane"]["stats"];
  if (!st["attached"].get<bool>()) return out;
  out += absl::StrFormat("\ndata plane counters (rates over %.1f s)\n", st.value("window_s", 0.0));
  Table t({"COUNTER", "TOTAL", "PER SECOND"});
  for (const auto& [name, value] : st["counters"].items()) {
    t.Row({name, Str(value), Rate(st["counter_rates"].value(name, json(nullptr)))});
  }
  out += t.Render();
  Table d({"DROP REASON", "TOTAL", "PER SECOND"});
  for (const auto& [name, value] : st["drops"].items()) {
    d.Row({name, Str(value), Rate(st["drop_rates"].value(name, json(nullptr)))});
  }
  out += d.Render();
  out += absl::StrFormat("  flow tables: %s of %s entries\n", Str(st["flow_table_used"]),
                         Str(st["flow_table_capacity"]));
  return out;
}

std::string RenderHistory(const json& history) {
  Table t({"", "GEN", "CAUSE", "WHEN", "WHO", "RESULT", "DETAIL"});
  for (const json& r : history["generations"]) {
    std::string who = Str(r["who"]["user"]);
    const std::string reported = Str(r["who"]["reported_user"]);
    if (!reported.empty() && reported != who && reported != "-")
      who += absl::StrCat(" (", reported, ")");
    std::string detail;
    if (r["rollback_of"].get<uint64_t>() != 0) {
      detail += absl::StrFormat("restores %d; ", r["rollback_of"].get<uint64_t>());
    }
    if (r["forced"].get<bool>()) detail += "FORCED past guards; ";
    if (!Str(r["reason"]).empty()) detail += Str(r["reason"]) + "; ";
    if (r["watch"].is_object()) detail += absl::StrCat("watch: ", Str(r["watch"]["outcome"]), "; ");
    if (r["plan_summary"].contains("vips")) {
      for (const json& v : r["plan_summary"]["vips"]) {
        detail += absl::StrFormat("%s %s (moved %s); ", Str(v["name"]), Str(v["change"]),
                                  Share(v["moved_fraction"]));
      }
    }
    if (detail.size() > 2) detail.resize(detail.size() - 2);
    t.Row({r["current"].get<bool>() ? "*" : "", Str(r["generation"]), Str(r["cause"]),
           UnixMsText(r["created_unix_ms"].get<int64_t>()), who, Str(r["result"]), detail});
  }
  std::string out = t.Render("");
  out += absl::StrFormat("(* the generation running now; %s recorded)\n", Str(history["total"]));
  for (const json& w : history["warnings"]) out += absl::StrCat("warning: ", Str(w), "\n");
  return out;
}

std::string RenderRecord(const json& r) {
  std::string out = absl::StrFormat(
      "generation %s%s\ncause       %s\nwhen        %s\nwho         %s (uid %s, pid %s)%s\n"
      "result      %s %s\n",
      Str(r["generation"]), r["current"].get<bool>() ? " (running now)" : "", Str(r["cause"]),
      UnixMsText(r["created_unix_ms"].get<int64_t>()), Str(r["who"]["user"]), Str(r["who"]["uid"]),
      Str(r["who"]["pid"]),
      Str(r["who"]["reported_user"]).empty()
          ? ""
          : absl::StrCat(" reported as ", Str(r["who"]["reported_user"])),
      Str(r["result"]), Str(r["result_detail"]));
  if (r["rollback_of"].get<uint64_t>() != 0) {
    out += absl::StrFormat("restores    generation %s\n", Str(r["rollback_of"]));
  }
  if (!Str(r["reason"]).empty()) out += absl::StrCat("reason      ", Str(r["reason"]), "\n");
  if (r["forced"].get<bool>()) out += "forced      yes (past its guards)\n";
  if (!r["overrides"].empty()) out += absl::StrCat("overrides   ", r["overrides"].dump(), "\n");
  if (!r["down"].empty()) out += absl::StrCat("down        ", r["down"].dump(), "\n");
  if (r["watch"].is_object()) out += absl::StrCat("watch       ", r["watch"].dump(), "\n");
  out += absl::StrCat("plan        ", r["plan_summary"].dump(), "\n");
  out += absl::StrCat("--- config ---\n", Str(r["config_yaml"]));
  return out;
}

std::string RenderLookup(const json& l) {
  std::string out;
  if (l["backend"].is_object()) {
    out += absl::StrFormat(
        "  backend %s (id %s, %s, health %s), slot %s of %s, hash %s, "
        "generation %s\n",
        Str(l["backend"]["name"]), Str(l["backend"]["id"]), Str(l["backend"]["state"]),
        Str(l["backend"]["health"]), Str(l["slot"]), Str(l["table_size"]), Str(l["hash"]),
        Str(l["generation"]));
  }
  return out;
}

std::string RenderWatchProgress(const json& p) {
  if (p.contains("applied")) {
    const json& a = p["applied"];
    return (a.contains("plan") ? RenderPlan(a["plan"]) : std::string()) + Str(p["message"]) + "\n";
  }
  std::string out = absl::StrFormat("watch %5.1f s:", p.value("elapsed_s", 0.0));
  for (const json& v : p["vips"]) {
    out += absl::StrFormat("  %s %s new/s imbalance %s max load %s", Str(v["name"]),
                           Rate(v["new_flow_rate"]), Ratio(v["imbalance"]), Share(v["max_load"]));
  }
  for (const json& f : p["findings"]) out += absl::StrCat("\n  PROBLEM: ", Str(f));
  return out + "\n";
}

}  // namespace fulcrum::controlplane
