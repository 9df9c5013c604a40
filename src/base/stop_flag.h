#pragma once

#include <atomic>
#include <chrono>

namespace drover::base {

// A one-way stop request that a signal handler may raise and a loop can sleep on: the loop wakes
// at once instead of at its next poll, so a SIGTERM-ed node starts handing its work off without
// delay. Backed by a pipe, because writing to one is async-signal-safe and waking a condition
// variable is not.
class StopFlag {
 public:
  StopFlag();
  ~StopFlag();
  StopFlag(const StopFlag&) = delete;
  StopFlag& operator=(const StopFlag&) = delete;

  // Async-signal-safe; idempotent.
  void request() noexcept;
  bool requested() const noexcept { return flag_.load(std::memory_order_acquire); }
  explicit operator bool() const noexcept { return requested(); }
  // Sleeps until a request or until `timeout` passes; returns requested().
  bool waitFor(std::chrono::milliseconds timeout) const;

 private:
  std::atomic<bool> flag_{false};
  int read_fd_ = -1;
  int write_fd_ = -1;
};

}  // namespace drover::base
