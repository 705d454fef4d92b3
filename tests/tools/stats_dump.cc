// fulcrum-stats-dump: fulcrumd's stats segment as JSON (every counter summed over the lcores,
// drops and parse results by name, flow-table occupancy, per-VIP and per-backend counters that
// are not zero). For tests and for a look at a data plane without a control plane.
//   fulcrum-stats-dump [--shm-prefix P]
#include <CLI/CLI.hpp>
#include <cstdio>

#include "dataplane/core/parse.h"
#include "dataplane/shm/segment.h"
#include "nlohmann/json.hpp"

int main(int argc, char** argv) {
  CLI::App app("fulcrum-stats-dump: fulcrumd's counters as JSON");
  std::string prefix = "fulcrum";
  app.add_option("--shm-prefix", prefix)->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  using namespace fulcrum;
  absl::StatusOr<shm::MappedSegment> seg = shm::AttachStatsSegment(prefix);
  if (!seg.ok()) {
    std::fprintf(stderr, "fulcrum-stats-dump: %s\n", seg.status().ToString().c_str());
    return 1;
  }
  const shm::StatsSegment& s = shm::StatsOf(*seg);
  const uint32_t lcores = std::min(s.header.lcore_count.load(), shm::kMaxLcores);
  nlohmann::json j;
  j["pid"] = s.header.writer_pid.load();
  j["lcores"] = lcores;
  j["generation_in_use"] = s.header.generation_in_use.load();
  auto sum = [&](auto get) {
    uint64_t total = 0;
    for (uint32_t l = 0; l < lcores; ++l) total += get(s.lcores[l]);
    return total;
  };
  for (size_t c = 0; c < shm::kLcoreCounterCount; ++c) {
    j["counters"][std::string(ReasonName(shm::LcoreCounter(c)))] =
        sum([c](const shm::LcoreStats& l) { return l.counters[c].load(); });
  }
  for (size_t d = 0; d < shm::kDropReasonCount; ++d) {
    j["drops"][std::string(ReasonName(shm::DropReason(d)))] =
        sum([d](const shm::LcoreStats& l) { return l.drops[d].load(); });
  }
  for (size_t p = 0; p < kParseResultCount; ++p) {
    j["parse"][std::string(ReasonName(ParseResult(p)))] =
        sum([p](const shm::LcoreStats& l) { return l.parse[p].load(); });
  }
  j["flow_table_used"] = sum([](const shm::LcoreStats& l) { return l.flow_table_used.load(); });
  j["flow_table_capacity"] =
      sum([](const shm::LcoreStats& l) { return l.flow_table_capacity.load(); });
  for (uint32_t v = 0; v < shm::kMaxVips; ++v) {
    const uint64_t packets =
        sum([v](const shm::LcoreStats& l) { return l.vips[v].packets.load(); });
    const uint64_t drops = sum([v](const shm::LcoreStats& l) { return l.vips[v].drops.load(); });
    if (packets == 0 && drops == 0) continue;
    j["vips"][std::to_string(v)] = {
        {"packets", packets},
        {"bytes", sum([v](const shm::LcoreStats& l) { return l.vips[v].bytes.load(); })},
        {"new_flows", sum([v](const shm::LcoreStats& l) { return l.vips[v].new_flows.load(); })},
        {"drops", drops}};
  }
  for (uint32_t b = 0; b < shm::kMaxBackends; ++b) {
    const uint64_t packets =
        sum([b](const shm::LcoreStats& l) { return l.backends[b].packets.load(); });
    if (packets == 0) continue;
    j["backends"][std::to_string(b)] = {
        {"packets", packets},
        {"bytes", sum([b](const shm::LcoreStats& l) { return l.backends[b].bytes.load(); })},
        {"new_flows",
         sum([b](const shm::LcoreStats& l) { return l.backends[b].new_flows.load(); })}};
  }
  const uint32_t ports = std::min(s.header.port_count.load(), shm::kMaxPorts);
  for (uint32_t p = 0; p < ports; ++p) {
    const shm::PortStats& ps = s.ports[p];
    j["ports"].push_back({{"rx_packets", ps.rx_packets.load()},
                          {"tx_packets", ps.tx_packets.load()},
                          {"rx_missed", ps.rx_missed.load()},
                          {"rx_errors", ps.rx_errors.load()},
                          {"tx_errors", ps.tx_errors.load()}});
  }
  std::printf("%s\n", j.dump(1).c_str());
  return 0;
}
