// Daemon: fulcrumd's start-up, run and shutdown sequence.
#include "dataplane/daemon.h"

#include <rte_cycles.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_lcore.h>
#include <rte_malloc.h>
#include <rte_rcu_qsbr.h>
#include <signal.h>

#include <atomic>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_format.h"
#include "bpf/steer.h"
#include "dataplane/control.h"
#include "dataplane/options.h"
#include "dataplane/ports.h"
#include "dataplane/shm/segment.h"
#include "dataplane/steering.h"
#include "dataplane/telemetry.h"
#include "dataplane/worker.h"

namespace fulcrum {
namespace {

std::atomic<bool> g_signalled{false};
static_assert(std::atomic<bool>::is_always_lock_free, "set from a signal handler");

void OnSignal(int) { g_signalled.store(true); }

void PrintUsage(const char*) { std::fputs(OptionsHelp().c_str(), stdout); }

int Fail(const std::string& message) {
  std::fprintf(stderr, "fulcrumd: %s\n", message.c_str());
  return 1;
}

// A flow table in EAL memory on the worker's NUMA socket, freed with the worker.
struct LcoreTable {
  void* memory = nullptr;
  std::unique_ptr<FlowTable> table;
  ~LcoreTable() { rte_free(memory); }
};

// Everything that lives in EAL memory or holds DPDK resources lives in here, so that any
// return destroys it (in reverse order) while the EAL is still up.
int Run(const Options& o) {
  const unsigned workers = rte_lcore_count() - 1;
  if (workers == 0) {
    return Fail(
        "needs at least two lcores (e.g. -l 0,1): the main lcore does control work "
        "only, every other lcore forwards");
  }
  if (workers > shm::kMaxLcores) {
    return Fail(
        absl::StrFormat("%d workers: the stats segment has room for %d", workers, shm::kMaxLcores));
  }

  absl::StatusOr<shm::MappedSegment> stats_seg = shm::CreateStatsSegment(o.shm_prefix);
  if (!stats_seg.ok()) {
    return Fail(absl::StrFormat("stats segment: %s", stats_seg.status().message()));
  }
  shm::StatsSegment& stats = shm::StatsOf(*stats_seg);
  stats.header.writer_pid.store(static_cast<uint32_t>(getpid()));
  stats.header.lcore_count.store(workers);

  PortOptions po;
  po.workers = static_cast<uint16_t>(workers);
  po.rx_desc = o.rx_desc;
  po.tx_desc = o.tx_desc;
  po.mbufs = o.mbufs;
  po.promiscuous = o.promiscuous;
  po.tap_name = o.tap_name;
  absl::StatusOr<PortSetup> ports = SetUpPorts(po);
  if (!ports.ok()) return Fail(std::string(ports.status().message()));
  struct PortsStopper {
    const PortSetup& setup;
    ~PortsStopper() { StopPorts(setup); }
  } stopper{*ports};
  for (uint16_t p : ports->ports) {
    std::fprintf(stderr, "fulcrumd: port %d: %s\n", p, PortName(p).c_str());
  }
  if (ports->has_tap) {
    std::fprintf(stderr, "fulcrumd: exception path: TAP %s\n", o.tap_name.c_str());
  }

  WorkerShared shared;
  const size_t rcu_size = rte_rcu_qsbr_get_memsize(workers);
  std::unique_ptr<rte_rcu_qsbr, decltype(&rte_free)> rcu(
      static_cast<rte_rcu_qsbr*>(rte_zmalloc("fulcrum_rcu", rcu_size, RTE_CACHE_LINE_SIZE)),
      rte_free);
  if (rcu == nullptr || rte_rcu_qsbr_init(rcu.get(), workers) != 0) {
    return Fail("RCU initialisation failed (out of EAL memory?)");
  }
  shared.rcu = rcu.get();

  std::vector<LcoreTable> tables(workers);
  std::vector<WorkerConfig> configs(workers);
  absl::StatusOr<size_t> bytes = FlowTable::BytesNeeded(o.flow_capacity);
  if (!bytes.ok()) return Fail(std::string(bytes.status().message()));
  std::fprintf(stderr,
               "fulcrumd: flow table per worker: %lu flows (--flow-capacity %lu), %zu MiB\n",
               *FlowTable::RoundedCapacity(o.flow_capacity), o.flow_capacity, *bytes >> 20);
  unsigned w = 0;
  unsigned lcore;
  RTE_LCORE_FOREACH_WORKER(lcore) {
    const int socket = static_cast<int>(rte_lcore_to_socket_id(lcore));
    tables[w].memory = rte_malloc_socket("fulcrum_flows", *bytes, 2 << 20, socket);
    if (tables[w].memory == nullptr) {
      return Fail(
          absl::StrFormat("flow table of %d flows (%d MiB) for lcore %d: out of EAL memory; lower "
                          "--flow-capacity or give the EAL more (-m, hugepages)",
                          o.flow_capacity, *bytes >> 20, lcore));
    }
    absl::StatusOr<FlowTable> table = FlowTable::Create(tables[w].memory, *bytes, o.flow_capacity);
    if (!table.ok()) return Fail(std::string(table.status().message()));
    tables[w].table = std::make_unique<FlowTable>(*std::move(table));
    WorkerConfig& c = configs[w];
    c.queues = ports->workers[w];
    c.has_tap = ports->has_tap;
    c.tap_port = ports->tap_port;
    c.tap_queue = static_cast<uint16_t>(w);
    c.burst = o.burst;
    c.idle_sleep_us = o.idle_sleep_us;
    c.rcu_thread_id = w;
    c.flows = tables[w].table.get();
    c.stats = &stats.lcores[w];
    c.shared = &shared;
    ++w;
  }

  ControlOptions co;
  co.shm_prefix = o.shm_prefix;
  co.wait_for_snapshot = o.wait_for_snapshot;
  co.exit_when_idle_ms = o.exit_when_idle_ms;
  std::vector<std::string> steering_log;
  Steering steering = Steering::ForPorts(ports->ports, steering_log);
  for (const std::string& line : steering_log) std::fprintf(stderr, "fulcrumd: %s\n", line.c_str());
  Control control(co, &shared, &stats, ports->ports, std::move(steering));
  if (absl::Status s = control.Start(); !s.ok()) {
    return Fail(absl::StrFormat("config segment: %s", s.message()));
  }
  RegisterTelemetry(&stats);

  struct sigaction sa {};
  sa.sa_handler = OnSignal;
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);

