// Options: parsed with CLI11.
#include "dataplane/options.h"

#include <CLI/CLI.hpp>
#include <algorithm>

#include "absl/strings/str_format.h"
#include "dataplane/core/flow_table.h"

namespace fulcrum {
namespace {

// One definition of the options, for parsing and for the help text.
void Define(CLI::App& app, Options& o) {
  app.add_option("--shm-prefix", o.shm_prefix,
                 "instance name: the config and stats segments are /NAME.config, /NAME.stats")
      ->capture_default_str();
  app.add_option("--tap", o.tap_name,
                 "name of the TAP interface that carries non-VIP traffic to and from the kernel")
      ->capture_default_str();
  app.add_flag_callback(
      "--no-tap", [&o] { o.tap_name.clear(); },
      "no exception path: packets not for a VIP are dropped and counted (kernel_full)");
  app.add_option("--flow-capacity", o.flow_capacity,
                 "flow-table capacity per worker lcore, in flows (53.3 bytes each; rounded up to 3 "
                 "times a power of two)")
      ->capture_default_str()
      ->check(CLI::Range(FlowTable::kMinCapacity, FlowTable::kMaxCapacity));
  app.add_option("--burst", o.burst, "packets per rx_burst")
      ->capture_default_str()
      ->check(CLI::Range(1, 64));
  app.add_option("--rx-desc", o.rx_desc, "RX descriptors per queue")->capture_default_str();
  app.add_option("--tx-desc", o.tx_desc, "TX descriptors per queue")->capture_default_str();
  app.add_option("--mbufs", o.mbufs, "mbufs in the pool (0: sized for every queue)")
      ->capture_default_str();
  app.add_flag("--promiscuous", o.promiscuous, "put the data ports in promiscuous mode");
  app.add_option("--idle-sleep-us", o.idle_sleep_us,
                 "sleep this many microseconds after a loop that received nothing (0: poll "
                 "without pause, as production wants; more: share a core on a test host)")
      ->capture_default_str()
      ->check(CLI::Range(0, 100000));
  app.add_flag("--wait-for-snapshot", o.wait_for_snapshot,
               "receive nothing until a snapshot is in use (replaying a pcap)");
  app.add_option("--exit-when-idle", o.exit_when_idle_ms,
                 "offline mode: once a snapshot is in use, exit when no packet has arrived for "
                 "this many milliseconds (implies --wait-for-snapshot; -1: never)")
      ->capture_default_str();
}

}  // namespace

std::string OptionsHelp() {
  Options o;
  CLI::App app(
      "fulcrumd: the Fulcrum data plane.\n"
      "Usage: fulcrumd [EAL options] -- [fulcrumd options]",
      "fulcrumd");
  Define(app, o);
  return app.help();
}

absl::StatusOr<Options> ParseOptions(const std::vector<std::string>& args) {
  Options o;
  CLI::App app("fulcrumd", "fulcrumd");
  Define(app, o);
  std::vector<std::string> reversed(args.rbegin(), args.rend());  // CLI11 takes them reversed
  try {
    app.parse(reversed);
  } catch (const CLI::CallForHelp&) {
    o.help = true;
    return o;
  } catch (const CLI::ParseError& e) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%s (fulcrumd -- --help lists them)", e.what()));
  }
  if (o.exit_when_idle_ms >= 0) o.wait_for_snapshot = true;
  return o;
}

}  // namespace fulcrum
