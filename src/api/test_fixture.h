#pragma once

// Shared by the api unit tests: a FakeServer with the drover tree (protocol 2), the API's
// session, a second session playing the leader/worker, a BatchStore, an EventFeed and a real
// HttpServer on a free loopback port.

#include <gtest/gtest.h>
#include <httplib.h>

#include <algorithm>
#include <map>
#include <memory>
#include <string>
#include <utility>

#include "api/batch_store.h"
#include "api/event_feed.h"
#include "api/http.h"
#include "api/schedule_store.h"
#include "base/clock.h"
#include "base/eventually.h"
#include "coord/fake/fake_coordination.h"
#include "coord/paths.h"
#include "tasks/batch.h"
#include "tasks/layout.h"
#include "tasks/payloads.h"
#include "tasks/protocol.h"
#include "tasks/records.h"
#include "tasks/task.h"

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
    store_ = std::make_unique<BatchStore>(*coord_, layout_, so);
    StoreOptions peer_options;
    peer_options.call_timeout = 2s;
    peer_ = std::make_unique<BatchStore>(*other_, layout_, peer_options);
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

  // The batch records in the tree (one per submit multi).
  size_t countBatches() const {
    size_t n = 0;
    for (const auto& [path, data] : server_->dump()) {
      if (path.rfind(layout_.batches() + "/", 0) == 0 &&
          std::count(path.begin() + static_cast<std::ptrdiff_t>(layout_.batches().size()),
                     path.end(), '/') == 2) {
        ++n;
      }
    }
    return n;
  }

  // The tasks the tree holds, in any state (read by the second session).
  size_t countTasks() const {
    auto page = peer_->list(std::nullopt, 1000, "");
    EXPECT_TRUE(page) << page.error().detail;
    return page ? page->tasks.size() : 0;
  }

  // The task as the second session reads it; nullopt when there is none.
  std::optional<tasks::TaskStatus> statusOf(const std::string& id) const {
    auto st = peer_->get(id);
    if (!st) return std::nullopt;
    return *st;
  }

  // Plays the leader: moves a pending task into a chunk of its own on `worker`; for `running`
  // plays the worker's start too (its record lists the task).
  void assign(const std::string& id, const std::string& worker, tasks::State state) {
    auto ref = peer_->reader().resolve(id);
    ASSERT_TRUE(ref && *ref) << id;
    const std::string& batch = (*ref)->batch;
    auto node = other_->get(layout_.pending(batch), nullptr).get();
    ASSERT_TRUE(node);
    auto pending = tasks::decodePending(node->data);
    ASSERT_TRUE(pending);
    auto rec_node = other_->get(layout_.batch(batch), nullptr).get();
    ASSERT_TRUE(rec_node);
    auto rec = tasks::decodeBatch(batch, rec_node->data);
    ASSERT_TRUE(rec);
    const tasks::Waiting* w = pending->waitingAt((*ref)->index);
    ASSERT_TRUE(w) << id;
    const std::string name = tasks::makeChunkName(0, ++chunks_);
    tasks::ChunkItem item{**ref,    rec->tasks[(*ref)->index].id, w->attempt, rec->submitted_at,
                          w->error, rec->tasks[(*ref)->index]};
    if (item.id == tasks::generatedId(**ref)) item.id.clear();
    tasks::Chunk chunk;
    chunk.items.push_back(item);
    tasks::PendingState after = *pending;
    after.hold((*ref)->index, tasks::Held{worker, name});
    ASSERT_TRUE(coord::ensurePath(*other_, layout_.assignmentsOf(worker)));
    tasks::v2::Builder b(layout_);
    b.assign({tasks::v2::PendingWrite{batch, node->stat.version, after}}, worker, name, chunk,
             base::wallMillis());
    auto r = other_->multi(std::move(b).finish().ops).get();
    ASSERT_TRUE(r) << r.error().toString();
    chunk_of_[id] = {worker, name};
    if (state == tasks::State::kRunning) {
      auto info_node = other_->get(layout_.worker(worker), nullptr).get();
      tasks::WorkerInfo info;
      info.id = worker;
      if (info_node) info = *tasks::workerFromJson(Json::parse(info_node->data));
      info.running[id] = base::wallMillis();
      const std::string data = tasks::toJson(info).dump();
      if (info_node) {
        ASSERT_TRUE(other_->set(layout_.worker(worker), data, coord::kAnyVersion).get());
      } else {
        ASSERT_TRUE(
            other_->create({layout_.worker(worker), data, coord::CreateMode::kPersistent, {}})
                .get());
      }
    }
  }

  // Plays the worker: commits a terminal state for a task assign() gave it.
  void finish(const std::string& id, const std::string& worker, tasks::State state) {
    ASSERT_TRUE(commit(id, worker, state));
  }
  // The worker's commit of `id`'s outcome from its chunk; an error when the chunk is gone.
  coord::Status commit(const std::string& id, const std::string& worker, tasks::State state) {
    auto where = chunk_of_.find(id);
    EXPECT_NE(where, chunk_of_.end()) << id;
    EXPECT_EQ(where->second.first, worker);
    const std::string& chunk_name = where->second.second;
    auto node = other_->get(layout_.chunk(worker, chunk_name), nullptr).get();
    if (!node) return tl::unexpected(node.error());
    auto items = tasks::decodeChunk(node->data);
    EXPECT_TRUE(items);
    auto ref = peer_->reader().resolve(id);
    EXPECT_TRUE(ref && *ref) << id;
    const tasks::ChunkItem* item = items->find(**ref);
    EXPECT_TRUE(item) << id;
    tasks::Outcome o;
    o.index = (*ref)->index;
    o.id = item->id;
    o.state = state;
    o.attempt = item->attempt;
    o.worker = worker;
    o.started_at = base::wallMillis();
    o.finished_at = o.started_at;
    o.result = Json{{"ok", true}};
    std::map<std::string, tasks::ResultRecord> outcomes;
    outcomes[(*ref)->batch].outcomes.push_back(o);
    tasks::v2::Builder b(layout_);
    b.commit({worker, chunk_name, node->stat.version, items->without({**ref})}, outcomes, {}, {},
             base::wallMillis());
    auto r = other_->multi(std::move(b).finish().ops).get();
    if (!r) return tl::unexpected(r.error());
    return {};
  }

  tasks::Layout layout_{"/drover"};
  std::shared_ptr<coord::FakeServer> server_;
  std::unique_ptr<coord::FakeCoordination> coord_;
  std::unique_ptr<coord::FakeCoordination> other_;
  // The feed's own session, so that call counts on coord_ see only the store's calls.
  std::unique_ptr<coord::FakeCoordination> feed_coord_;
  std::unique_ptr<BatchStore> store_;
  std::unique_ptr<BatchStore> peer_;  // the second session's reads (the helpers above)
  std::unique_ptr<ScheduleStore> schedules_;
  std::unique_ptr<EventFeed> feed_;
  std::unique_ptr<HttpServer> http_;
  int port_ = 0;
  int64_t chunks_ = 0;
  std::map<std::string, std::pair<std::string, std::string>> chunk_of_;  // id -> worker, chunk
};

}  // namespace drover::api::testing