  int status = 0;
  w = 0;
  RTE_LCORE_FOREACH_WORKER(lcore) {
    if (rte_eal_remote_launch(WorkerMain, &configs[w], lcore) != 0) {
      status = Fail(absl::StrFormat("could not launch a worker on lcore %d", lcore));
      break;
    }
    ++w;
  }
  if (status == 0) {
    std::fprintf(stderr, "fulcrumd: %d workers forwarding (pid %d)\n", workers, getpid());
    control.Run(g_signalled);
  }
  shared.stop.store(true);
  rte_eal_mp_wait_lcore();
  control.Reclaim(true);
  std::fprintf(stderr, "fulcrumd: stopped\n");
  return status;
}

}  // namespace

int DaemonMain(int argc, char** argv) {
  // `fulcrumd -- --help` needs no EAL (and so no hugepages or root).
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--") == 0 && i + 1 < argc &&
        (std::strcmp(argv[i + 1], "--help") == 0 || std::strcmp(argv[i + 1], "-h") == 0)) {
      std::fputs(OptionsHelp().c_str(), stdout);
      return 0;
    }
  }
  // `fulcrumd --write-steer-object PATH`: the AF_XDP steering program for the af_xdp PMD's
  // xdp_prog= option, as this binary embeds it. No EAL either.
  if (argc == 3 && std::strcmp(argv[1], "--write-steer-object") == 0) {
    if (absl::Status s = bpf::WriteSteerObject(argv[2]); !s.ok()) {
      return Fail(std::string(s.message()));
    }
    return 0;
  }
  rte_set_application_usage_hook(PrintUsage);  // the EAL's --help prints ours after its own
  const int consumed = rte_eal_init(argc, argv);
  if (consumed < 0) {
    return Fail(
        absl::StrFormat("EAL initialisation failed: %s (fulcrumd [EAL options] -- "
                        "[fulcrumd options]; --help lists both)",
                        rte_strerror(rte_errno)));
  }
  std::vector<std::string> args(argv + consumed + 1, argv + argc);
  absl::StatusOr<Options> options = ParseOptions(args);
  int status;
  if (!options.ok()) {
    status = Fail(std::string(options.status().message()));
  } else if (options->help) {
    std::fputs(OptionsHelp().c_str(), stdout);
    status = 0;
  } else {
    status = Run(*options);
  }
  rte_eal_cleanup();
  return status;
}

}  // namespace fulcrum
