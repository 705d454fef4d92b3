// Snapshot swaps under traffic, with a real worker lcore, a real net_ring port, the control
// loop and the shm contract: thousands of swaps while packets flow, no packet lost or
// misrouted, corrupt snapshots rejected on the way, every retired state freed (the ASan build
// runs this too, and LeakSanitizer checks the frees at exit).
#include <rte_eth_ring.h>
#include <rte_ethdev.h>
#include <rte_launch.h>
#include <rte_malloc.h>
#include <rte_rcu_qsbr.h>
#include <rte_ring.h>

#include <atomic>
#include <map>
#include <thread>
#include <vector>

#include "dataplane/control.h"
#include "dataplane/worker.h"
#include "gtest/gtest.h"
#include "tests/dpdk/dpdk_testing.h"

namespace fulcrum {
namespace {

using ::fulcrum::testing::BytesOf;
using ::fulcrum::testing::MbufFromBytes;

std::vector<uint8_t> Frame(uint16_t flow, bool syn) {
  std::vector<uint8_t> f(14 + 40, 0);
  f[12] = 0x08;
  uint8_t* ip = f.data() + 14;
  ip[0] = 0x45;
  ip[3] = 40;
  ip[6] = 0x40;
  ip[8] = 64;
  ip[9] = 6;
  const uint8_t src[4] = {198, 51, static_cast<uint8_t>(flow >> 8), static_cast<uint8_t>(flow)};
  const uint8_t dst[4] = {10, 10, 0, 100};
  std::memcpy(ip + 12, src, 4);
  std::memcpy(ip + 16, dst, 4);
  uint8_t* tcp = ip + 20;
  tcp[0] = 0x9c;
  tcp[1] = static_cast<uint8_t>(flow);
  tcp[3] = 80;
  tcp[12] = 0x50;
  tcp[13] = syn ? 0x02 : 0x10;
  return f;
}

nlohmann::json Snapshot(uint64_t g) {
  nlohmann::json vip = {
      {"name", "web"}, {"address", "10.10.0.100"}, {"id", 0}, {"table_size", 4099}};
  // Four backends, always there; their weights change with every generation, so every swap
  // changes the table, and no tracked flow may move.
  for (int b = 1; b <= 4; ++b) {
    vip["backends"].push_back({{"address", "10.10.2." + std::to_string(10 + b)},
                               {"id", b},
                               {"weight", 1 + (g + static_cast<uint64_t>(b)) % 3}});
  }
  return {{"settings", {{"source_v4", "10.10.3.2"}}}, {"vips", nlohmann::json::array({vip})}};
}

TEST(SwapUnderTrafficTest, ThousandsOfSwapsLoseAndMisrouteNothing) {
  testing::ShmPrefix prefix;
  absl::StatusOr<shm::MappedSegment> stats_seg = shm::CreateStatsSegment(prefix.name());
  ASSERT_TRUE(stats_seg.ok()) << stats_seg.status();
  shm::StatsSegment& stats = shm::StatsOf(*stats_seg);
  stats.header.lcore_count.store(1);
  shm::ConfigWriter writer(shm::CreateConfigSegment(prefix.name()).value());

  rte_ring* rx = rte_ring_create("swap_rx", 4096, 0, RING_F_SP_ENQ | RING_F_SC_DEQ);
  rte_ring* tx = rte_ring_create("swap_tx", 4096, 0, RING_F_SP_ENQ | RING_F_SC_DEQ);
  ASSERT_TRUE(rx && tx);
  const int port = rte_eth_from_rings("swap_port", &rx, 1, &tx, 1, 0);
  ASSERT_GE(port, 0);
  rte_eth_conf conf{};
  ASSERT_EQ(rte_eth_dev_configure(static_cast<uint16_t>(port), 1, 1, &conf), 0);
  ASSERT_EQ(rte_eth_rx_queue_setup(static_cast<uint16_t>(port), 0, 1024, 0, nullptr,
                                   testing::EalEnvironment::pool()),
            0);
  ASSERT_EQ(rte_eth_tx_queue_setup(static_cast<uint16_t>(port), 0, 1024, 0, nullptr), 0);
  ASSERT_EQ(rte_eth_dev_start(static_cast<uint16_t>(port)), 0);

  WorkerShared shared;
  shared.rcu = static_cast<rte_rcu_qsbr*>(
      rte_zmalloc("swap_rcu", rte_rcu_qsbr_get_memsize(1), RTE_CACHE_LINE_SIZE));
  ASSERT_EQ(rte_rcu_qsbr_init(shared.rcu, 1), 0);
  MmapFlowTable flows = MmapFlowTable::Create(1 << 16).value();
  WorkerConfig cfg;
  cfg.queues = {{static_cast<uint16_t>(port), 0, {0x02, 0, 0, 0, 0, 0xaa}}};
  cfg.flows = &flows.table();
  cfg.stats = &stats.lcores[0];
  cfg.shared = &shared;

  {
    ControlOptions co;
    co.shm_prefix = prefix.name();
    co.quiet = true;
    Control control(co, &shared, &stats, {static_cast<uint16_t>(port)});
    ASSERT_TRUE(control.Start().ok());
    ASSERT_TRUE(control.attached());
    ASSERT_EQ(rte_eal_remote_launch(WorkerMain, &cfg, rte_get_next_lcore(-1, 1, 0)), 0);

    constexpr int kSwaps = 3000;
    constexpr uint64_t kCorruptEvery = 97;
    std::atomic<bool> writing = true;
    std::atomic<int> rejected_seen = 0;
    std::thread publisher([&] {
      for (uint64_t g = 1; g <= kSwaps; ++g) {
        absl::StatusOr<shm::Snapshot> s = testing::SnapshotFromJson(Snapshot(g));
        ASSERT_TRUE(s.ok());
        s->header.generation = g;
        s->Seal();
        ASSERT_TRUE(writer.Publish(*s).ok());
        if (g % kCorruptEvery == 0) {
          // A stray write into the slot just published: fulcrumd must refuse this generation.
          const uint64_t word = shm::ConfigHeaderOf(writer.segment()).published.load();
          shm::SlotOf(writer.segment(), shm::PublishedSlot(word)).vips[0].port ^= 1;
          while (writer.reader().rejected_generation < g) std::this_thread::yield();
          ++rejected_seen;
        } else {
          ASSERT_TRUE(writer.WaitForAck(g, absl::Seconds(10)).ok()) << g;
        }
      }
      writing = false;
    });

    // Traffic: 256 flows, over and over; the first packet of each is a SYN.
    constexpr uint16_t kFlows = 256;
    std::map<uint16_t, int> backend_of;
    uint64_t sent = 0, received = 0, misrouted = 0;
    bool first_round = true;
    auto drain = [&] {
      rte_mbuf* out[64];
      unsigned n;
      while ((n = rte_ring_dequeue_burst(tx, reinterpret_cast<void**>(out), 64, nullptr)) > 0) {
        for (unsigned i = 0; i < n; ++i) {
          const std::vector<uint8_t> b = BytesOf(out[i]);
          // Outer IPv4 destination (the backend), and the inner source (the flow).
          const int backend = b[14 + 19];
          const uint16_t flow = static_cast<uint16_t>(b[34 + 14] << 8 | b[34 + 15]);
          auto [it, inserted] = backend_of.emplace(flow, backend);
          if (!inserted && it->second != backend) ++misrouted;
          ++received;
          rte_pktmbuf_free(out[i]);
        }
      }
    };
    while (writing || first_round) {
      while (shared.state.load() == nullptr) control.Step();  // traffic starts on a snapshot
      for (uint16_t f = 0; f < kFlows; ++f) {
        rte_mbuf* m = MbufFromBytes(Frame(f, first_round));
        ASSERT_NE(m, nullptr);
        // At most 1024 packets in flight, less than either ring holds: a loss is the data
        // plane's, never the test's own backpressure.
        while (sent - received >= 1024) {
          drain();
          control.Step();
        }
        ASSERT_EQ(rte_ring_enqueue(rx, m), 0);
        ++sent;
      }
      first_round = false;
      control.Step();
      drain();
    }
    publisher.join();
    for (int i = 0; i < 1000 && received < sent; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
      drain();
    }
    shared.stop.store(true);
    rte_eal_mp_wait_lcore();
    control.Reclaim(true);

    EXPECT_EQ(received, sent) << "no packet lost";
    EXPECT_EQ(misrouted, 0u) << "no tracked flow moved";
    EXPECT_EQ(backend_of.size(), kFlows);
    EXPECT_EQ(rejected_seen.load(), kSwaps / static_cast<int>(kCorruptEvery));
    EXPECT_EQ(control.generation_in_use(), static_cast<uint64_t>(kSwaps));
    EXPECT_EQ(writer.reader().acked_generation, static_cast<uint64_t>(kSwaps));
    EXPECT_EQ(stats.lcores[0].drops[static_cast<size_t>(shm::DropReason::kTxFull)].load(), 0u);
    RecordProperty("packets", static_cast<int>(sent));
  }  // ~Control frees the last state
  rte_eth_dev_stop(static_cast<uint16_t>(port));
  rte_eth_dev_close(static_cast<uint16_t>(port));
  rte_free(shared.rcu);
}

}  // namespace
}  // namespace fulcrum

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  ::testing::AddGlobalTestEnvironment(new fulcrum::testing::EalEnvironment("0,1"));
  return RUN_ALL_TESTS();
}
