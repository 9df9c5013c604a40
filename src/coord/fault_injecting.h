#pragma once

#include <atomic>
#include <mutex>
#include <string>

#include "coord/forwarding.h"

namespace drover::coord {

// Wraps any Coordination (a real ZooKeeper session in integration tests) and turns chosen writes
// into ambiguous ones: the write is sent and applied, then the caller is told kConnectionLoss.
// This is the fault "applied, then connection loss" that every writer must survive. Arm it with
// ambiguousNext(prefix): the next create, multi, set or remove whose path (for a multi, any of
// its ops' paths) starts with `prefix` is reported lost after it completes. injected() counts the
// losses reported so far: a test asserts it to know its fault fired. Thread-safe.
class FaultInjectingCoordination final : public ForwardingCoordination {
 public:
  explicit FaultInjectingCoordination(Coordination& inner) : ForwardingCoordination(inner) {}

  void ambiguousNext(std::string path_prefix, int count = 1);
  int injected() const { return injected_.load(); }

  Future<std::string> create(CreateOp op) override;
  Future<void> remove(const std::string& path, int32_t version) override;
  Future<Stat> set(const std::string& path, std::string data, int32_t version) override;
  Future<std::vector<OpResult>> multi(std::vector<Op> ops) override;

 private:
  bool take(const std::string& path);
  template <class T>
  Future<T> lose(Future<T> real);

  std::mutex mu_;
  std::string prefix_;
  int armed_ = 0;
  std::atomic<int> injected_{0};
};

}  // namespace drover::coord
