// StatsHistory: the recent stats samples, so that rates can be taken over any window up to its
// length. Samples of another fulcrumd incarnation, or with counters that went backwards, start
// the history afresh: a rate across a restart would be meaningless.
#pragma once

#include <cstdint>
#include <deque>

#include "controlplane/stats_reader.h"

namespace fulcrum::controlplane {

class StatsHistory {
 public:
  explicit StatsHistory(uint64_t keep_ns) : keep_ns_(keep_ns) {}

  void Add(StatsSample s);
  // The newest sample; null when none is attached.
  const StatsSample* Latest() const;
  // The oldest sample taken at most `window_ns` before the newest and not before
  // `not_before_ns`, other than the newest itself; when none is that recent, the one just
  // before the newest (if not before `not_before_ns`); else null.
  const StatsSample* Base(uint64_t window_ns, uint64_t not_before_ns = 0) const;
  // The newest sample taken at or before `mono_ns`; null when none.
  const StatsSample* At(uint64_t mono_ns) const;
  size_t size() const { return samples_.size(); }

 private:
  uint64_t keep_ns_;
  std::deque<StatsSample> samples_;
};

// Counter rates between two samples of one incarnation.
struct Rates {
  double seconds = 0;
  double Of(uint64_t older, uint64_t newer) const {
    return seconds > 0 && newer >= older ? static_cast<double>(newer - older) / seconds : 0;
  }
};
inline Rates RatesBetween(const StatsSample& older, const StatsSample& newer) {
  return Rates{newer.mono_ns > older.mono_ns ? double(newer.mono_ns - older.mono_ns) / 1e9 : 0};
}

}  // namespace fulcrum::controlplane
