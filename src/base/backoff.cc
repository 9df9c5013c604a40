#include "base/backoff.h"

#include <algorithm>
#include <cmath>
#include <random>

namespace drover::base {

Duration Backoff::delay(uint32_t attempt, uint64_t random_seed) const {
  if (attempt == 0) return Duration::zero();
  double scaled = static_cast<double>(initial.count()) *
                  std::pow(multiplier, static_cast<double>(std::min<uint32_t>(attempt - 1, 62)));
  double capped = std::min(scaled, static_cast<double>(max.count()));
  if (jitter > 0) {
    std::mt19937_64 rng(random_seed != 0 ? random_seed : std::random_device{}());
    std::uniform_real_distribution<double> dist(1.0 - std::clamp(jitter, 0.0, 1.0), 1.0);
    capped *= dist(rng);
  }
  return Duration(static_cast<Duration::rep>(capped));
}

}  // namespace drover::base
