// fulcrum-test-writer: the data plane's test and benchmark writer of the config segment (the
// real writer is `fulcrumctl serve`). Publishes snapshots described in JSON
// (tests/testing/snapshot_json.h) and waits for fulcrumd's acknowledgement.
//
//   fulcrum-test-writer --shm-prefix P --snapshot FILE.json [--ack-timeout-ms 5000]
//       publishes FILE (generation: one above the published one) and waits for the ack;
//       exit 0 when acknowledged, 3 when rejected (reason on stderr), 4 on timeout.
//   fulcrum-test-writer --shm-prefix P --swap-bench N --vips V [--table-size M]
//       publishes a first snapshot of V VIPs (a cold load, timed apart), then N snapshots,
//       each changing one backend's weight in one VIP, and prints the publish-to-ack latency
//       of those: p50, p99 and max in microseconds.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <vector>

#include "absl/time/time.h"
#include "dataplane/shm/config_channel.h"
#include "dataplane/shm/segment.h"
#include "tests/testing/snapshot_json.h"

namespace fulcrum {
namespace {

int Publish(shm::ConfigWriter& writer, shm::Snapshot s, int timeout_ms) {
  s.header.generation = writer.published_generation() + 1;
  s.Seal();
  if (absl::Status st = writer.Publish(s); !st.ok()) {
    std::fprintf(stderr, "fulcrum-test-writer: %s\n", st.ToString().c_str());
    return 2;
  }
  const absl::Status ack = writer.WaitForAck(s.header.generation, absl::Milliseconds(timeout_ms));
  if (ack.ok()) {
    std::printf("generation %lu acknowledged\n", static_cast<unsigned long>(s.header.generation));
    return 0;
  }
  std::fprintf(stderr, "fulcrum-test-writer: %s\n", std::string(ack.message()).c_str());
  return absl::IsAborted(ack) ? 3 : 4;
}

int SwapBench(shm::ConfigWriter& writer, int swaps, int vips, uint32_t table_size) {
  nlohmann::json j;
  j["settings"] = {{"source_v4", "10.10.3.2"}};
  for (int v = 0; v < vips; ++v) {
    nlohmann::json vip = {
        {"name", "vip" + std::to_string(v)},
        {"address", "10.20." + std::to_string(v / 250) + "." + std::to_string(1 + v % 250)},
        {"id", v},
        {"table_size", table_size}};
    for (int b = 0; b < 8; ++b) {
      vip["backends"].push_back({{"address", "10.30." + std::to_string(v / 30) + "." +
                                                 std::to_string(1 + v % 30 * 8 + b)},
                                 {"id", v * 8 + b}});
    }
    j["vips"].push_back(vip);
  }
  absl::StatusOr<testing::SnapshotDescription> d = testing::DescriptionFromJson(j);
  if (!d.ok()) {
    std::fprintf(stderr, "%s\n", d.status().ToString().c_str());
    return 2;
  }
  // Build every VIP's table once; a swap changes one backend weight in one VIP, which is what
  // an operator's `weight` or a health-check flap does.
  absl::StatusOr<shm::Snapshot> base = shm::BuildSnapshot(1, d->settings, d->vips);
  if (!base.ok()) {
    std::fprintf(stderr, "%s\n", base.status().ToString().c_str());
    return 2;
  }
  // The first snapshot is a cold load (every table copied, checked and built), not a swap:
  // it is timed on its own, and the swaps start from it.
  base->header.generation = writer.published_generation() + 1;
  base->Seal();
  const auto load_start = std::chrono::steady_clock::now();
  if (!writer.Publish(*base).ok()) return 2;
  if (const absl::Status ack = writer.WaitForAck(base->header.generation, absl::Seconds(5));
      !ack.ok()) {
    std::fprintf(stderr, "initial load: %s\n", std::string(ack.message()).c_str());
    return 4;
  }
  const double load_us =
      std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - load_start)
          .count();
  std::vector<double> us;
  std::vector<double> fill_us;
  for (int i = 0; i < swaps; ++i) {
    const int v = i % vips;
    shm::VipSpec one = d->vips[v];
    one.backends[i % 8].weight = 1 + (i / vips) % 3;
    absl::StatusOr<shm::Snapshot> changed = shm::BuildSnapshot(1, d->settings, {&one, 1});
    if (!changed.ok()) return 2;
    shm::Snapshot s = *base;
    s.backends.erase(s.backends.begin() + s.vips[v].backend_begin,
                     s.backends.begin() + s.vips[v].backend_begin + s.vips[v].backend_count);
    s.backends.insert(s.backends.begin() + s.vips[v].backend_begin, changed->backends.begin(),
                      changed->backends.end());
    s.tables[v] = changed->tables[0];
    s.header.generation = writer.published_generation() + 1;
    s.Seal();
    const auto start = std::chrono::steady_clock::now();
    if (!writer.Publish(s).ok()) return 2;
    const auto published = std::chrono::steady_clock::now();
    const absl::Status ack = writer.WaitForAck(s.header.generation, absl::Seconds(5));
    const auto end = std::chrono::steady_clock::now();
    if (!ack.ok()) {
      std::fprintf(stderr, "swap %d: %s\n", i, std::string(ack.message()).c_str());
      return 4;
    }
    fill_us.push_back(std::chrono::duration<double, std::micro>(published - start).count());
    us.push_back(std::chrono::duration<double, std::micro>(end - published).count());
    *base = s;
  }
  auto pct = [](std::vector<double> v, double p) {
    std::sort(v.begin(), v.end());
    return v[static_cast<size_t>(p * static_cast<double>(v.size() - 1))];
  };
  std::printf(
      "swap latency, %d swaps of a %d-VIP snapshot (table %u), publish to ack: p50 %.0f "
      "us, p99 %.0f us, max %.0f us; filling the slot before publishing: p50 %.0f us; the "
      "initial load, publish to ack: %.0f us\n",
      swaps, vips, table_size, pct(us, 0.5), pct(us, 0.99), pct(us, 1.0), pct(fill_us, 0.5),
      load_us);
  return 0;
}

}  // namespace
}  // namespace fulcrum

