// StatsReader: reads fulcrumd's stats segment (read-only) and sums the per-lcore blocks into one
// sample. The segment is input: counts from it are bounded before they index anything. When
// fulcrumd restarts it makes a new segment; the reader notices (the name points to another
// object) and re-attaches, and the sample's `incarnation` changes so that rates never mix two
// processes' counters.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "dataplane/core/parse.h"
#include "dataplane/shm/abi.h"
#include "dataplane/shm/segment.h"

namespace fulcrum::controlplane {

struct TrafficCounters {
  uint64_t packets = 0;
  uint64_t bytes = 0;
  uint64_t new_flows = 0;
  uint64_t drops = 0;  // VIPs only
};

struct LcoreSample {
  uint32_t lcore_id = 0;
  bool active = false;
  uint64_t heartbeat_ns = 0;
  uint64_t generation = 0;
  uint64_t flow_table_used = 0;
  uint64_t flow_table_capacity = 0;
  std::array<uint64_t, shm::kLcoreCounterCount> counters{};
  std::array<uint64_t, shm::kDropReasonCount> drops{};
  std::array<uint64_t, kParseResultCount> parse{};
};

struct PortSample {
  std::string name;
  uint64_t rx_packets = 0, rx_bytes = 0, tx_packets = 0, tx_bytes = 0;
  uint64_t rx_missed = 0, rx_errors = 0, tx_errors = 0, rx_nombuf = 0;
};

struct StatsSample {
  uint64_t mono_ns = 0;  // when it was read (CLOCK_MONOTONIC)
  bool attached = false;
  std::string error;         // why not attached
  uint64_t incarnation = 0;  // changes with every fulcrumd process
  uint32_t pid = 0;
  uint64_t heartbeat_ns = 0;
  uint64_t generation_in_use = 0;
  std::vector<LcoreSample> lcores;
  std::vector<PortSample> ports;
  std::array<uint64_t, shm::kLcoreCounterCount> counters{};  // summed over lcores
  std::array<uint64_t, shm::kDropReasonCount> drops{};
  uint64_t flow_table_used = 0;
  uint64_t flow_table_capacity = 0;
  std::map<uint16_t, TrafficCounters> vips;      // by VIP id
  std::map<uint16_t, TrafficCounters> backends;  // by backend id

  uint64_t TotalDrops() const;
};

class StatsReader {
 public:
  explicit StatsReader(std::string prefix) : prefix_(std::move(prefix)) {}

  // Reads the counters of the given ids (and every lcore and port counter).
  StatsSample Sample(const std::vector<uint16_t>& vip_ids,
                     const std::vector<uint16_t>& backend_ids);

 private:
  std::string prefix_;
  std::optional<shm::MappedSegment> segment_;
};

}  // namespace fulcrum::controlplane
