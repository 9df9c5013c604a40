#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>

#include "coord/error.h"

namespace drover::coord {

// The pending result of one coordination call. Either wait for it (get, waitFor) or attach one
// continuation (then). A continuation runs on the thread that completes the call (the client
// library's completion thread) or, if the result is already there, at once on the caller's
// thread; it must not block. Cheap to copy: copies share one result.
template <class T>
class Future {
 public:
  using Value = Result<T>;
  using Callback = std::function<void(const Value&)>;

  struct State {
    std::mutex mu;
    std::condition_variable cv;
    std::optional<Value> value;
    Callback callback;
  };

  Future() : state_(std::make_shared<State>()) {}
  explicit Future(std::shared_ptr<State> state) : state_(std::move(state)) {}

  static Future ready(Value value) {
    Future f;
    f.state_->value.emplace(std::move(value));
    return f;
  }

  // Blocks until the result is there.
  const Value& get() const {
    std::unique_lock lock(state_->mu);
    state_->cv.wait(lock, [&] { return state_->value.has_value(); });
    return *state_->value;
  }

  // Waits at most `timeout`; nullopt when the result has not come by then.
  std::optional<Value> waitFor(std::chrono::milliseconds timeout) const {
    std::unique_lock lock(state_->mu);
    if (!state_->cv.wait_for(lock, timeout, [&] { return state_->value.has_value(); })) {
      return std::nullopt;
    }
    return *state_->value;
  }

  bool isReady() const {
    std::lock_guard lock(state_->mu);
    return state_->value.has_value();
  }

  // Attaches the one continuation. See the class comment for the thread it runs on.
  void then(Callback callback) const {
    std::unique_lock lock(state_->mu);
    if (state_->value) {
      lock.unlock();
      callback(*state_->value);
      return;
    }
    state_->callback = std::move(callback);
  }

 private:
  std::shared_ptr<State> state_;
};

// The writing side of a Future. set() may be called once.
template <class T>
class Promise {
 public:
  Promise() : state_(std::make_shared<typename Future<T>::State>()) {}

  Future<T> future() const { return Future<T>(state_); }

  void set(Result<T> value) const {
    typename Future<T>::Callback callback;
    {
      std::lock_guard lock(state_->mu);
      state_->value.emplace(std::move(value));
      callback = std::move(state_->callback);
    }
    state_->cv.notify_all();
    if (callback) callback(*state_->value);
  }

 private:
  std::shared_ptr<typename Future<T>::State> state_;
};

}  // namespace drover::coord
