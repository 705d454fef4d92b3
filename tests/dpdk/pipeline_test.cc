// The real pipeline on real mbufs, with snapshots pushed through the shm contract: the scapy
// fixture table (verdict, output bytes, counters), flow semantics across swaps, and
// conservation of packets for every malformed input the parser fixtures hold.
#include <rte_mbuf.h>

#include <cstdlib>
#include <fstream>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "dataplane/core/parse.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/dpdk/dpdk_testing.h"
#include "tests/testing/testing.h"

namespace fulcrum {
namespace {

using ::fulcrum::testing::BytesOf;
using ::fulcrum::testing::FromHex;
using ::fulcrum::testing::MbufFromBytes;
using ::fulcrum::testing::PipelineHarness;
using ::fulcrum::testing::ToHex;
using nlohmann::json;

const json& PipelineFixtures() {
  static const json* fixtures = [] {
    const char* path = std::getenv("FULCRUM_PIPELINE_FIXTURES");
    std::ifstream in(path == nullptr ? "" : path);
    return new json(in ? json::parse(in) : json::object());
  }();
  return *fixtures;
}

unsigned PoolInUse() { return rte_mempool_in_use_count(testing::EalEnvironment::pool()); }

TEST(PipelineTest, EveryFixtureGivesItsVerdictOutputBytesAndCounters) {
  ASSERT_TRUE(PipelineFixtures().contains("cases"))
      << "run through meson test, which sets FULCRUM_PIPELINE_FIXTURES";
  const unsigned in_use_before = PoolInUse();
  for (const json& c : PipelineFixtures()["cases"]) {
    const std::string name = c["name"];
    SCOPED_TRACE(name);
    PipelineHarness h;
    ASSERT_EQ(h.Apply(c["snapshot"]), shm::SnapshotReject::kNone);
    const std::vector<uint8_t> frame = FromHex(c["frame"]);
    rte_mbuf* m = MbufFromBytes(frame);
    ASSERT_NE(m, nullptr);
    BurstOutput out;
    h.Run(&m, 1, out);
    const std::string verdict = c["verdict"];
    if (verdict == "tx") {
      ASSERT_EQ(out.n_tx, 1);
      EXPECT_EQ(out.n_kernel, 0);
      const std::vector<uint8_t> got = BytesOf(out.tx[0]);
      EXPECT_EQ(ToHex(got.data(), got.size()), c["output"].get<std::string>());
      rte_pktmbuf_free(out.tx[0]);
    } else if (verdict == "kernel") {
      ASSERT_EQ(out.n_kernel, 1);
      EXPECT_EQ(out.n_tx, 0);
      EXPECT_EQ(BytesOf(out.kernel[0]), frame) << "the kernel gets the frame unchanged";
      rte_pktmbuf_free(out.kernel[0]);
    } else {
      EXPECT_EQ(out.n_tx, 0);
      EXPECT_EQ(out.n_kernel, 0);
      EXPECT_EQ(h.Counter("drop_" + c["drop"].get<std::string>()), 1u);
      EXPECT_EQ(h.TotalDrops(), 1u) << "exactly one reason";
    }
    for (const auto& [counter, value] : c["counters"].items()) {
      EXPECT_EQ(h.Counter(counter), value.get<uint64_t>()) << counter;
    }
  }
  EXPECT_EQ(PoolInUse(), in_use_before) << "every mbuf was sent or freed exactly once";
}

TEST(PipelineTest, FixturesCoverEveryVerdictAndTheDropReasonsThatPacketsCanCause) {
  std::set<std::string> verdicts, drops;
  for (const json& c : PipelineFixtures()["cases"]) {
    verdicts.insert(c["verdict"].get<std::string>());
    if (c.contains("drop")) drops.insert(c["drop"].get<std::string>());
  }
  EXPECT_THAT(verdicts, ::testing::ElementsAre("drop", "kernel", "tx"));
  for (const char* r : {"malformed", "vip_no_backend", "fragment", "mtu_exceeded"}) {
    EXPECT_TRUE(drops.count(r)) << r;
  }
}

// --- Flow semantics ---------------------------------------------------------------------------

constexpr char kVip[] = "10.10.0.100";

json Snapshot(const std::vector<std::pair<int, std::string>>& backends, bool extra = false) {
  json vip = {{"name", "web"}, {"address", kVip}, {"port", 80}, {"id", 3}, {"table_size", 65537}};
  for (const auto& [id, state] : backends) {
    vip["backends"].push_back(
        {{"address", "10.10.2." + std::to_string(10 + id)}, {"id", id}, {"state", state}});
  }
  if (extra) {
    vip["backends"].push_back({{"address", "10.10.2.99"}, {"id", 99}});
  }
  return {{"settings", {{"source_v4", "10.10.3.2"}}}, {"vips", json::array({vip})}};
}

std::vector<uint8_t> Tcp(uint16_t sport, uint8_t flags, const char* vip = kVip) {
  // Ethernet + IPv4 + TCP, no payload, DF.
  std::vector<uint8_t> f(14 + 40, 0);
  f[12] = 0x08;
  uint8_t* ip = f.data() + 14;
  ip[0] = 0x45;
  ip[3] = 40;
  ip[6] = 0x40;
  ip[8] = 64;
  ip[9] = 6;
  const IpAddress src =
      IpAddress::V4(198, 51, static_cast<uint8_t>(sport >> 8), static_cast<uint8_t>(sport));
  std::memcpy(ip + 12, src.bytes.data(), 4);
  std::memcpy(ip + 16, IpAddress::Parse(vip)->bytes.data(), 4);
  uint8_t* tcp = ip + 20;
  tcp[0] = static_cast<uint8_t>(sport >> 8);
  tcp[1] = static_cast<uint8_t>(sport);
  tcp[3] = 80;
  tcp[12] = 0x50;
  tcp[13] = flags;
  return f;
}

// Sends one packet per flow (sports), returns each flow's backend (outer destination's last
// byte), or -1 when the packet was not forwarded.
std::vector<int> Send(PipelineHarness& h, const std::vector<uint16_t>& sports, uint8_t flags,
                      uint32_t now_s = 10) {
  std::vector<int> backends;
  for (size_t i = 0; i < sports.size(); i += 32) {
    rte_mbuf* burst[32];
    const uint16_t n = static_cast<uint16_t>(std::min<size_t>(32, sports.size() - i));
    for (uint16_t j = 0; j < n; ++j) burst[j] = MbufFromBytes(Tcp(sports[i + j], flags));
    BurstOutput out;
    h.Run(burst, n, out, now_s);
    EXPECT_EQ(out.n_kernel, 0);
    // Outputs keep burst order; a packet that was dropped is missing.
    uint16_t t = 0;
    for (uint16_t j = 0; j < n; ++j) {
      if (t < out.n_tx) {
        const std::vector<uint8_t> b = BytesOf(out.tx[t]);
        backends.push_back(b[14 + 19] - 10);  // outer IPv4 destination, last byte
        rte_pktmbuf_free(out.tx[t++]);
      } else {
        backends.push_back(-1);
      }
    }
  }
  return backends;
}

std::vector<uint16_t> Ports(int n, uint16_t first = 1000) {
  std::vector<uint16_t> p;
  for (int i = 0; i < n; ++i) p.push_back(static_cast<uint16_t>(first + i));
  return p;
}

constexpr uint8_t kSyn = 0x02, kAck = 0x10, kFin = 0x01;

// The per-VIP and per-backend counters add up runs of packets to one (VIP, backend) pair within
// a burst: with flows spread over three backends the runs break every few packets, and every
// break must hand its counts to both the VIP and the backend.
TEST(PipelineFlowTest, PerVipAndPerBackendCountersMatchWhatWasSent) {
  PipelineHarness h;
  ASSERT_EQ(h.Apply(Snapshot({{1, "active"}, {2, "active"}, {3, "active"}})),
            shm::SnapshotReject::kNone);
  const auto flows = Ports(500);
  const std::vector<int> syn = Send(h, flows, kSyn);
  EXPECT_EQ(Send(h, flows, kAck), syn);
  std::map<int, uint64_t> per_backend;
  for (int b : syn) ++per_backend[b];
  ASSERT_EQ(per_backend.size(), 3u);
  // No backend left: new flows are dropped and counted against the VIP.
  ASSERT_EQ(h.Apply(Snapshot({{1, "down"}, {2, "down"}, {3, "down"}})), shm::SnapshotReject::kNone);
  EXPECT_EQ(Send(h, Ports(10, 5000), kSyn), std::vector<int>(10, -1));

  constexpr uint64_t kIpLen = 40;  // what a VIP's bytes count: the inner IP packet
  const shm::VipCounters& vip = h.stats().vips[3];
  EXPECT_EQ(vip.packets.load(), 1000u);
  EXPECT_EQ(vip.bytes.load(), 1000u * kIpLen);
  EXPECT_EQ(vip.new_flows.load(), 500u);
  EXPECT_EQ(vip.drops.load(), 10u);
  for (const auto& [b, n] : per_backend) {
    const shm::BackendCounters& c = h.stats().backends[b];
    EXPECT_EQ(c.packets.load(), 2 * n) << "backend " << b;
    EXPECT_EQ(c.bytes.load(), 2 * n * kIpLen) << "backend " << b;
    EXPECT_EQ(c.new_flows.load(), n) << "backend " << b;
  }
}

// Some PMDs hand over packets in buffers the mbuf does not own (an external buffer: mlx5's
// multi-packet receive queues). The mbuf's EXTERNAL flag is what makes freeing it release that
// buffer rather than return the foreign memory to the pool as the mbuf's own: encapsulation in
// place must keep it (a Reframe that zeroed ol_flags lost it).
TEST(PipelineFlowTest, AnExternalBufferMbufIsForwardedAsOneAndItsBufferReleasedOnFree) {
  PipelineHarness h;
  ASSERT_EQ(h.Apply(Snapshot({{1, "active"}, {2, "active"}, {3, "active"}})),
            shm::SnapshotReject::kNone);
  const unsigned in_use = PoolInUse();
  alignas(64) static uint8_t buffer[2048];
  uint16_t buf_len = sizeof(buffer);
  int released = 0;
  rte_mbuf_ext_shared_info* shinfo = rte_pktmbuf_ext_shinfo_init_helper(
      buffer, &buf_len, [](void*, void* opaque) { ++*static_cast<int*>(opaque); }, &released);
  ASSERT_NE(shinfo, nullptr);
  rte_mbuf* m = rte_pktmbuf_alloc(testing::EalEnvironment::pool());
  ASSERT_NE(m, nullptr);
  rte_pktmbuf_attach_extbuf(m, buffer, 0, buf_len, shinfo);
  m->data_off = RTE_PKTMBUF_HEADROOM;  // attaching leaves none; a PMD sets its own
  const std::vector<uint8_t> frame = Tcp(1000, kSyn);
  char* data = rte_pktmbuf_append(m, static_cast<uint16_t>(frame.size()));
  ASSERT_NE(data, nullptr);
  std::memcpy(data, frame.data(), frame.size());

  BurstOutput out;
  h.Run(&m, 1, out);
  ASSERT_EQ(out.n_tx, 1);
  ASSERT_EQ(out.tx[0], m);
  EXPECT_TRUE(RTE_MBUF_HAS_EXTBUF(m));
  EXPECT_EQ(rte_pktmbuf_mtod(m, uint8_t*) + m->data_len, buffer + RTE_PKTMBUF_HEADROOM + 54);
  EXPECT_EQ(BytesOf(m)[14 + 9], 4) << "IPv4 in IPv4 to the backend";
  rte_pktmbuf_free(m);
  EXPECT_EQ(released, 1);
  EXPECT_EQ(PoolInUse(), in_use);
}

TEST(PipelineFlowTest, EstablishedFlowsKeepTheirBackendWhenABackendIsAdded) {
  PipelineHarness h;
  ASSERT_EQ(h.Apply(Snapshot({{1, "active"}, {2, "active"}, {3, "active"}})),
            shm::SnapshotReject::kNone);
  const auto flows = Ports(3000);
  const std::vector<int> first = Send(h, flows, kSyn);
  std::map<int, int> spread;
  for (int b : first) ++spread[b];
  EXPECT_EQ(spread.size(), 3u);
  for (const auto& [b, n] : spread) EXPECT_NEAR(n, 1000, 100) << "backend " << b;
  EXPECT_EQ(h.Counter("new_flows"), 3000u);

  ASSERT_EQ(h.Apply(Snapshot({{1, "active"}, {2, "active"}, {3, "active"}, {4, "active"}})),
            shm::SnapshotReject::kNone);
  EXPECT_EQ(Send(h, flows, kAck), first) << "tracked flows stay where they are";
  // New flows reach the new backend too.
  const std::vector<int> fresh = Send(h, Ports(3000, 20000), kSyn);
  EXPECT_GT(std::count(fresh.begin(), fresh.end(), 4), 600);
}

TEST(PipelineFlowTest, DrainingKeepsExistingFlowsAndTakesNoNewOnes) {
  PipelineHarness h;
  ASSERT_EQ(h.Apply(Snapshot({{1, "active"}, {2, "active"}, {3, "active"}})),
            shm::SnapshotReject::kNone);
  const auto flows = Ports(1500);
  const std::vector<int> first = Send(h, flows, kSyn);
  ASSERT_EQ(h.Apply(Snapshot({{1, "active"}, {2, "draining"}, {3, "active"}})),
            shm::SnapshotReject::kNone);
  EXPECT_EQ(Send(h, flows, kAck), first);
  const std::vector<int> fresh = Send(h, Ports(1500, 20000), kSyn);
  EXPECT_EQ(std::count(fresh.begin(), fresh.end(), 2), 0);
  EXPECT_EQ(std::count(fresh.begin(), fresh.end(), -1), 0);
}

TEST(PipelineFlowTest, FlowsOfADownOrRemovedBackendMoveAndOnlyThose) {
  PipelineHarness h;
  ASSERT_EQ(h.Apply(Snapshot({{1, "active"}, {2, "active"}, {3, "active"}})),
            shm::SnapshotReject::kNone);
  const auto flows = Ports(1500);
  const std::vector<int> first = Send(h, flows, kSyn);
  for (const char* what : {"down", "removed"}) {
    SCOPED_TRACE(what);
    const json next = std::string(what) == "down"
                          ? Snapshot({{1, "active"}, {2, "down"}, {3, "active"}})
                          : Snapshot({{1, "active"}, {3, "active"}});
    ASSERT_EQ(h.Apply(next), shm::SnapshotReject::kNone);
    const std::vector<int> after = Send(h, flows, kAck);
    for (size_t i = 0; i < flows.size(); ++i) {
      if (first[i] == 2) {
        EXPECT_NE(after[i], 2);
        EXPECT_NE(after[i], -1);
      } else {
        EXPECT_EQ(after[i], first[i]) << "flow " << i << " had a healthy backend";
      }
    }
  }
  EXPECT_GT(h.Counter("repicked"), 0u);
}

TEST(PipelineFlowTest, ABackendMovedToAnotherVipIsNotKeptByItsOldFlows) {
  PipelineHarness h;
  json two = Snapshot({{1, "active"}, {2, "active"}});
  ASSERT_EQ(h.Apply(two), shm::SnapshotReject::kNone);
  const auto flows = Ports(500);
  const std::vector<int> first = Send(h, flows, kSyn);
  // Backend id 2 now serves another VIP; this VIP keeps only backend 1.
  json moved = Snapshot({{1, "active"}});
  moved["vips"].push_back({{"name", "other"},
                           {"address", "10.10.0.200"},
                           {"id", 4},
                           {"backends", {{{"address", "10.10.2.12"}, {"id", 2}}}}});
  ASSERT_EQ(h.Apply(moved), shm::SnapshotReject::kNone);
  for (int b : Send(h, flows, kAck)) EXPECT_EQ(b, 1);
}

TEST(PipelineFlowTest, TwoPacketsOfANewFlowInOneBurstMakeOneEntryAndOneNewFlow) {
  PipelineHarness h;
  ASSERT_EQ(h.Apply(Snapshot({{1, "active"}, {2, "active"}, {3, "active"}})),
            shm::SnapshotReject::kNone);
  const std::vector<int> b = Send(h, {7, 7, 7, 8}, kAck);
  EXPECT_EQ(b[0], b[1]);
  EXPECT_EQ(b[1], b[2]);
  EXPECT_EQ(h.Counter("new_flows"), 2u);
  EXPECT_EQ(h.flows().used(), 2u);
}

// A packet that repeats the flow of the packet before it in the burst takes that packet's
// lookup and selection (pipeline.cc, docs/dataplane.md "Runs of a flow"): nothing that leaves the
// pipeline may tell. The same packets go through one harness as one burst and through another one
// packet a burst; every output byte, in order, and every counter must agree, over runs that hit,
// insert, re-pick, exceed the MTU, find no backend or a full table, with SYNs, FINs and host
// traffic between them.
struct Frame {
  uint16_t sport;
  uint8_t flags;
  uint16_t ip_len = 40;  // with DF: above 1480 the IPIP tunnel cannot carry it
  const char* dst = kVip;
};

std::vector<uint8_t> TcpFrame(const Frame& f) {
  std::vector<uint8_t> bytes = Tcp(f.sport, f.flags, f.dst);
  bytes.resize(14 + f.ip_len, 0xab);
  bytes[14 + 2] = static_cast<uint8_t>(f.ip_len >> 8);
  bytes[14 + 3] = static_cast<uint8_t>(f.ip_len);
  return bytes;
}

// Everything a burst left behind: the frames sent and handed to the kernel, in order.
struct Outputs {
  std::vector<std::string> tx, kernel;
  void Take(BurstOutput& out) {
    for (uint16_t t = 0; t < out.n_tx; ++t) {
      const std::vector<uint8_t> b = BytesOf(out.tx[t]);
      tx.push_back(ToHex(b.data(), b.size()));
      rte_pktmbuf_free(out.tx[t]);
    }
    for (uint16_t t = 0; t < out.n_kernel; ++t) {
      const std::vector<uint8_t> b = BytesOf(out.kernel[t]);
      kernel.push_back(ToHex(b.data(), b.size()));
      rte_pktmbuf_free(out.kernel[t]);
    }
  }
};

void ExpectRunsChangeNothing(PipelineHarness& burst, PipelineHarness& alone,
                             const std::vector<Frame>& frames, uint32_t now_s) {
  ASSERT_LE(frames.size(), kMaxBurst);
  rte_mbuf* pkts[kMaxBurst];
  for (size_t i = 0; i < frames.size(); ++i) pkts[i] = MbufFromBytes(TcpFrame(frames[i]));
  Outputs a, b;
  BurstOutput out;
  burst.Run(pkts, static_cast<uint16_t>(frames.size()), out, now_s);
  a.Take(out);
  for (const Frame& f : frames) {
    rte_mbuf* m = MbufFromBytes(TcpFrame(f));
    alone.Run(&m, 1, out, now_s);
    b.Take(out);
  }
  EXPECT_EQ(a.tx, b.tx);
  EXPECT_EQ(a.kernel, b.kernel);
  // Every counter but flow_repeats, which counts the runs themselves: a burst of one has none.
  EXPECT_EQ(alone.Counter("flow_repeats"), 0u);
  const auto counters = [](PipelineHarness& h) {
    std::vector<uint64_t> c;
    const auto& st = h.stats();
    for (const auto& x : st.counters) c.push_back(x.load());
    c[static_cast<size_t>(shm::LcoreCounter::kFlowRepeats)] = 0;
    for (const auto& x : st.drops) c.push_back(x.load());
    for (const auto& x : st.parse) c.push_back(x.load());
    for (const auto& x : st.vips) c.insert(c.end(), {x.packets, x.bytes, x.new_flows, x.drops});
    for (const auto& x : st.backends) c.insert(c.end(), {x.packets, x.bytes, x.new_flows});
    return c;
  };
  const std::vector<uint64_t> ca = counters(burst), cb = counters(alone);
  for (size_t i = 0; i < ca.size(); ++i) EXPECT_EQ(ca[i], cb[i]) << "counter " << i;
  EXPECT_EQ(burst.flows().used(), alone.flows().used());
}

std::vector<Frame> Runs(uint16_t first_sport, int flows, int packets, uint8_t flags) {
  std::vector<Frame> f;
  for (int i = 0; i < flows; ++i) {
    for (int j = 0; j < packets; ++j) f.push_back({static_cast<uint16_t>(first_sport + i), flags});
  }
  return f;
}

TEST(PipelineFlowTest, ARunOfOneFlowInABurstIsForwardedAndCountedAsIfEachPacketCameAlone) {
  PipelineHarness burst, alone;
  const json three = Snapshot({{1, "active"}, {2, "active"}, {3, "active"}});
  ASSERT_EQ(burst.Apply(three), shm::SnapshotReject::kNone);
  ASSERT_EQ(alone.Apply(three), shm::SnapshotReject::kNone);
  // New flows with and without a SYN, a second SYN, a FIN and a packet after it, the host's
  // traffic between two packets of a flow, a flow that comes back after another, and a run too
  // big for the tunnel (frag-needed to the client, the repeats' addresses from their flow).
  const std::vector<Frame> mixed = {
      {1, kSyn},        {1, kAck},
      {1, kAck},        {1, kAck},
      {2, kAck},        {2, kAck},
      {1, kAck},        {3, kSyn},
      {3, kSyn},        {3, kAck},
      {3, kFin | kAck}, {3, kAck},
      {4, kAck},        {4, kAck, 40, "10.10.3.2"},
      {4, kAck},        {5, kAck, 1490},
      {5, kAck, 1490},  {5, kAck, 1490},
      {5, kAck, 60},
  };
  ExpectRunsChangeNothing(burst, alone, mixed, 10);
  // The repeats the burst had: flow 1's three ACKs after its SYN, flow 2's second packet, flow
  // 3's ACK after its second SYN and the one after its FIN, flow 4's across the host's packet,
  // and flow 5's three after its first.
  EXPECT_EQ(burst.Counter("flow_repeats"), 10u);
  EXPECT_GT(burst.Counter("flow_hits"), 0u);
  EXPECT_EQ(burst.Counter("icmp_sent"), 3u);
  EXPECT_EQ(burst.Counter("drop_mtu_exceeded"), 3u);
  // Tracked flows in runs: hits, then re-picks away from a backend that went down.
  ExpectRunsChangeNothing(burst, alone, Runs(1000, 12, 5, kAck), 11);
  const json down = Snapshot({{1, "active"}, {2, "down"}, {3, "active"}});
  ASSERT_EQ(burst.Apply(down), shm::SnapshotReject::kNone);
  ASSERT_EQ(alone.Apply(down), shm::SnapshotReject::kNone);
  ExpectRunsChangeNothing(burst, alone, Runs(1000, 12, 5, kAck), 12);
  EXPECT_GT(burst.Counter("repicked"), 0u);
  // Bursts of the most ProcessBurst takes, fulcrumd's default RX burst: 16 new flows of 4
  // packets, then those 16 flows and 48 new ones, each once. The repeats so far: the mixed
  // burst's 10, 4 for each of 12 flows in two bursts, and 3 for each of the 16 flows here.
  ExpectRunsChangeNothing(burst, alone, Runs(3000, kMaxBurst / 4, 4, kAck), 12);
  ExpectRunsChangeNothing(burst, alone, Runs(3000, kMaxBurst, 1, kAck), 12);
  EXPECT_EQ(burst.Counter("flow_repeats"), 10u + 2 * 12 * 4 + kMaxBurst / 4 * 3);
  // No backend at all: a run of a tracked flow and one of a new flow, all dropped and counted.
  const json none = Snapshot({{1, "down"}, {2, "down"}, {3, "down"}});
  ASSERT_EQ(burst.Apply(none), shm::SnapshotReject::kNone);
  ASSERT_EQ(alone.Apply(none), shm::SnapshotReject::kNone);
  ExpectRunsChangeNothing(burst, alone, Runs(1000, 2, 6, kAck), 13);
  ExpectRunsChangeNothing(burst, alone, Runs(7000, 2, 6, kAck), 13);
  EXPECT_EQ(burst.Counter("drop_vip_no_backend"), 24u);

  // A full table: every packet of a flow that could not be inserted is a new flow again.
  PipelineHarness small_burst(/*flow_capacity=*/4), small_alone(/*flow_capacity=*/4);
  ASSERT_EQ(small_burst.Apply(three), shm::SnapshotReject::kNone);
  ASSERT_EQ(small_alone.Apply(three), shm::SnapshotReject::kNone);
  ExpectRunsChangeNothing(small_burst, small_alone, Runs(2000, 16, 4, kAck), 10);
  EXPECT_GT(small_burst.Counter("flow_table_full"), 4u);
}

TEST(PipelineFlowTest, EveryPacketOfAMixedBurstIsClassifiedByItsOwnDestination) {
  // The pipeline remembers the previous frame's destination within a burst: a burst that
  // alternates between two VIPs and the host must still send each packet its own way.
  PipelineHarness h;
  json two = Snapshot({{1, "active"}});
  two["vips"].push_back({{"name", "other"},
                         {"address", "10.10.0.200"},
                         {"port", 80},
                         {"id", 4},
                         {"backends", {{{"address", "10.10.2.15"}, {"id", 5}}}}});
  ASSERT_EQ(h.Apply(two), shm::SnapshotReject::kNone);
  const std::vector<const char*> destinations = {kVip,          "10.10.0.200", "10.10.3.2",
                                                 kVip,          kVip,          "10.10.3.2",
                                                 "10.10.0.200", "10.10.0.200", kVip};
  rte_mbuf* burst[16];
  for (size_t i = 0; i < destinations.size(); ++i) {
    burst[i] = MbufFromBytes(Tcp(static_cast<uint16_t>(100 + i), kSyn, destinations[i]));
  }
  BurstOutput out;
  h.Run(burst, static_cast<uint16_t>(destinations.size()), out);
  std::vector<int> backends;
  for (uint16_t t = 0; t < out.n_tx; ++t) {
    backends.push_back(BytesOf(out.tx[t])[14 + 19] - 10);
    rte_pktmbuf_free(out.tx[t]);
  }
  EXPECT_EQ(backends, (std::vector<int>{1, 5, 1, 1, 5, 5, 1}));
  ASSERT_EQ(out.n_kernel, 2);
  for (uint16_t t = 0; t < out.n_kernel; ++t) {
    EXPECT_EQ(BytesOf(out.kernel[t])[14 + 19], 2) << "the host's own traffic, unchanged";
    rte_pktmbuf_free(out.kernel[t]);
  }
  EXPECT_EQ(h.Counter("new_flows"), 7u);
}

TEST(PipelineFlowTest, AFullFlowTableFallsBackToMaglevAndCountsIt) {
  PipelineHarness h(/*flow_capacity=*/4);
  ASSERT_EQ(h.Apply(Snapshot({{1, "active"}, {2, "active"}, {3, "active"}})),
            shm::SnapshotReject::kNone);
  const auto flows = Ports(64);
  const std::vector<int> first = Send(h, flows, kSyn);
  EXPECT_EQ(std::count(first.begin(), first.end(), -1), 0) << "nothing is dropped";
  EXPECT_GT(h.Counter("flow_table_full"), 0u);
  EXPECT_EQ(Send(h, flows, kAck), first) << "Maglev alone gives the same answer";
}

TEST(PipelineFlowTest, FinMovesTheFlowToTheClosingTimeoutAndItExpires) {
  PipelineHarness h;
  json s = Snapshot({{1, "active"}, {2, "active"}, {3, "active"}});
  s["settings"]["tcp_timeout_s"] = 300;
  s["settings"]["tcp_closing_timeout_s"] = 5;
  ASSERT_EQ(h.Apply(s), shm::SnapshotReject::kNone);
  Send(h, {42}, kSyn, 10);
  Send(h, {42}, kFin | kAck, 11);
  EXPECT_EQ(h.flows().CountLive(16), 1u);
  EXPECT_EQ(h.flows().CountLive(17), 0u) << "closing timeout 5 s after the FIN at 11";
}

TEST(PipelineFlowTest, NoSnapshotSendsEverythingToTheKernelAndCountsIpPackets) {
  PipelineHarness h;
  rte_mbuf* m[2] = {MbufFromBytes(Tcp(1, kSyn)), MbufFromBytes(std::vector<uint8_t>(60, 0))};
  BurstOutput out;
  h.Run(m, 2, out);
  EXPECT_EQ(out.n_kernel, 2);
  EXPECT_EQ(h.Counter("no_snapshot_packets"), 1u);
  rte_pktmbuf_free_bulk(out.kernel, out.n_kernel);
}

TEST(PipelineFlowTest, ARejectedSnapshotLeavesTrafficOnTheRunningOne) {
  PipelineHarness h;
  ASSERT_EQ(h.Apply(Snapshot({{1, "active"}, {2, "active"}, {3, "active"}})),
            shm::SnapshotReject::kNone);
  const auto flows = Ports(300);
  const std::vector<int> first = Send(h, flows, kSyn);
  // A snapshot whose slot is damaged after publishing.
  absl::StatusOr<shm::Snapshot> s = testing::SnapshotFromJson(Snapshot({{9, "active"}}));
  ASSERT_TRUE(s.ok());
  s->header.generation = h.writer().published_generation() + 1;
  s->Seal();
  ASSERT_TRUE(h.writer().Publish(*s).ok());
  const uint64_t word = shm::ConfigHeaderOf(h.writer().segment()).published.load();
  shm::SlotOf(h.writer().segment(), shm::PublishedSlot(word)).backends[0].weight ^= 1;
  EXPECT_EQ(h.Take(), shm::SnapshotReject::kChecksum);
  EXPECT_EQ(Send(h, flows, kAck), first);
  EXPECT_EQ(Send(h, Ports(300, 5000), kSyn).size(), 300u);
}

// --- Every malformed input is accounted for --------------------------------------------------

// The parser fixtures' frames, whole and truncated at every length, through a pipeline whose
// VIPs are those frames' destinations: each packet is sent, handed to the kernel or dropped
// with a counted reason, exactly once, and nothing reads out of bounds (ASan builds).
TEST(PipelineRobustnessTest, EveryParserFixtureAtEveryLengthIsForwardedPassedOrCountedOnce) {
  REQUIRE_PACKET_FIXTURES("parse");
  json vips = json::array();
  int id = 0;
  for (const char* address : {"203.0.113.10", "2001:db8:f::10"}) {
    for (const char* proto : {"tcp", "udp"}) {
      for (int port : {80, 443, 4500, 53}) {
        vips.push_back({{"name", "v"},
                        {"address", address},
                        {"port", port},
                        {"proto", proto},
                        {"id", id},
                        {"fragments", id % 2 ? "drop" : "hash-addresses"},
                        {"backends", {{{"address", "10.10.2.11"}, {"id", id}}}}});
        ++id;
      }
    }
  }
  const json snapshot = {{"settings", {{"source_v4", "10.10.3.2"}, {"encap", "gue"}}},
                         {"vips", vips}};
  PipelineHarness h;
  ASSERT_EQ(h.Apply(snapshot), shm::SnapshotReject::kNone);
  const unsigned in_use_before = PoolInUse();
  uint64_t sent = 0, kernel = 0, total = 0;
  for (const json& c : ::fulcrum::testing::PacketFixtures()["parse"]) {
    const std::vector<uint8_t> frame = FromHex(c["frame"]);
    for (size_t len = 0; len <= frame.size(); ++len) {
      rte_mbuf* m = MbufFromBytes({frame.begin(), frame.begin() + len});
      ASSERT_NE(m, nullptr);
      BurstOutput out;
      h.Run(&m, 1, out);
      ++total;
      sent += out.n_tx;
      kernel += out.n_kernel;
      rte_pktmbuf_free_bulk(out.tx, out.n_tx);
      rte_pktmbuf_free_bulk(out.kernel, out.n_kernel);
    }
  }
  EXPECT_EQ(sent + kernel + h.TotalDrops(), total);
  EXPECT_GT(sent, 0u);
  EXPECT_GT(kernel, 0u);
  EXPECT_GT(h.Counter("drop_malformed"), 0u);
  EXPECT_EQ(PoolInUse(), in_use_before);
}

}  // namespace
}  // namespace fulcrum

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  ::testing::AddGlobalTestEnvironment(new fulcrum::testing::EalEnvironment());
  return RUN_ALL_TESTS();
}
