// The BPF programs' counters on the C++ side: names and help from bpf/abi.h's X-macro lists,
// and the per-CPU values summed.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "bpf/abi.h"

namespace fulcrum::bpf {

struct CounterDef {
  int value;
  std::string_view name;  // metric label, e.g. fulcrum_decap_packets_total{outcome="decap_4in4"}
  std::string_view help;
};

#define FULCRUM_X_DEF(name, value, label, help) CounterDef{value, label, help},
inline constexpr std::array kDecapCounters = {FULCRUM_DECAP_COUNTERS(FULCRUM_X_DEF)};
inline constexpr std::array kSteerCounters = {FULCRUM_STEER_COUNTERS(FULCRUM_X_DEF)};
inline constexpr std::array kProbeCounters = {FULCRUM_PROBE_COUNTERS(FULCRUM_X_DEF)};
#undef FULCRUM_X_DEF

// The value tables are indexed by value: the values must be 0, 1, 2... in list order.
template <size_t N>
constexpr bool Dense(const std::array<CounterDef, N>& defs) {
  for (size_t i = 0; i < N; ++i) {
    if (defs[i].value != static_cast<int>(i)) return false;
  }
  return true;
}
static_assert(Dense(kDecapCounters) && kDecapCounters.size() == FULCRUM_DECAP_COUNTER_COUNT);
static_assert(Dense(kSteerCounters) && kSteerCounters.size() == FULCRUM_STEER_COUNTER_COUNT);
static_assert(Dense(kProbeCounters) && kProbeCounters.size() == FULCRUM_PROBE_COUNTER_COUNT);

// One program's counters, indexed by its abi.h enum, summed over CPUs.
struct CounterValues {
  std::vector<fulcrum_counter> values;

  uint64_t packets(size_t index) const { return index < values.size() ? values[index].packets : 0; }
  // Packets of the counters [first, last].
  uint64_t PacketsIn(size_t first, size_t last) const {
    uint64_t n = 0;
    for (size_t i = first; i <= last && i < values.size(); ++i) n += values[i].packets;
    return n;
  }
};

}  // namespace fulcrum::bpf
