#include "base/clock.h"

namespace drover::base {

SteadyClock& SteadyClock::instance() {
  static SteadyClock clock;
  return clock;
}

int64_t wallMillis() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace drover::base
