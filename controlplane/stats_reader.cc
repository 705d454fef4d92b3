// StatsReader: attach, re-attach, sum.
#include "controlplane/stats_reader.h"

#include <algorithm>
#include <cstring>

#include "absl/strings/str_format.h"

namespace fulcrum::controlplane {
namespace {

uint64_t Load(const std::atomic<uint64_t>& a) { return a.load(std::memory_order_relaxed); }

}  // namespace

uint64_t StatsSample::TotalDrops() const {
  uint64_t total = 0;
  for (uint64_t d : drops) total += d;
  return total;
}

StatsSample StatsReader::Sample(const std::vector<uint16_t>& vip_ids,
                                const std::vector<uint16_t>& backend_ids) {
  StatsSample s;
  s.mono_ns = shm::MonotonicNowNs();
  absl::StatusOr<std::string> name = shm::StatsSegmentName(prefix_);
  if (!name.ok()) {
    s.error = std::string(name.status().message());
    return s;
  }
  if (segment_.has_value() && !segment_->SameObjectAs(*name)) segment_.reset();
  if (!segment_.has_value()) {
    absl::StatusOr<shm::MappedSegment> seg = shm::AttachStatsSegment(prefix_);
    if (!seg.ok()) {
      s.error = absl::IsNotFound(seg.status())
                    ? absl::StrFormat(
                          "no stats segment %s: fulcrumd is not running with "
                          "--shm-prefix %s",
                          *name, prefix_)
                    : std::string(seg.status().message());
      return s;
    }
    segment_ = *std::move(seg);
  }
  const shm::StatsSegment& st = shm::StatsOf(*segment_);
  const shm::StatsHeader& h = st.header;
  s.attached = true;
  s.pid = h.writer_pid.load(std::memory_order_relaxed);
  s.incarnation = h.start_unix_ns ^ (uint64_t{s.pid} << 32);
  s.heartbeat_ns = h.heartbeat_ns.load(std::memory_order_relaxed);
  s.generation_in_use = h.generation_in_use.load(std::memory_order_relaxed);
  // Shared memory is input: bound the counts before they index the arrays.
  const uint32_t lcores = std::min(h.lcore_count.load(std::memory_order_acquire), shm::kMaxLcores);
  const uint32_t ports = std::min(h.port_count.load(std::memory_order_acquire), shm::kMaxPorts);
  for (uint32_t p = 0; p < ports; ++p) {
    const shm::PortStats& ps = st.ports[p];
    PortSample out;
    out.name.assign(ps.name, strnlen(ps.name, sizeof(ps.name)));
    out.rx_packets = Load(ps.rx_packets);
    out.rx_bytes = Load(ps.rx_bytes);
    out.tx_packets = Load(ps.tx_packets);
    out.tx_bytes = Load(ps.tx_bytes);
    out.rx_missed = Load(ps.rx_missed);
    out.rx_errors = Load(ps.rx_errors);
    out.tx_errors = Load(ps.tx_errors);
    out.rx_nombuf = Load(ps.rx_nombuf);
    s.ports.push_back(std::move(out));
  }
  for (uint16_t id : vip_ids) {
    if (id < shm::kMaxVips) s.vips[id];
  }
  for (uint16_t id : backend_ids) {
    if (id < shm::kMaxBackends) s.backends[id];
  }
  for (uint32_t l = 0; l < lcores; ++l) {
    const shm::LcoreStats& ls = st.lcores[l];
    LcoreSample out;
    out.lcore_id = ls.lcore_id.load(std::memory_order_relaxed);
    out.active = ls.active.load(std::memory_order_relaxed) != 0;
    out.heartbeat_ns = Load(ls.heartbeat_ns);
    out.generation = Load(ls.generation);
    out.flow_table_used = Load(ls.flow_table_used);
    out.flow_table_capacity = Load(ls.flow_table_capacity);
    for (size_t i = 0; i < shm::kLcoreCounterCount; ++i) {
      out.counters[i] = Load(ls.counters[i]);
      s.counters[i] += out.counters[i];
    }
    for (size_t i = 0; i < shm::kDropReasonCount; ++i) {
      out.drops[i] = Load(ls.drops[i]);
      s.drops[i] += out.drops[i];
    }
    for (size_t i = 0; i < kParseResultCount; ++i) out.parse[i] = Load(ls.parse[i]);
    s.flow_table_used += out.flow_table_used;
    s.flow_table_capacity += out.flow_table_capacity;
    for (auto& [id, c] : s.vips) {
      const shm::VipCounters& v = ls.vips[id];
      c.packets += Load(v.packets);
      c.bytes += Load(v.bytes);
      c.new_flows += Load(v.new_flows);
      c.drops += Load(v.drops);
    }
    for (auto& [id, c] : s.backends) {
      const shm::BackendCounters& b = ls.backends[id];
      c.packets += Load(b.packets);
      c.bytes += Load(b.bytes);
      c.new_flows += Load(b.new_flows);
    }
    s.lcores.push_back(out);
  }
  return s;
}

}  // namespace fulcrum::controlplane
