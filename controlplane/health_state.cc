// HealthState: consecutive-result counting.
#include "controlplane/health_state.h"

namespace fulcrum::controlplane {

bool HealthState::Record(bool success) {
  if (success) {
    ++successes_;
    failures_ = 0;
    if (health_ == Health::kDown && successes_ >= rise_) {
      health_ = Health::kUp;
      return true;
    }
  } else {
    ++failures_;
    successes_ = 0;
    if (health_ != Health::kDown && failures_ >= fall_) {
      health_ = Health::kDown;
      return true;
    }
  }
  return false;
}

}  // namespace fulcrum::controlplane
