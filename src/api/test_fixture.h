#pragma once

// Shared by the api unit tests: a FakeServer with the drover tree, the API's session, a second
// session playing the leader/worker, a TaskStore, an EventFeed and a real HttpServer on a free
// loopback port.

#include <gtest/gtest.h>
#include <httplib.h>

#include <memory>
#include <string>

#include "api/event_feed.h"
#include "api/http.h"
#include "api/schedule_store.h"
#include "api/store.h"
#include "base/eventually.h"
#include "coord/fake/fake_coordination.h"
#include "coord/paths.h"
#include "tasks/layout.h"
#include "tasks/payloads.h"
#include "tasks/records.h"
#include "tasks/task.h"
#include "tasks/transitions.h"

namespace drover::api::testing {

using namespace std::chrono_literals;
using tasks::Json;

inline bool knownType(std::string_view t) {
  return t == "noop" || t == "echo" || t == "sleep" || t == "fail" || t == "exec";
}

class ApiFixture : public ::testing::Test {
 protected:
  void SetUp() override {
    server_ = std::make_shared<coord::FakeServer>();
    coord_ = std::make_unique<coord::FakeCoordination>(server_);
    other_ = std::make_unique<coord::FakeCoordination>(server_);
    feed_coord_ = std::make_unique<coord::FakeCoordination>(server_);
    for (const auto& d : layout_.directories()) ASSERT_TRUE(coord::ensurePath(*other_, d));
    StoreOptions so;
    so.settle_deadline = 2s;
    so.call_timeout = 2s;
    so.cancel_attempts = 4;
    so.counts_ttl = 0ms;
    configureStore(so);
    store_ = std::make_unique<TaskStore>(*coord_, layout_, so);
    EventFeedOptions fo;
    fo.queue_capacity = feedCapacity();
    fo.min_interval = feedMinInterval();
    feed_ = std::make_unique<EventFeed>(*feed_coord_, layout_, fo);
    feed_->start();  // idle until a test subscribes
    schedules_ = std::make_unique<ScheduleStore>(*coord_, layout_, 2s);
    HttpOptions ho;
    ho.schedules = schedules_.get();
    ho.port = 0;
    ho.threads = 8;
    ho.known_type = &knownType;
    ho.validate_payload = [](std::string_view type,
                             const Json& payload) -> std::optional<tasks::ValidationError> {
      auto validator = tasks::builtinPayloadValidator(type);
      return validator ? validator(payload) : std::nullopt;
    };
    ho.heartbeat = 200ms;
    ho.read_timeout = 2s;
    configure(ho);
    http_ = std::make_unique<HttpServer>(*store_, feed_.get(), ho);
    addRoutes(*http_);
    auto port = http_->start();
    ASSERT_TRUE(port) << port.error();
    port_ = *port;
  }

  void TearDown() override {
    if (http_) http_->stop();
    if (feed_) feed_->stop();
  }

  virtual void configure(HttpOptions&) {}
  virtual void configureStore(StoreOptions&) {}
  virtual void addRoutes(HttpServer&) {}
  virtual size_t feedCapacity() { return 1024; }
  virtual std::chrono::milliseconds feedMinInterval() { return std::chrono::milliseconds(50); }

  httplib::Client client() const {
    httplib::Client c("127.0.0.1", port_);
    c.set_read_timeout(20s);
    c.set_connection_timeout(5s);
    return c;
  }

  httplib::Result postJson(const std::string& path, const std::string& body,
                           httplib::Headers headers = {}) const {
    return client().Post(path.c_str(), headers, body, "application/json");
  }

  std::map<std::string, std::string> tree() const { return server_->dump(); }

  // The statuses in the tree: the children of the 256 status buckets.
  size_t countStatuses() const {
    size_t n = 0;
    for (int b = 0; b < tasks::Layout::kJobBuckets; ++b) n += countUnder(layout_.statusBucketAt(b));
    return n;
  }

  size_t countUnder(const std::string& prefix) const {
    size_t n = 0;
    for (const auto& [path, data] : server_->dump()) {
      if (path.size() > prefix.size() && path.compare(0, prefix.size() + 1, prefix + "/") == 0 &&
          path.find('/', prefix.size() + 1) == std::string::npos) {
        ++n;
      }
    }
    return n;
  }

  std::optional<tasks::TaskStatus> statusOf(const std::string& id) const {
    auto node = server_->peek(layout_.status(id));
    if (!node) return std::nullopt;
    auto j = tasks::parseJson(node->data);
    return j ? tasks::statusFromJson(*j) : std::nullopt;
  }

  // Plays the leader: moves a pending task's job to an assignment of `worker`, and for `running`
  // plays the worker's start too.
  void assign(const std::string& id, const std::string& worker, tasks::State state) {
    auto st = statusOf(id);
    ASSERT_TRUE(st);
    ASSERT_TRUE(coord::ensurePath(*other_, layout_.assignmentsOf(worker)));
    // One multi, so that a watcher sees one change whatever the state.
    tasks::Txn txn(layout_);
    txn.add(tasks::assign(layout_, tasks::Job{st->spec, 1, 0, st->submitted_at}, coord::kAnyVersion,
                          worker, 1));
    if (state != tasks::State::kAssigned) {
      tasks::TaskStatus next = *st;
      next.state = state;
      next.attempts = 1;
      next.worker = worker;
      txn.add(tasks::start(layout_, worker, coord::kAnyVersion, next, true));
    }
    auto r = other_->multi(std::move(txn).finish().ops).get();
    ASSERT_TRUE(r) << r.error().toString();
  }

  // Plays the worker: commits a terminal state for an assigned task.
  void finish(const std::string& id, const std::string& worker, tasks::State state) {
    auto st = statusOf(id);
    ASSERT_TRUE(st);
    tasks::TaskStatus next = *st;
    next.state = state;
    next.finished_at = 2;
    next.result = Json{{"ok", true}};
    apply(tasks::commit(layout_, worker, coord::kAnyVersion, next, std::nullopt, true, 2));
  }

  // Applies one transition from the second session; asserts it landed.
  void apply(tasks::TaskOps part) {
    tasks::Txn txn(layout_);
    txn.add(std::move(part));
    auto r = other_->multi(std::move(txn).finish().ops).get();
    ASSERT_TRUE(r) << r.error().toString();
  }

  tasks::Layout layout_{"/drover"};
  std::shared_ptr<coord::FakeServer> server_;
  std::unique_ptr<coord::FakeCoordination> coord_;
  std::unique_ptr<coord::FakeCoordination> other_;
  // The feed's own session, so that call counts on coord_ see only the store's calls.
  std::unique_ptr<coord::FakeCoordination> feed_coord_;
  std::unique_ptr<TaskStore> store_;
  std::unique_ptr<ScheduleStore> schedules_;
  std::unique_ptr<EventFeed> feed_;
  std::unique_ptr<HttpServer> http_;
  int port_ = 0;
};

}  // namespace drover::api::testing
