// StatsHistory: a time-bounded deque of samples.
#include "controlplane/stats_history.h"

#include <utility>

namespace fulcrum::controlplane {
namespace {

// True when `newer` cannot continue `older`: another process, or a counter went backwards.
bool Discontinuous(const StatsSample& older, const StatsSample& newer) {
  if (older.incarnation != newer.incarnation) return true;
  for (size_t i = 0; i < older.counters.size(); ++i) {
    if (newer.counters[i] < older.counters[i]) return true;
  }
  return false;
}

}  // namespace

void StatsHistory::Add(StatsSample s) {
  if (!s.attached) {
    samples_.clear();
    return;
  }
  if (!samples_.empty() && Discontinuous(samples_.back(), s)) samples_.clear();
  samples_.push_back(std::move(s));
  const uint64_t newest = samples_.back().mono_ns;
  while (samples_.size() > 2 && newest - samples_.front().mono_ns > keep_ns_) samples_.pop_front();
}

const StatsSample* StatsHistory::Latest() const {
  return samples_.empty() ? nullptr : &samples_.back();
}

const StatsSample* StatsHistory::Base(uint64_t window_ns, uint64_t not_before_ns) const {
  if (samples_.size() < 2) return nullptr;
  const uint64_t newest = samples_.back().mono_ns;
  for (size_t i = 0; i + 1 < samples_.size(); ++i) {
    const StatsSample& s = samples_[i];
    if (s.mono_ns < not_before_ns) continue;
    if (newest - s.mono_ns <= window_ns) return &s;
  }
  // Nothing within the window (it is shorter than the sampling period, or the sampler ran a
  // little late): the sample just before the newest still gives a rate over one period.
  const StatsSample& previous = samples_[samples_.size() - 2];
  return previous.mono_ns >= not_before_ns ? &previous : nullptr;
}

const StatsSample* StatsHistory::At(uint64_t mono_ns) const {
  const StatsSample* best = nullptr;
  for (const StatsSample& s : samples_) {
    if (s.mono_ns <= mono_ns) best = &s;
  }
  return best;
}

}  // namespace fulcrum::controlplane
