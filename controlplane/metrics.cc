// Metrics: Prometheus text format.
#include "controlplane/metrics.h"

#include <map>
#include <set>
#include <string_view>
#include <tuple>
#include <vector>

#include "absl/strings/str_format.h"
#include "dataplane/core/parse.h"

namespace fulcrum::controlplane {
namespace {

using nlohmann::json;

std::string Escape(std::string_view v) {
  std::string out;
  for (char c : v) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

// Collects samples per metric so each family is written once with its HELP and TYPE.
class Exposition {
 public:
  void Add(const std::string& name, std::string_view type, std::string_view help,
           const std::vector<std::pair<std::string, std::string>>& labels, double value) {
    Family& f = families_[name];
    if (f.type.empty()) {
      f.type = type;
      f.help = help;
      order_.push_back(name);
    }
    std::string line = name;
    if (!labels.empty()) {
      line += "{";
      for (size_t i = 0; i < labels.size(); ++i) {
        if (i > 0) line += ",";
        line += absl::StrFormat("%s=\"%s\"", labels[i].first, Escape(labels[i].second));
      }
      line += "}";
    }
    // Prometheus refuses a scrape with a repeated series: keep the first.
    if (!series_.insert(line).second) return;
    line += absl::StrFormat(" %.17g\n", value);
    f.lines += line;
  }
  std::string Render() const {
    std::string out;
    for (const std::string& name : order_) {
      const Family& f = families_.at(name);
      out += absl::StrFormat("# HELP %s %s\n# TYPE %s %s\n%s", name, Escape(f.help), name, f.type,
                             f.lines);
    }
    return out;
  }

 private:
  struct Family {
    std::string type;
    std::string help;
    std::string lines;
  };
  std::map<std::string, Family> families_;
  std::vector<std::string> order_;
  std::set<std::string> series_;
};

double Num(const json& j, double otherwise = 0) {
  return j.is_number() ? j.get<double>() : otherwise;
}

}  // namespace

std::string RenderMetrics(const json& status, const StatsSample* latest) {
  Exposition e;
  const json& cp = status["controlplane"];
  e.Add("fulcrum_controlplane_generation_published", "gauge",
        "the newest generation the control plane published", {}, Num(cp["published_generation"]));
  for (const char* key :
       {"applies", "rollbacks", "auto_rollbacks", "health_republishes", "rejected_applies"}) {
    if (cp.contains("counters") && cp["counters"].contains(key)) {
      e.Add(absl::StrFormat("fulcrum_controlplane_%s_total", key), "counter",
            absl::StrFormat("%s since the control plane started", key), {},
            Num(cp["counters"][key]));
    }
  }
  const json& dp = status["dataplane"];
  e.Add("fulcrum_dataplane_up", "gauge",
        "1 while fulcrumd heartbeats on the config segment (within 2 s)", {},
        dp["attached"].get<bool>() ? 1 : 0);
  e.Add("fulcrum_dataplane_generation_acked", "gauge",
        "the generation the data plane acknowledged (runs)", {}, Num(dp["acked_generation"]));
  e.Add("fulcrum_dataplane_generation_rejected", "gauge",
        "the newest generation the data plane rejected", {}, Num(dp["rejected_generation"]));
  e.Add("fulcrum_dataplane_heartbeat_age_seconds", "gauge",
        "seconds since fulcrumd's last config-segment heartbeat (-1: never)", {},
        Num(dp["heartbeat_age_s"], -1));
  if (latest != nullptr && latest->attached) {
    e.Add("fulcrum_dataplane_generation_in_use", "gauge",
          "the generation every worker lcore has moved to", {},
          static_cast<double>(latest->generation_in_use));
    for (const LcoreSample& l : latest->lcores) {
      const std::vector<std::pair<std::string, std::string>> lc = {
          {"lcore", std::to_string(l.lcore_id)}};
      for (size_t i = 0; i < shm::kLcoreCounterCount; ++i) {
        const auto c = static_cast<shm::LcoreCounter>(i);
        e.Add(absl::StrFormat("fulcrum_dataplane_%s_total", ReasonName(c)), "counter",
              ReasonHelp(c), lc, static_cast<double>(l.counters[i]));
      }
      for (size_t i = 0; i < shm::kDropReasonCount; ++i) {
        const auto r = static_cast<shm::DropReason>(i);
        e.Add("fulcrum_dataplane_drops_total", "counter",
              "packets dropped, by reason (see the reason list in docs/shm.md)",
              {{"lcore", std::to_string(l.lcore_id)}, {"reason", std::string(ReasonName(r))}},
              static_cast<double>(l.drops[i]));
      }
      for (size_t i = 0; i < kParseResultCount; ++i) {
        const auto r = static_cast<ParseResult>(i);
        e.Add("fulcrum_dataplane_parse_total", "counter", "received frames by parse result",
              {{"lcore", std::to_string(l.lcore_id)}, {"result", std::string(ReasonName(r))}},
              static_cast<double>(l.parse[i]));
      }
      e.Add("fulcrum_dataplane_flow_table_entries", "gauge", "flows held by the lcore's table", lc,
            static_cast<double>(l.flow_table_used));
      e.Add("fulcrum_dataplane_flow_table_capacity", "gauge", "capacity of the lcore's table", lc,
            static_cast<double>(l.flow_table_capacity));
      e.Add("fulcrum_dataplane_lcore_generation", "gauge", "the generation this lcore uses", lc,
            static_cast<double>(l.generation));
    }
    for (const PortSample& p : latest->ports) {
      const std::vector<std::pair<std::string, std::string>> pl = {{"port", p.name}};
      for (const auto& [name, value, help] :
           std::vector<std::tuple<std::string, uint64_t, std::string>>{
               {"rx_packets", p.rx_packets, "packets received by the port"},
               {"rx_bytes", p.rx_bytes, "bytes received by the port"},
               {"tx_packets", p.tx_packets, "packets sent by the port"},
               {"tx_bytes", p.tx_bytes, "bytes sent by the port"},
               {"rx_missed", p.rx_missed, "packets the NIC dropped for want of a descriptor"},
               {"rx_errors", p.rx_errors, "receive errors"},
               {"tx_errors", p.tx_errors, "transmit errors"},
               {"rx_nombuf", p.rx_nombuf, "receive failures for want of an mbuf"}}) {
        e.Add(absl::StrFormat("fulcrum_port_%s_total", name), "counter", help, pl,
              static_cast<double>(value));
      }
    }
  }
  for (const json& v : status["vips"]) {
    const std::string vip = v["name"].get<std::string>();
    const std::vector<std::pair<std::string, std::string>> vl = {{"vip", vip}};
    if (latest != nullptr && latest->attached) {
      if (auto it = latest->vips.find(v["id"].get<uint16_t>()); it != latest->vips.end()) {
        e.Add("fulcrum_vip_packets_total", "counter", "packets to the VIP", vl,
              static_cast<double>(it->second.packets));
        e.Add("fulcrum_vip_bytes_total", "counter", "bytes to the VIP", vl,
              static_cast<double>(it->second.bytes));
        e.Add("fulcrum_vip_new_flows_total", "counter", "new flows to the VIP", vl,
              static_cast<double>(it->second.new_flows));
        e.Add("fulcrum_vip_drops_total", "counter", "packets to the VIP dropped", vl,
              static_cast<double>(it->second.drops));
      }
    }
    e.Add("fulcrum_vip_new_flow_rate", "gauge", "new flows per second over the status window", vl,
          Num(v["new_flow_rate"]));
    if (v["imbalance"].is_number()) {
      e.Add("fulcrum_vip_imbalance_ratio", "gauge",
            "max over backends of observed / expected share of new flows", vl, Num(v["imbalance"]));
    }
    e.Add("fulcrum_vip_healthy_fraction", "gauge", "healthy share of the serving weight", vl,
          Num(v["healthy_fraction"]));
    e.Add("fulcrum_vip_panic", "gauge", "1 while the VIP fails open (panic threshold)", vl,
          v["panic"].get<bool>() ? 1 : 0);
    e.Add("fulcrum_vip_table_size", "gauge", "Maglev table size", vl, Num(v["table_size"]));
    if (v.contains("announcement") && v["announcement"].is_object()) {
      const json& a = v["announcement"];
      e.Add("fulcrum_vip_announced", "gauge",
            "1 while this host announces the VIP over BGP (BIRD accepted it)", vl,
            a["state"] == "announced" ? 1 : 0);
      e.Add("fulcrum_vip_announce_wanted", "gauge",
            "1 while this host can serve the VIP and wants it announced", vl,
            a["announce"].get<bool>() ? 1 : 0);
    }
    for (const json& b : v["backends"]) {
      const std::string backend = b["name"].get<std::string>();
      const std::vector<std::pair<std::string, std::string>> bl = {{"vip", vip},
                                                                   {"backend", backend}};
      if (latest != nullptr && latest->attached) {
        if (auto it = latest->backends.find(b["id"].get<uint16_t>());
            it != latest->backends.end()) {
          e.Add("fulcrum_backend_packets_total", "counter", "packets sent to the backend", bl,
                static_cast<double>(it->second.packets));
          e.Add("fulcrum_backend_bytes_total", "counter", "bytes sent to the backend", bl,
                static_cast<double>(it->second.bytes));
          e.Add("fulcrum_backend_new_flows_total", "counter", "new flows given to the backend", bl,
                static_cast<double>(it->second.new_flows));
        }
      }
      e.Add("fulcrum_backend_expected_share", "gauge", "share of the VIP's Maglev table slots", bl,
            Num(b["expected_share"]));
      if (b["observed_flow_share"].is_number()) {
        e.Add("fulcrum_backend_observed_flow_share", "gauge",
              "share of the VIP's new flows over the status window", bl,
              Num(b["observed_flow_share"]));
      }
      if (b["observed_packet_share"].is_number()) {
        e.Add("fulcrum_backend_observed_packet_share", "gauge",
              "share of the VIP's packets over the status window", bl,
              Num(b["observed_packet_share"]));
      }
      e.Add("fulcrum_backend_new_flow_rate", "gauge", "new flows per second over the window", bl,
            Num(b["new_flow_rate"]));
      e.Add("fulcrum_backend_up", "gauge", "1 unless health checks say down", bl,
            b["health"] == "down" ? 0 : 1);
      e.Add("fulcrum_backend_weight", "gauge", "weight after operator overrides", bl,
            Num(b["weight"]));
      if (b["capacity_cps"].is_number()) {
        e.Add("fulcrum_backend_capacity_cps", "gauge", "declared capacity, new flows per second",
              bl, Num(b["capacity_cps"]));
        e.Add("fulcrum_backend_load", "gauge", "observed new flows per second / capacity_cps", bl,
              Num(b["load"]));
      }
      for (const char* state : {"active", "draining", "down", "disabled"}) {
        e.Add("fulcrum_backend_state", "gauge", "1 for the state published to the data plane",
              {{"vip", vip}, {"backend", backend}, {"state", state}},
              b["published"] == state ? 1 : 0);
      }
    }
  }
  if (status.contains("bgp") && status["bgp"].value("configured", false)) {
    const json& sp = status["bgp"]["speaker"];
    e.Add("fulcrum_bgp_speaker_up", "gauge",
          "1 while BIRD accepted the control plane's last announcement file", {},
          sp["reachable"].get<bool>() ? 1 : 0);
    e.Add("fulcrum_bgp_configures_total", "counter", "times BIRD accepted a new announcement file",
          {}, Num(sp["configures"]));
    e.Add("fulcrum_bgp_configure_failures_total", "counter",
          "failed attempts to tell BIRD (unreachable, refused, timed out)", {},
          Num(sp["failures"]));
  }
  e.Add("fulcrum_alerts", "gauge", "number of standing alerts", {},
        static_cast<double>(status["alerts"].size()));
  for (const json& a : status["alerts"]) {
    e.Add("fulcrum_alert", "gauge", "1 for each standing alert (status shows the message)",
          {{"kind", a["kind"].get<std::string>()}, {"subject", a["subject"].get<std::string>()}},
          1);
  }
  return e.Render();
}

}  // namespace fulcrum::controlplane