int main(int argc, char** argv) {
  CLI::App app("fulcrum-test-writer: publishes test snapshots to fulcrumd");
  std::string prefix = "fulcrum";
  std::string snapshot;
  int timeout_ms = 5000;
  int swaps = 0;
  int vips = 256;
  uint32_t table_size = 65537;
  app.add_option("--shm-prefix", prefix)->capture_default_str();
  app.add_option("--snapshot", snapshot, "JSON snapshot description to publish");
  app.add_option("--ack-timeout-ms", timeout_ms)->capture_default_str();
  app.add_option("--swap-bench", swaps, "measure this many swaps instead");
  app.add_option("--vips", vips, "VIPs in the swap benchmark")->capture_default_str();
  app.add_option("--table-size", table_size, "Maglev table size in the swap benchmark")
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  absl::StatusOr<fulcrum::shm::MappedSegment> seg = fulcrum::shm::CreateConfigSegment(prefix);
  if (!seg.ok()) {
    std::fprintf(stderr, "fulcrum-test-writer: %s\n", seg.status().ToString().c_str());
    return 2;
  }
  fulcrum::shm::ConfigWriter writer(*std::move(seg));
  writer.Heartbeat();
  if (swaps > 0) return fulcrum::SwapBench(writer, swaps, vips, table_size);
  std::ifstream in(snapshot);
  if (!in) {
    std::fprintf(stderr, "fulcrum-test-writer: cannot read '%s'\n", snapshot.c_str());
    return 2;
  }
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    std::fprintf(stderr, "fulcrum-test-writer: %s: %s\n", snapshot.c_str(), e.what());
    return 2;
  }
  absl::StatusOr<fulcrum::shm::Snapshot> s = fulcrum::testing::SnapshotFromJson(j);
  if (!s.ok()) {
    std::fprintf(stderr, "fulcrum-test-writer: %s\n", s.status().ToString().c_str());
    return 2;
  }
  return fulcrum::Publish(writer, *std::move(s), timeout_ms);
}
