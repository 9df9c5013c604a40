#pragma once

#include <atomic>
#include <mutex>
#include <string>

#include "coord/coordination.h"

namespace drover::coord {

// Wraps any Coordination (a real ZooKeeper session in integration tests) and turns chosen writes
// into ambiguous ones: the write is sent and applied, then the caller is told kConnectionLoss.
// This is the fault "applied, then connection loss" that every writer must survive. Arm it with
// ambiguousNext(prefix): the next create, multi, set or remove whose path (for a multi, its first
// op's path) starts with `prefix` is reported lost after it completes. Thread-safe.
class FaultInjectingCoordination final : public Coordination {
 public:
  explicit FaultInjectingCoordination(Coordination& inner) : inner_(inner) {}

  void ambiguousNext(std::string path_prefix, int count = 1);
  int injected() const { return injected_.load(); }

  Future<std::string> create(CreateOp op) override;
  Future<void> remove(const std::string& path, int32_t version) override;
  Future<Stat> set(const std::string& path, std::string data, int32_t version) override;
  Future<Node> get(const std::string& path, Watcher watcher) override {
    return inner_.get(path, std::move(watcher));
  }
  Future<std::optional<Stat>> exists(const std::string& path, Watcher watcher) override {
    return inner_.exists(path, std::move(watcher));
  }
  Future<std::vector<std::string>> children(const std::string& path, Watcher watcher) override {
    return inner_.children(path, std::move(watcher));
  }
  Future<std::vector<OpResult>> multi(std::vector<Op> ops) override;
  Future<void> sync(const std::string& path) override { return inner_.sync(path); }
  Future<void> addAuth(const std::string& scheme, const std::string& credential) override {
    return inner_.addAuth(scheme, credential);
  }
  SessionEvent session() const override { return inner_.session(); }
  uint64_t addSessionListener(SessionListener l) override {
    return inner_.addSessionListener(std::move(l));
  }
  void removeSessionListener(uint64_t id) override { inner_.removeSessionListener(id); }
  void close() override { inner_.close(); }

 private:
  bool take(const std::string& path);
  template <class T>
  Future<T> lose(Future<T> real);

  Coordination& inner_;
  std::mutex mu_;
  std::string prefix_;
  int armed_ = 0;
  std::atomic<int> injected_{0};
};

}  // namespace drover::coord
