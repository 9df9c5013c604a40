#pragma once

#include <atomic>
#include <chrono>

namespace drover::base {

using Duration = std::chrono::steady_clock::duration;
using TimePoint = std::chrono::steady_clock::time_point;
using std::chrono::milliseconds;
using std::chrono::seconds;

// A source of monotonic time. Every timeout in Drover is measured on one of these, never on the
// wall clock, so tests can drive time with ManualClock. Implementations are thread-safe.
class Clock {
 public:
  virtual ~Clock() = default;
  virtual TimePoint now() const = 0;
};

class SteadyClock final : public Clock {
 public:
  TimePoint now() const override { return std::chrono::steady_clock::now(); }
  static SteadyClock& instance();
};

// Time that moves only when a test says so.
class ManualClock final : public Clock {
 public:
  TimePoint now() const override { return TimePoint(Duration(ticks_.load())); }
  void advance(Duration d) { ticks_ += d.count(); }

 private:
  std::atomic<Duration::rep> ticks_{Duration(std::chrono::hours(1)).count()};
};

// Milliseconds since the Unix epoch, for display fields (submitted_at, ...) only.
int64_t wallMillis();

}  // namespace drover::base
