// HealthState: the rise / fall hysteresis of one probe target. An up target goes down after
// `fall` consecutive failures, a down one comes up after `rise` consecutive successes; a single
// result against the trend only resets the count, so a flapping backend does not flap the
// table.
#pragma once

#include <cstdint>

#include "controlplane/effective_state.h"

namespace fulcrum::controlplane {

class HealthState {
 public:
  HealthState(Health initial, uint32_t rise, uint32_t fall)
      : health_(initial), rise_(rise), fall_(fall) {}

  // Counts one probe result; true when it changed the health.
  bool Record(bool success);
  void SetThresholds(uint32_t rise, uint32_t fall) {
    rise_ = rise;
    fall_ = fall;
  }

  Health health() const { return health_; }
  uint32_t successes() const { return successes_; }  // consecutive
  uint32_t failures() const { return failures_; }    // consecutive

 private:
  Health health_;
  uint32_t rise_;
  uint32_t fall_;
  uint32_t successes_ = 0;
  uint32_t failures_ = 0;
};

}  // namespace fulcrum::controlplane
