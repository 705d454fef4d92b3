// fake_dataplane: a stand-in for fulcrumd in the control-plane tests, until those tests run
// against the real data plane (tests/controlplane/harness.py, class FakeDataplane, is the one
// place to swap). It plays fulcrumd's two roles on shared memory, with the library fulcrumd
// uses:
// * config: attaches to the config segment, copies and validates every published snapshot
//   with ConfigReader (exactly fulcrumd's path), acknowledges it, heartbeats;
// * stats: creates the stats segment and, for synthetic traffic, writes the counters the way
//   fulcrumd's worker lcores do: each new flow gets a random client address and port, its
//   backend is table[HashToSlot(FlowHash(tuple, key), size)] of the acknowledged snapshot,
//   and the lcore chosen by the flow hash bumps its VIP and backend counters.
//
// Control: a JSON file re-read every 100 ms (--control FILE):
//   {"rate": {"web": 5000}, "packets_per_flow": 10, "drops_pps": 0, "reject": false}
// `reject: true` rejects every new snapshot (reason `resources`), as fulcrumd does when it
// cannot build its forwarding state.
//
// Other mode: --dump-flows N copies the published snapshot (without acknowledging) and prints
// N random flows per VIP with the backend the data plane would pick, one JSON per line; the
// lookup test compares them with `fulcrumctl lookup`.
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <thread>

#include "absl/strings/str_format.h"
#include "dataplane/core/flow_hash.h"
#include "dataplane/shm/abi.h"
#include "dataplane/shm/config_channel.h"
#include "dataplane/shm/segment.h"
#include "dataplane/shm/snapshot.h"
#include "nlohmann/json.hpp"

