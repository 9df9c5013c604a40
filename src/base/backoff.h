#pragma once

#include <cstdint>

#include "base/clock.h"

namespace drover::base {

// Exponential backoff with full jitter, the one retry-delay policy of the project (ZooKeeper
// retries and task retries both use it). delay(n) for attempt n >= 1 is drawn uniformly from
// [initial * mult^(n-1) * (1 - jitter), that value], capped at max.
struct Backoff {
  Duration initial = milliseconds(100);
  Duration max = seconds(30);
  double multiplier = 2.0;
  double jitter = 0.0;  // 0 = deterministic; 0.5 = up to half of the delay is randomised away

  Duration delay(uint32_t attempt, uint64_t random_seed = 0) const;
};

}  // namespace drover::base
