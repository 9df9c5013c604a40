#pragma once

#include <chrono>
#include <thread>

namespace drover::base {

// Polls `pred` until it holds or `timeout` passes; returns its last value. For tests that wait on
// a condition with a deadline instead of sleeping and hoping. Polls every few milliseconds.
template <class Pred>
bool eventually(Pred&& pred, std::chrono::milliseconds timeout = std::chrono::seconds(5),
                std::chrono::milliseconds poll = std::chrono::milliseconds(5)) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    if (pred()) return true;
    if (std::chrono::steady_clock::now() >= deadline) return pred();
    std::this_thread::sleep_for(poll);
  }
}

}  // namespace drover::base
