#pragma once

#include <string>
#include <utility>
#include <vector>

#include "coord/coordination.h"

namespace drover::coord {

// A Coordination that passes every call on to another. Tests derive from it to hold back or
// count some calls (override just those) without restating the rest.
class ForwardingCoordination : public Coordination {
 public:
  explicit ForwardingCoordination(Coordination& inner) : inner_(inner) {}

  Future<std::string> create(CreateOp op) override { return inner_.create(std::move(op)); }
  Future<void> remove(const std::string& path, int32_t version) override {
    return inner_.remove(path, version);
  }
  Future<Stat> set(const std::string& path, std::string data, int32_t version) override {
    return inner_.set(path, std::move(data), version);
  }
  Future<Node> get(const std::string& path, Watcher watcher) override {
    return inner_.get(path, std::move(watcher));
  }
  Future<std::optional<Stat>> exists(const std::string& path, Watcher watcher) override {
    return inner_.exists(path, std::move(watcher));
  }
  Future<std::vector<std::string>> children(const std::string& path, Watcher watcher) override {
    return inner_.children(path, std::move(watcher));
  }
  Future<std::vector<OpResult>> multi(std::vector<Op> ops) override {
    return inner_.multi(std::move(ops));
  }
  Future<void> sync(const std::string& path) override { return inner_.sync(path); }
  Future<void> addAuth(const std::string& scheme, const std::string& credential) override {
    return inner_.addAuth(scheme, credential);
  }
  SessionEvent session() const override { return inner_.session(); }
  uint64_t addSessionListener(SessionListener listener) override {
    return inner_.addSessionListener(std::move(listener));
  }
  void removeSessionListener(uint64_t id) override { inner_.removeSessionListener(id); }
  void close() override { inner_.close(); }

 protected:
  Coordination& inner_;
};

}  // namespace drover::coord
