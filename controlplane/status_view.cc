// StatusView: shares, rates and alerts from two stats samples and the published state.
#include "controlplane/status_view.h"

#include <algorithm>

#include "absl/strings/str_format.h"
#include "controlplane/stats_history.h"
#include "controlplane/watch_evaluator.h"

namespace fulcrum::controlplane {
namespace {

using nlohmann::json;

double AgeSeconds(uint64_t now_ns, uint64_t then_ns) {
  if (then_ns == 0) return -1;
  return now_ns > then_ns ? static_cast<double>(now_ns - then_ns) / 1e9 : 0;
}

uint64_t Delta(uint64_t a, uint64_t b) { return b >= a ? b - a : 0; }

}  // namespace

json BuildStatus(const StatusInput& in) {
  std::vector<Alert> alerts;
  const StatsSample* latest = in.latest != nullptr && in.latest->attached ? in.latest : nullptr;
  const StatsSample* base = latest != nullptr ? in.base : nullptr;
  const Rates rates = base != nullptr ? RatesBetween(*base, *latest) : Rates{};

  // --- data plane ---
  const double reader_age = AgeSeconds(in.now_mono_ns, in.reader.heartbeat_ns);
  const bool reader_alive = in.reader.pid != 0 && reader_age >= 0 &&
                            in.now_mono_ns - in.reader.heartbeat_ns < kDataplaneDeadNs;
  json dp = {{"attached", reader_alive},
             {"pid", in.reader.pid},
             {"heartbeat_age_s", reader_age},
             {"acked_generation", in.reader.acked_generation},
             {"rejected_generation", in.reader.rejected_generation},
             {"reject_reason", in.reader.rejected_generation != 0
                                   ? std::string(ReasonName(in.reader.reason))
                                   : std::string()},
             {"reject_detail", in.reader.detail}};
  if (!reader_alive) {
    alerts.push_back(
        {"dataplane_down", "",
         in.reader.pid == 0
             ? "no data plane has attached to the config segment: fulcrumd is not running (or "
               "uses another --shm-prefix); published generations take effect when it starts"
             : absl::StrFormat("fulcrumd (pid %d) has not sent a heartbeat for %.1f s: it is "
                               "stopped or stuck; the last generation it acknowledged is %d",
                               in.reader.pid, reader_age, in.reader.acked_generation)});
  } else if (in.reader.acked_generation < in.published_generation &&
             in.reader.rejected_generation != in.published_generation) {
    alerts.push_back({"dataplane_behind", "",
                      absl::StrFormat("generation %d is published, the data plane runs %d",
                                      in.published_generation, in.reader.acked_generation)});
  }
  if (in.reader.rejected_generation > in.reader.acked_generation) {
    alerts.push_back({"rejected", "",
                      absl::StrFormat("fulcrumd rejected generation %d (%s): %s; it runs %d",
                                      in.reader.rejected_generation, ReasonName(in.reader.reason),
                                      in.reader.detail, in.reader.acked_generation)});
  }
  json stats = {{"attached", latest != nullptr}};
  if (latest == nullptr) {
    stats["error"] = in.latest != nullptr ? in.latest->error : "not sampled yet";
  } else {
    stats["pid"] = latest->pid;
    stats["heartbeat_age_s"] = AgeSeconds(in.now_mono_ns, latest->heartbeat_ns);
    stats["generation_in_use"] = latest->generation_in_use;
    stats["lcores"] = latest->lcores.size();
    stats["flow_table_used"] = latest->flow_table_used;
    stats["flow_table_capacity"] = latest->flow_table_capacity;
    json counters = json::object();
    json counter_rates = json::object();
    for (size_t i = 0; i < shm::kLcoreCounterCount; ++i) {
      const std::string name(ReasonName(static_cast<shm::LcoreCounter>(i)));
      counters[name] = latest->counters[i];
      if (base != nullptr) counter_rates[name] = rates.Of(base->counters[i], latest->counters[i]);
    }
    json drops = json::object();
    json drop_rates = json::object();
    for (size_t i = 0; i < shm::kDropReasonCount; ++i) {
      const std::string name(ReasonName(static_cast<shm::DropReason>(i)));
      drops[name] = latest->drops[i];
      if (base != nullptr) drop_rates[name] = rates.Of(base->drops[i], latest->drops[i]);
    }
    stats["counters"] = counters;
    stats["counter_rates"] = counter_rates;
    stats["drops"] = drops;
    stats["drop_rates"] = drop_rates;
    stats["window_s"] = rates.seconds;
  }
  dp["stats"] = stats;

  // --- VIPs ---
  json vips = json::array();
  if (in.state != nullptr && in.snapshot != nullptr) {
    for (size_t i = 0; i < in.state->vips.size() && i < in.snapshot->vips.size(); ++i) {
      const EffectiveVip& v = in.state->vips[i];
      const shm::Table& table = *in.snapshot->tables[i];
      std::vector<uint32_t> slots(v.backends.size(), 0);
      for (shm::TableEntry e : table) {
        if (e < slots.size()) ++slots[e];
      }
      std::vector<uint64_t> flows(v.backends.size(), 0);
      std::vector<uint64_t> packets(v.backends.size(), 0);
      std::vector<uint64_t> bytes(v.backends.size(), 0);
      uint64_t flow_total = 0;
      uint64_t packet_total = 0;
      if (base != nullptr) {
        for (size_t j = 0; j < v.backends.size(); ++j) {
          auto a = base->backends.find(v.backends[j].id);
          auto b = latest->backends.find(v.backends[j].id);
          if (a == base->backends.end() || b == latest->backends.end()) continue;
          flows[j] = Delta(a->second.new_flows, b->second.new_flows);
          packets[j] = Delta(a->second.packets, b->second.packets);
          bytes[j] = Delta(a->second.bytes, b->second.bytes);
          flow_total += flows[j];
          packet_total += packets[j];
        }
      }
      json backends = json::array();
      std::optional<double> imbalance;
      for (size_t j = 0; j < v.backends.size(); ++j) {
        const EffectiveBackend& b = v.backends[j];
        const double expected = table.empty() ? 0 : double(slots[j]) / double(table.size());
        json jb = {{"name", b.name},
                   {"id", b.id},
                   {"state", OperatorStateName(b.state)},
                   {"overridden", b.overridden},
                   {"health", HealthName(b.health)},
                   {"health_detail", ""},
                   {"health_changed_unix_ms", nullptr},
                   {"published", PublishedStateName(b.published)},
                   {"weight", b.weight},
                   {"slots", slots[j]},
                   {"expected_share", expected},
                   {"observed_flow_share", nullptr},
                   {"observed_packet_share", nullptr},
                   {"new_flow_rate", nullptr},
                   {"packet_rate", nullptr},
                   {"byte_rate", nullptr},
                   {"capacity_cps", nullptr},
                   {"load", nullptr}};
        if (b.health != Health::kUnchecked) {
          if (auto h = in.health.find({b.config.address, b.check_port}); h != in.health.end()) {
            jb["health_detail"] = h->second.last_result;
            jb["health_changed_unix_ms"] = h->second.last_change_unix_ms;
          }
        }
        if (b.config.capacity_cps.has_value()) jb["capacity_cps"] = *b.config.capacity_cps;
        if (base != nullptr) {
          const double rate = rates.Of(0, flows[j]);
          jb["new_flow_rate"] = rate;
          jb["packet_rate"] = rates.Of(0, packets[j]);
          jb["byte_rate"] = rates.Of(0, bytes[j]);
          if (b.config.capacity_cps.has_value()) jb["load"] = rate / *b.config.capacity_cps;
          if (flow_total > 0) {
            const double observed = double(flows[j]) / double(flow_total);
            jb["observed_flow_share"] = observed;
            if (expected > 0) imbalance = std::max(imbalance.value_or(0), observed / expected);
          }
          if (packet_total > 0) {
            jb["observed_packet_share"] = double(packets[j]) / double(packet_total);
          }
        }
        if (b.health == Health::kDown) {
          alerts.push_back(
              {"backend_down", absl::StrFormat("%s/%s", v.config.name, b.name),
               absl::StrFormat("%s: backend %s is down (%s)%s", v.config.name, b.name,
                               jb["health_detail"].get<std::string>(),
                               v.panic ? "; kept in the table by the panic threshold" : "")});
        }
        backends.push_back(std::move(jb));
      }
      json announcement = nullptr;
      if (in.bgp.is_object() && in.bgp.value("configured", false)) {
        for (const json& a : in.bgp["vips"]) {
          if (a["name"] == v.config.name) announcement = a;
        }
        if (announcement.is_object() && announcement["state"] == "withdrawn" &&
            announcement["reason"] != "shutting down") {
          alerts.push_back(
              {"withdrawn", v.config.name,
               absl::StrFormat("%s: this host withdraws %s from BGP: %s", v.config.name,
                               announcement["address"].get<std::string>(),
                               announcement["reason"].get<std::string>())});
        }
      }
      json jv = {{"name", v.config.name},
                 {"announcement", announcement},
                 {"service", ServiceName(v.config)},
                 {"id", v.id},
                 {"table_size", table.size()},
                 {"healthy_fraction", v.healthy_fraction},
                 {"min_healthy", v.config.guards.min_healthy},
                 {"panic", v.panic},
                 {"flows_in_window", flow_total},
                 {"imbalance", nullptr},
                 {"new_flow_rate", nullptr},
                 {"packet_rate", nullptr},
                 {"byte_rate", nullptr},
                 {"drop_rate", nullptr},
                 {"backends", std::move(backends)}};
      if (imbalance.has_value()) jv["imbalance"] = *imbalance;
      if (base != nullptr) {
        auto a = base->vips.find(v.id);
        auto b = latest->vips.find(v.id);
        if (a != base->vips.end() && b != latest->vips.end()) {
          jv["new_flow_rate"] = rates.Of(a->second.new_flows, b->second.new_flows);
          jv["packet_rate"] = rates.Of(a->second.packets, b->second.packets);
          jv["byte_rate"] = rates.Of(a->second.bytes, b->second.bytes);
          jv["drop_rate"] = rates.Of(a->second.drops, b->second.drops);
        }
      }
      if (v.panic) {
        alerts.push_back(
            {"panic", v.config.name,
             absl::StrFormat("%s: only %.0f%% of its serving weight is healthy (min_healthy "
                             "%.0f%%): failing open, down backends keep their table slots",
                             v.config.name, 100 * v.healthy_fraction,
                             100 * v.config.guards.min_healthy)});
      }
      vips.push_back(std::move(jv));
    }
    if (base != nullptr && in.config != nullptr) {
      for (const WatchFinding& f : WatchEvaluator::TrafficFindings(in.config->watch, *in.state,
                                                                   *in.snapshot, *base, *latest)) {
        alerts.push_back({f.kind, absl::StrFormat("%s/%s", f.vip, f.backend), f.message});
      }
    }
  }
  if (in.bgp.is_object() && in.bgp.value("configured", false) &&
      !in.bgp["speaker"].value("reachable", false)) {
    const std::string error = in.bgp["speaker"].value("error", "");
    alerts.push_back({"bgp_speaker", "",
                      absl::StrFormat("bgp speaker unreachable: %s; what it announces is unknown",
                                      error.empty() ? "not told yet" : error)});
  }
  for (const Alert& a : in.extra_alerts) alerts.push_back(a);

  json ja = json::array();
  for (const Alert& a : alerts) {
    ja.push_back({{"kind", a.kind}, {"subject", a.subject}, {"message", a.message}});
  }
  json cp = in.controlplane;
  cp["published_generation"] = in.published_generation;
  if (in.current != nullptr) {
    cp["current"] = {
        {"generation", in.current->generation}, {"cause", CauseName(in.current->cause)},
        {"origin", in.current->origin},         {"created_unix_ms", in.current->created_unix_ms},
        {"user", in.current->who.user},         {"result", AckResultName(in.current->result)}};
  }
  return {{"window_s", rates.seconds},
          {"controlplane", cp},
          {"dataplane", dp},
          {"vips", vips},
          {"bgp", in.bgp.is_object() ? in.bgp : json({{"configured", false}})},
          {"alerts", ja}};
}

}  // namespace fulcrum::controlplane
