// Helpers for the dpdk suite: an EAL for the test process, mbufs from bytes and back, and a
// harness that pushes snapshots through the real shm contract into a ForwardingState.
#pragma once

#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_mbuf.h>
#include <sys/mman.h>
#include <unistd.h>

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "dataplane/core/flow_table.h"
#include "dataplane/forwarding.h"
#include "dataplane/pipeline.h"
#include "dataplane/shm/config_channel.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/testing/snapshot_json.h"

namespace fulcrum::testing {

// One EAL per test process: --no-huge, no PCI, a file prefix of its own, `lcores` lcores.
class EalEnvironment : public ::testing::Environment {
 public:
  explicit EalEnvironment(std::string lcores = "0") : lcores_(std::move(lcores)) {}
  void SetUp() override {
    prefix_ = "fulcrum-dpdk-test-" + std::to_string(getpid());
    const std::string file_prefix = "--file-prefix=" + prefix_;
    std::vector<std::string> args = {"dpdk_test",
                                     "--no-huge",
                                     "-m",
                                     "512",
                                     "--no-pci",
                                     "-l",
                                     lcores_,
                                     file_prefix,
                                     "--no-shconf",
                                     "--no-telemetry",
                                     "--log-level=error"};
    std::vector<char*> argv;
    for (std::string& a : args) argv.push_back(a.data());
    ASSERT_GE(rte_eal_init(static_cast<int>(argv.size()), argv.data()), 0)
        << rte_strerror(rte_errno);
    pool_ = rte_pktmbuf_pool_create("test_mbufs", 16383, 256, 0, RTE_MBUF_DEFAULT_BUF_SIZE, 0);
    ASSERT_NE(pool_, nullptr) << rte_strerror(rte_errno);
  }
  void TearDown() override {
    rte_eal_cleanup();
    std::error_code ec;
    std::filesystem::remove_all("/var/run/dpdk/" + prefix_, ec);
  }
  static rte_mempool* pool() { return pool_; }

 private:
  std::string lcores_;
  std::string prefix_;
  static inline rte_mempool* pool_ = nullptr;
};

inline rte_mbuf* MbufFromBytes(const std::vector<uint8_t>& bytes) {
  rte_mbuf* m = rte_pktmbuf_alloc(EalEnvironment::pool());
  if (m == nullptr) return nullptr;
  char* p = rte_pktmbuf_append(m, static_cast<uint16_t>(bytes.size()));
  if (p == nullptr) {
    rte_pktmbuf_free(m);
    return nullptr;
  }
  if (!bytes.empty()) std::memcpy(p, bytes.data(), bytes.size());
  return m;
}

inline std::vector<uint8_t> BytesOf(const rte_mbuf* m) {
  std::vector<uint8_t> out(m->pkt_len);
  const void* p = rte_pktmbuf_read(m, 0, m->pkt_len, out.data());
  if (p != out.data()) std::memcpy(out.data(), p, m->pkt_len);
  return out;
}

// Unlinks a test's shm segments when it ends.
class ShmPrefix {
 public:
  ShmPrefix() {
    static int counter = 0;
    name_ = "fulcrum-dpdk-" + std::to_string(getpid()) + "-" + std::to_string(++counter);
  }
  ~ShmPrefix() {
    shm_unlink(shm::ConfigSegmentName(name_)->c_str());
    shm_unlink(shm::StatsSegmentName(name_)->c_str());
  }
  const std::string& name() const { return name_; }

 private:
  std::string name_;
};

// A worker lcore's state without the lcore: flow table, stats block, and the current
// forwarding state, fed by snapshots that go through ConfigWriter -> ConfigReader.
class PipelineHarness {
 public:
  explicit PipelineHarness(uint64_t flow_capacity = 1 << 16)
      : flows_(MmapFlowTable::Create(flow_capacity).value()),
        stats_(std::make_unique<shm::LcoreStats>()),
        writer_(shm::CreateConfigSegment(prefix_.name()).value()),
        reader_(shm::AttachConfigSegment(prefix_.name()).value()) {
    ctx_.flows = &flows_.table();
    ctx_.stats = stats_.get();
    ctx_.tsc_hz = 1'000'000'000;
  }

  // Publishes `snapshot` (JSON, see snapshot_json.h) and takes it the way the control loop
  // does. Returns the reader's verdict reason (kNone when the state was swapped in).
  shm::SnapshotReject Apply(const nlohmann::json& snapshot) {
    absl::StatusOr<shm::Snapshot> s = SnapshotFromJson(snapshot);
    EXPECT_TRUE(s.ok()) << s.status();
    if (!s.ok()) return shm::SnapshotReject::kSettings;
    s->header.generation = writer_.published_generation() + 1;
    s->Seal();
    EXPECT_TRUE(writer_.Publish(*s).ok());
    return Take();
  }
  shm::SnapshotReject Take() {
    shm::ConfigReader::Result r = reader_.Poll(state_ ? &state_->snapshot() : nullptr);
    if (r.kind != shm::ConfigReader::Result::kSnapshot) return r.verdict.reason;
    absl::StatusOr<std::unique_ptr<ForwardingState>> st =
        ForwardingState::Build(std::move(r.snapshot));
    EXPECT_TRUE(st.ok()) << st.status();
    if (!st.ok()) return shm::SnapshotReject::kEncap;
    state_ = *std::move(st);
    reader_.Ack(r.generation);
    (void)flows_.table().SetTimeouts(state_->timeouts());
    return shm::SnapshotReject::kNone;
  }

  void Run(rte_mbuf* const* pkts, uint16_t n, BurstOutput& out, uint32_t now_s = 10,
           uint64_t now_tsc = 1'000'000'000) {
    out.n_tx = out.n_kernel = 0;
    ProcessBurst(state_.get(), pkts, n, port_mac, now_s, now_tsc, ctx_, out);
  }

  // A counter by its metric name: an LcoreCounter, or "drop_" + a DropReason.
  uint64_t Counter(const std::string& name) const {
    for (size_t i = 0; i < shm::kLcoreCounterCount; ++i) {
      if (ReasonName(shm::LcoreCounter(i)) == name) return stats_->counters[i].load();
    }
    for (size_t i = 0; i < shm::kDropReasonCount; ++i) {
      if ("drop_" + std::string(ReasonName(shm::DropReason(i))) == name) {
        return stats_->drops[i].load();
      }
    }
    ADD_FAILURE() << "no counter named " << name;
    return 0;
  }
  uint64_t TotalDrops() const {
    uint64_t sum = 0;
    for (size_t i = 0; i < shm::kDropReasonCount; ++i) sum += stats_->drops[i].load();
    return sum;
  }

  const ForwardingState* state() const { return state_.get(); }
  shm::LcoreStats& stats() { return *stats_; }
  FlowTable& flows() { return flows_.table(); }
  shm::ConfigWriter& writer() { return writer_; }

  MacAddress port_mac{0x02, 0, 0, 0, 0, 0xaa};

 private:
  ShmPrefix prefix_;
  MmapFlowTable flows_;
  std::unique_ptr<shm::LcoreStats> stats_;
  shm::ConfigWriter writer_;
  shm::ConfigReader reader_;
  std::unique_ptr<ForwardingState> state_;
  LcoreContext ctx_;
};

}  // namespace fulcrum::testing