namespace {

using fulcrum::FlowHash;
using fulcrum::FlowHashKey;
using fulcrum::FlowTuple;
using fulcrum::HashToSlot;
using fulcrum::IpAddress;
namespace shm = fulcrum::shm;

std::atomic<bool> g_stop{false};

void OnSignal(int) { g_stop = true; }

FlowHashKey KeyOf(const shm::Snapshot& s) {
  FlowHashKey k;
  std::memcpy(&k.k0, s.header.settings.hash_key, 8);
  std::memcpy(&k.k1, s.header.settings.hash_key + 8, 8);
  return k;
}

IpAddress AddressOf(const uint8_t (&bytes)[16], shm::Family f) {
  IpAddress ip;
  std::memcpy(ip.bytes.data(), bytes, 16);
  ip.v6 = f == shm::Family::kIpv6;
  return ip;
}

std::string VipName(const shm::VipRecord& v) {
  return std::string(v.name, strnlen(v.name, shm::kNameLen));
}

// A random client flow to VIP `v`.
FlowTuple RandomFlow(const shm::VipRecord& v, std::mt19937_64& rng) {
  FlowTuple t;
  const uint64_t r = rng();
  if (v.family == shm::Family::kIpv6) {
    t.v6 = true;
    t.src[0] = 0x20;
    t.src[1] = 0x01;
    t.src[2] = 0x0d;
    t.src[3] = 0xb8;
    const uint64_t r2 = rng();
    std::memcpy(t.src.data() + 8, &r2, 8);
  } else {
    t.src[0] = 198;
    t.src[1] = static_cast<uint8_t>(18 + (r & 1));
    t.src[2] = static_cast<uint8_t>(r >> 8);
    t.src[3] = static_cast<uint8_t>(r >> 16);
  }
  std::memcpy(t.dst.data(), v.address, 16);
  t.src_port = static_cast<uint16_t>(1024 + (r >> 24) % 64000);
  t.dst_port = v.port;
  t.proto = v.proto;
  return t;
}

struct Control {
  std::map<std::string, double> rate;  // new flows per second, by VIP name
  uint64_t packets_per_flow = 10;
  double drops_pps = 0;
  bool reject = false;
};

Control ReadControl(const std::string& path, const Control& previous) {
  if (path.empty()) return previous;
  std::ifstream in(path);
  if (!in) return previous;
  std::stringstream ss;
  ss << in.rdbuf();
  nlohmann::json j = nlohmann::json::parse(ss.str(), nullptr, false);
  if (j.is_discarded() || !j.is_object()) return previous;  // being rewritten: keep the last
  Control c;
  if (j.contains("rate") && j["rate"].is_object()) {
    for (const auto& [name, v] : j["rate"].items()) {
      if (v.is_number()) c.rate[name] = v.get<double>();
    }
  }
  c.packets_per_flow = j.value("packets_per_flow", uint64_t{10});
  c.drops_pps = j.value("drops_pps", 0.0);
  c.reject = j.value("reject", false);
  return c;
}

int DumpFlows(const std::string& prefix, int n, uint64_t seed) {
  absl::StatusOr<shm::MappedSegment> seg = shm::AttachConfigSegment(prefix);
  if (!seg.ok()) {
    std::fprintf(stderr, "fake_dataplane: %s\n", std::string(seg.status().message()).c_str());
    return 1;
  }
  shm::ConfigReader reader(*std::move(seg));
  shm::ConfigReader::Result r = reader.Poll(nullptr);
  if (r.kind != shm::ConfigReader::Result::kSnapshot) {
    std::fprintf(stderr, "fake_dataplane: no valid published snapshot\n");
    return 1;
  }
  const shm::Snapshot& s = r.snapshot;
  const FlowHashKey key = KeyOf(s);
  std::mt19937_64 rng(seed);
  for (size_t i = 0; i < s.vips.size(); ++i) {
    const shm::VipRecord& v = s.vips[i];
    const shm::Table& table = *s.tables[i];
    for (int k = 0; k < n; ++k) {
      const FlowTuple t = RandomFlow(v, rng);
      nlohmann::json out = {{"generation", r.generation},
                            {"vip", VipName(v)},
                            {"proto", v.proto == 6 ? "tcp" : "udp"},
                            {"src", IpAddress{t.src, t.v6}.ToString()},
                            {"sport", t.src_port},
                            {"backend", nullptr}};
      if (!table.empty()) {
        const uint32_t slot = HashToSlot(FlowHash(t, key), static_cast<uint32_t>(table.size()));
        const shm::BackendRecord& b = s.BackendsOf(v)[table[slot]];
        out["backend"] = AddressOf(b.address, b.family).ToString();
        out["backend_port"] = b.port;
        out["backend_id"] = b.id;
      }
      std::printf("%s\n", out.dump().c_str());
    }
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::string prefix;
  std::string control_path;
  int lcores = 2;
  int dump = 0;
  uint64_t seed = 1;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> std::string { return i + 1 < argc ? argv[++i] : ""; };
    if (a == "--shm-prefix") {
      prefix = next();
    } else if (a == "--control") {
      control_path = next();
    } else if (a == "--lcores") {
      lcores = std::stoi(next());
    } else if (a == "--dump-flows") {
      dump = std::stoi(next());
    } else if (a == "--seed") {
      seed = std::stoull(next());
    } else {
      std::fprintf(stderr, "fake_dataplane: unknown argument %s\n", a.c_str());
      return 2;
    }
  }
  if (prefix.empty() || lcores < 1 || lcores > static_cast<int>(shm::kMaxLcores)) {
    std::fprintf(stderr, "usage: fake_dataplane --shm-prefix P [--control FILE] [--lcores N]\n");
    return 2;
  }
  if (dump > 0) return DumpFlows(prefix, dump, seed);
  signal(SIGTERM, OnSignal);
  signal(SIGINT, OnSignal);

  absl::StatusOr<shm::MappedSegment> stats_seg = shm::CreateStatsSegment(prefix);
  if (!stats_seg.ok()) {
    std::fprintf(stderr, "fake_dataplane: %s\n", std::string(stats_seg.status().message()).c_str());
    return 1;
  }
  shm::StatsSegment& stats = shm::StatsOf(*stats_seg);
  stats.header.start_unix_ns =
      static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                std::chrono::system_clock::now().time_since_epoch())
                                .count());
  stats.header.writer_pid.store(static_cast<uint32_t>(getpid()));
  for (int l = 0; l < lcores; ++l) {
    stats.lcores[l].lcore_id.store(static_cast<uint32_t>(l + 1));
    stats.lcores[l].active.store(1);
    stats.lcores[l].flow_table_capacity.store(1u << 20);
  }
  stats.header.lcore_count.store(static_cast<uint32_t>(lcores), std::memory_order_release);

  // The config segment may not exist yet: fulcrumd waits for the control plane too.
  std::optional<shm::ConfigReader> reader;
  std::optional<shm::Snapshot> current;
  Control control;
  std::mt19937_64 rng(seed);
  std::map<std::string, double> owed;  // fractional flows carried to the next tick
  double drops_owed = 0;
  auto last = std::chrono::steady_clock::now();
  auto last_control = last - std::chrono::seconds(1);
  auto last_heartbeat = last - std::chrono::seconds(1);
  std::string config_name = *shm::ConfigSegmentName(prefix);
  while (!g_stop) {
    const auto now = std::chrono::steady_clock::now();
    const double dt = std::chrono::duration<double>(now - last).count();
    last = now;
    const uint64_t mono = shm::MonotonicNowNs();
    if (!reader.has_value() || !reader->segment().SameObjectAs(config_name)) {
      absl::StatusOr<shm::MappedSegment> seg = shm::AttachConfigSegment(prefix);
      if (seg.ok()) {
        reader.emplace(*std::move(seg));
        current.reset();
      } else {
        reader.reset();
      }
    }
    if (now - last_control >= std::chrono::milliseconds(100)) {
      control = ReadControl(control_path, control);
      last_control = now;
    }
    if (reader.has_value()) {
      if (now - last_heartbeat >= std::chrono::milliseconds(100)) {
        reader->Heartbeat();
        last_heartbeat = now;
      }
      shm::ConfigReader::Result r = reader->Poll(current ? &*current : nullptr);
      if (r.kind == shm::ConfigReader::Result::kSnapshot) {
        if (control.reject) {
          reader->Reject(r.generation, {shm::SnapshotReject::kResources,
                                        "fake_dataplane: told to reject (control file)"});
        } else {
          current = std::move(r.snapshot);
          reader->Ack(r.generation);
          stats.header.generation_in_use.store(r.generation);
          for (int l = 0; l < lcores; ++l) stats.lcores[l].generation.store(r.generation);
        }
      } else if (r.kind == shm::ConfigReader::Result::kRejected) {
        reader->Reject(r.generation, r.verdict);
      }
    }
    stats.header.heartbeat_ns.store(mono);
    for (int l = 0; l < lcores; ++l) stats.lcores[l].heartbeat_ns.store(mono);

    if (current.has_value()) {
      const shm::Snapshot& s = *current;
      const FlowHashKey key = KeyOf(s);
      for (size_t i = 0; i < s.vips.size(); ++i) {
        const shm::VipRecord& v = s.vips[i];
        auto rate = control.rate.find(VipName(v));
        if (rate == control.rate.end() || rate->second <= 0) continue;
        double& due = owed[VipName(v)];
        due += rate->second * dt;
        const auto flows = static_cast<uint64_t>(due);
        due -= static_cast<double>(flows);
        const shm::Table& table = *s.tables[i];
        const uint64_t ppf = control.packets_per_flow;
        for (uint64_t f = 0; f < flows; ++f) {
          const FlowTuple t = RandomFlow(v, rng);
          const uint64_t h = FlowHash(t, key);
          shm::LcoreStats& lc = stats.lcores[h % static_cast<uint64_t>(lcores)];
          shm::Bump(lc.counters[static_cast<size_t>(shm::LcoreCounter::kRxPackets)], ppf);
          shm::Bump(lc.counters[static_cast<size_t>(shm::LcoreCounter::kRxBytes)], ppf * 1000);
          shm::Bump(lc.vips[v.id].packets, ppf);
          shm::Bump(lc.vips[v.id].bytes, ppf * 1000);
          if (table.empty()) {
            shm::Bump(lc.vips[v.id].drops, ppf);
            shm::Bump(lc.drops[static_cast<size_t>(shm::DropReason::kVipNoBackend)], ppf);
            continue;
          }
          const shm::BackendRecord& b =
              s.BackendsOf(v)[table[HashToSlot(h, static_cast<uint32_t>(table.size()))]];
          shm::Bump(lc.counters[static_cast<size_t>(shm::LcoreCounter::kNewFlows)]);
          shm::Bump(lc.counters[static_cast<size_t>(shm::LcoreCounter::kFlowHits)], ppf - 1);
          shm::Bump(lc.counters[static_cast<size_t>(shm::LcoreCounter::kTxPackets)], ppf);
          shm::Bump(lc.counters[static_cast<size_t>(shm::LcoreCounter::kTxBytes)], ppf * 1020);
          shm::Bump(lc.vips[v.id].new_flows);
          shm::Bump(lc.backends[b.id].new_flows);
          shm::Bump(lc.backends[b.id].packets, ppf);
          shm::Bump(lc.backends[b.id].bytes, ppf * 1020);
        }
      }
      drops_owed += control.drops_pps * dt;
      const auto drops = static_cast<uint64_t>(drops_owed);
      drops_owed -= static_cast<double>(drops);
      shm::Bump(stats.lcores[0].drops[static_cast<size_t>(shm::DropReason::kTxFull)], drops);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  for (int l = 0; l < lcores; ++l) stats.lcores[l].active.store(0);
  return 0;
}
