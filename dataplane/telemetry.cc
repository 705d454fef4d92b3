// Telemetry: read-only views of the stats segment for DPDK's telemetry socket.
#include "dataplane/telemetry.h"

#include <rte_telemetry.h>

#include <cstdlib>
#include <string>

namespace fulcrum {
namespace {

// DPDK 22.11's telemetry callbacks take no user data.
const shm::StatsSegment* g_stats = nullptr;

uint32_t Lcores() {
  return std::min<uint32_t>(g_stats->header.lcore_count.load(std::memory_order_acquire),
                            shm::kMaxLcores);
}

int Stats(const char*, const char*, rte_tel_data* d) {
  rte_tel_data_start_dict(d);
  rte_tel_data_add_dict_u64(d, "generation_in_use",
                            g_stats->header.generation_in_use.load(std::memory_order_relaxed));
  for (size_t c = 0; c < shm::kLcoreCounterCount; ++c) {
    uint64_t sum = 0;
    for (uint32_t l = 0; l < Lcores(); ++l) sum += g_stats->lcores[l].counters[c].load();
    rte_tel_data_add_dict_u64(d, std::string(ReasonName(shm::LcoreCounter(c))).c_str(), sum);
  }
  for (size_t r = 0; r < shm::kDropReasonCount; ++r) {
    uint64_t sum = 0;
    for (uint32_t l = 0; l < Lcores(); ++l) sum += g_stats->lcores[l].drops[r].load();
    const std::string name = "drop_" + std::string(ReasonName(shm::DropReason(r)));
    rte_tel_data_add_dict_u64(d, name.c_str(), sum);
  }
  uint64_t used = 0;
  uint64_t capacity = 0;
  for (uint32_t l = 0; l < Lcores(); ++l) {
    used += g_stats->lcores[l].flow_table_used.load();
    capacity += g_stats->lcores[l].flow_table_capacity.load();
  }
  rte_tel_data_add_dict_u64(d, "flow_table_used", used);
  rte_tel_data_add_dict_u64(d, "flow_table_capacity", capacity);
  return 0;
}

// "/fulcrum/vip,3": the id after the comma, in range.
bool Id(const char* params, uint32_t limit, uint32_t& id) {
  if (params == nullptr || *params == '\0') return false;
  char* end = nullptr;
  const unsigned long v = std::strtoul(params, &end, 10);
  if (*end != '\0' || v >= limit) return false;
  id = static_cast<uint32_t>(v);
  return true;
}

int Vip(const char*, const char* params, rte_tel_data* d) {
  uint32_t id;
  if (!Id(params, shm::kMaxVips, id)) return -1;
  uint64_t packets = 0, bytes = 0, new_flows = 0, drops = 0;
  for (uint32_t l = 0; l < Lcores(); ++l) {
    const shm::VipCounters& v = g_stats->lcores[l].vips[id];
    packets += v.packets.load();
    bytes += v.bytes.load();
    new_flows += v.new_flows.load();
    drops += v.drops.load();
  }
  rte_tel_data_start_dict(d);
  rte_tel_data_add_dict_u64(d, "packets", packets);
  rte_tel_data_add_dict_u64(d, "bytes", bytes);
  rte_tel_data_add_dict_u64(d, "new_flows", new_flows);
  rte_tel_data_add_dict_u64(d, "drops", drops);
  return 0;
}

int Backend(const char*, const char* params, rte_tel_data* d) {
  uint32_t id;
  if (!Id(params, shm::kMaxBackends, id)) return -1;
  uint64_t packets = 0, bytes = 0, new_flows = 0;
  for (uint32_t l = 0; l < Lcores(); ++l) {
    const shm::BackendCounters& b = g_stats->lcores[l].backends[id];
    packets += b.packets.load();
    bytes += b.bytes.load();
    new_flows += b.new_flows.load();
  }
  rte_tel_data_start_dict(d);
  rte_tel_data_add_dict_u64(d, "packets", packets);
  rte_tel_data_add_dict_u64(d, "bytes", bytes);
  rte_tel_data_add_dict_u64(d, "new_flows", new_flows);
  return 0;
}

}  // namespace

void RegisterTelemetry(const shm::StatsSegment* stats) {
  g_stats = stats;
  rte_telemetry_register_cmd("/fulcrum/stats", Stats,
                             "Fulcrum counters and drops summed over the workers. No parameters");
  rte_telemetry_register_cmd("/fulcrum/vip", Vip,
                             "Packets, bytes, new flows and drops of one VIP. Parameters: VIP id");
  rte_telemetry_register_cmd("/fulcrum/backend", Backend,
                             "Packets, bytes and new flows of one backend. Parameters: backend id");
}

}  // namespace fulcrum
