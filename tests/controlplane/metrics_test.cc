// Metrics: the exposition is valid Prometheus text (one HELP and TYPE per family, before its
// samples; every sample line parses; no series twice) and carries the data-plane counters,
// shares, health, generations and alerts.
#include "controlplane/metrics.h"

#include <cctype>
#include <cstdlib>
#include <map>
#include <set>
#include <sstream>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace fulcrum::controlplane {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

nlohmann::json Status() {
  return nlohmann::json::parse(R"({
    "controlplane": {"published_generation": 7, "counters": {"applies": 3}},
    "dataplane": {"attached": true, "acked_generation": 7, "rejected_generation": 0,
                  "heartbeat_age_s": 0.01},
    "vips": [{"name": "web", "id": 0, "new_flow_rate": 100.0, "imbalance": 1.02,
              "healthy_fraction": 1.0, "panic": false, "table_size": 65537,
              "backends": [{"name": "10.0.0.1", "id": 4, "expected_share": 0.5,
                            "observed_flow_share": 0.51, "observed_packet_share": null,
                            "new_flow_rate": 51.0, "health": "down", "weight": 1,
                            "capacity_cps": 1000, "load": 0.051, "published": "down"},
                           {"name": "10.0.0.2", "id": 5, "expected_share": 0.5,
                            "observed_flow_share": 0.49, "observed_packet_share": null,
                            "new_flow_rate": 49.0, "health": "up", "weight": 1,
                            "capacity_cps": null, "load": null, "published": "active"}]}],
    "alerts": [{"kind": "backend_down", "subject": "web/10.0.0.1", "message": "x \"y\""},
               {"kind": "backend_down", "subject": "web/10.0.0.1", "message": "again"}]
  })");
}

StatsSample Sample() {
  StatsSample s;
  s.attached = true;
  LcoreSample l;
  l.lcore_id = 3;
  l.counters[static_cast<size_t>(shm::LcoreCounter::kNewFlows)] = 42;
  l.drops[static_cast<size_t>(shm::DropReason::kTxFull)] = 9;
  s.lcores.push_back(l);
  s.vips[0].new_flows = 42;
  s.backends[4].packets = 420;
  return s;
}

// name{label="value",...} number, as the text format defines it (no regex: GCC 12's <regex>
// trips -Wmaybe-uninitialized in the sanitizer build).
bool IsSampleLine(const std::string& line) {
  auto name_char = [](char c, bool first) {
    return std::isalpha(static_cast<unsigned char>(c)) || c == '_' || c == ':' ||
           (!first && std::isdigit(static_cast<unsigned char>(c)));
  };
  size_t i = 0;
  if (i >= line.size() || !name_char(line[i], true)) return false;
  while (i < line.size() && name_char(line[i], false)) ++i;
  if (i < line.size() && line[i] == '{') {
    ++i;
    while (i < line.size() && line[i] != '}') {
      if (!name_char(line[i], true)) return false;
      while (i < line.size() && name_char(line[i], false) && line[i] != ':') ++i;
      if (line.compare(i, 2, "=\"") != 0) return false;
      i += 2;
      while (i < line.size() && line[i] != '"') i += line[i] == '\\' ? 2 : 1;
      if (i >= line.size()) return false;
      ++i;
      if (i < line.size() && line[i] == ',') ++i;
    }
    if (i >= line.size()) return false;
    ++i;
  }
  if (i >= line.size() || line[i] != ' ') return false;
  const std::string value = line.substr(i + 1);
  char* end = nullptr;
  std::strtod(value.c_str(), &end);
  return !value.empty() && end == value.c_str() + value.size();
}

TEST(Metrics, TheExpositionIsValidPrometheusText) {
  const StatsSample sample = Sample();
  const std::string text = RenderMetrics(Status(), &sample);
  std::set<std::string> typed;
  std::set<std::string> series;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("# HELP ", 0) == 0) continue;
    if (line.rfind("# TYPE ", 0) == 0) {
      const std::string name = line.substr(7, line.find(' ', 7) - 7);
      EXPECT_TRUE(typed.insert(name).second) << "TYPE twice: " << name;
      continue;
    }
    EXPECT_TRUE(IsSampleLine(line)) << line;
    const std::string name = line.substr(0, line.find_first_of("{ "));
    EXPECT_TRUE(typed.count(name) != 0) << "sample before its TYPE: " << line;
    EXPECT_TRUE(series.insert(line.substr(0, line.rfind(' '))).second) << "twice: " << line;
  }
}

TEST(Metrics, CountersSharesHealthAndAlertsAreExported) {
  const StatsSample sample = Sample();
  const std::string text = RenderMetrics(Status(), &sample);
  EXPECT_THAT(text, HasSubstr("fulcrum_dataplane_new_flows_total{lcore=\"3\"} 42"));
  EXPECT_THAT(text, HasSubstr("fulcrum_dataplane_drops_total{lcore=\"3\",reason=\"tx_full\"} 9"));
  EXPECT_THAT(text,
              HasSubstr("fulcrum_backend_packets_total{vip=\"web\",backend=\"10.0.0.1\"} 420"));
  EXPECT_THAT(text,
              HasSubstr("fulcrum_backend_expected_share{vip=\"web\",backend=\"10.0.0.1\"} 0.5"));
  EXPECT_THAT(text, HasSubstr("fulcrum_backend_up{vip=\"web\",backend=\"10.0.0.1\"} 0"));
  EXPECT_THAT(text, HasSubstr("fulcrum_vip_imbalance_ratio{vip=\"web\"} 1.02"));
  EXPECT_THAT(text, HasSubstr("fulcrum_dataplane_generation_acked 7"));
  EXPECT_THAT(text, HasSubstr("fulcrum_alert{kind=\"backend_down\",subject=\"web/10.0.0.1\"} 1"));
  EXPECT_THAT(text, HasSubstr("fulcrum_controlplane_applies_total 3"));
}

TEST(Metrics, BgpAnnouncementsAndTheSpeakerAreExported) {
  nlohmann::json status = Status();
  status["vips"][0]["announcement"] = {
      {"state", "withdrawn"}, {"announce", false}, {"reason", "no healthy backend"}};
  status["bgp"] = {{"configured", true},
                   {"speaker", {{"reachable", true}, {"configures", 4}, {"failures", 1}}}};
  const std::string text = RenderMetrics(status, nullptr);
  EXPECT_THAT(text, HasSubstr("fulcrum_vip_announced{vip=\"web\"} 0"));
  EXPECT_THAT(text, HasSubstr("fulcrum_vip_announce_wanted{vip=\"web\"} 0"));
  EXPECT_THAT(text, HasSubstr("fulcrum_bgp_speaker_up 1"));
  EXPECT_THAT(text, HasSubstr("fulcrum_bgp_configures_total 4"));
  EXPECT_THAT(text, HasSubstr("fulcrum_bgp_configure_failures_total 1"));
  status["vips"][0]["announcement"]["state"] = "announced";
  EXPECT_THAT(RenderMetrics(status, nullptr), HasSubstr("fulcrum_vip_announced{vip=\"web\"} 1"));
  // Without a bgp section there is no BGP family at all.
  EXPECT_THAT(RenderMetrics(Status(), nullptr), Not(HasSubstr("fulcrum_bgp_")));
}

}  // namespace
}  // namespace fulcrum::controlplane
