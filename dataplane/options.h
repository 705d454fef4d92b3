// Options: fulcrumd's own command line, the part after the EAL's `--`.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace fulcrum {

struct Options {
  std::string shm_prefix = "fulcrum";
  std::string tap_name = "fulcrum0";  // empty: no exception path
  uint64_t flow_capacity = 1u << 20;  // per worker lcore
  // The most ProcessBurst takes (kMaxBurst). Against 32, each stage that waits for the flow
  // table's lines waits for its last ones once per 64 packets: with 1 Mi flows, fulcrumd's
  // added cost over testpmd io fell from 33.2-43.5 (median 38.4) to 31.4-34.1 ns a packet
  // (bench/pps.sh, docs/dataplane.md "Burst size"). At low rates a burst is whatever has
  // arrived, so the latency it adds is nil there.
  uint16_t burst = 64;
  uint16_t rx_desc = 1024;
  uint16_t tx_desc = 1024;
  uint32_t mbufs = 0;
  bool promiscuous = false;
  bool wait_for_snapshot = false;  // receive nothing until a snapshot is in use
  int64_t exit_when_idle_ms = -1;  // offline mode: exit once RX has been idle this long
  uint32_t idle_sleep_us = 0;      // 0: busy-poll; else sleep this long after an empty loop
  bool help = false;
};

// The help text: every option with its default.
std::string OptionsHelp();

// `args` excludes the program name. InvalidArgument with the option and the reason; with
// --help, Options::help is set and nothing else is checked.
absl::StatusOr<Options> ParseOptions(const std::vector<std::string>& args);

}  // namespace fulcrum
