#pragma once

// The fixture of the transition builders' tests (protocol_test.cc, protocol_api_test.cc): a
// fake tree with the v2 directories, and readers of where the tokens are after a transition.

#include <gtest/gtest.h>

#include <algorithm>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "coord/fake/fake_coordination.h"
#include "coord/paths.h"
#include "tasks/protocol.h"

namespace drover::tasks::v2 {
// Each v2 transition applied to a fake tree: where the tokens are afterwards, and which record
// its decoder names when one of its ops fails.
class ProtocolTest : public ::testing::Test {
 protected:
  void SetUp() override {
    server_ = std::make_shared<coord::FakeServer>();
    coord_ = std::make_unique<coord::FakeCoordination>(server_);
    for (const auto& d : layout_.directories()) ASSERT_TRUE(coord::ensurePath(*coord_, d));
    for (const auto& b : {batch_, other_}) {
      ASSERT_TRUE(coord::ensurePath(*coord_, layout_.batchBucket(b.substr(0, 7))));
      ASSERT_TRUE(coord::ensurePath(*coord_, layout_.pendingBucket(b.substr(0, 7))));
    }
    ASSERT_TRUE(coord::ensurePath(*coord_, layout_.assignmentsOf("w1")));
    ASSERT_TRUE(coord_->create({layout_.epoch(), "", coord::CreateMode::kPersistent, {}}).get());
  }

  BatchRecord record(const std::string& name, size_t n, std::vector<std::string> client = {}) {
    BatchRecord b{name, 100, {}};
    for (uint32_t i = 0; i < n; ++i) {
      TaskSpec s;
      s.id = i < client.size() ? client[i] : generatedId({name, i});
      s.type = "noop";
      b.tasks.push_back(s);
    }
    return b;
  }

  coord::Result<std::vector<coord::OpResult>> run(const Multi& m) {
    return coord_->multi(m.ops).get();
  }
  void apply(Builder b) {
    auto m = std::move(b).finish();
    auto r = run(m);
    std::string paths;
    for (const auto& op : m.ops)
      paths += std::visit([](const auto& o) { return o.path; }, op) + " ";
    ASSERT_TRUE(r) << r.error().toString() << " " << paths;
  }
  // Runs `b`, expects it to fail, returns the decoded role.
  Role failing(Builder b, coord::Code code) {
    auto m = std::move(b).finish();
    auto r = run(m);
    EXPECT_FALSE(r);
    if (r) return {};
    EXPECT_EQ(r.error().code(), code) << r.error().toString();
    auto role = m.decoder.failed(r.error());
    EXPECT_TRUE(role);
    return role.value_or(Role{});
  }

  std::pair<PendingState, int32_t> pending(const std::string& batch) {
    auto r = coord_->get(layout_.pending(batch), nullptr).get();
    if (!r) return {PendingState{}, -1};
    return {decodePending(r->data).value_or(PendingState{}), r->stat.version};
  }
  std::pair<Chunk, int32_t> chunk(const std::string& name) {
    auto r = coord_->get(layout_.chunk("w1", name), nullptr).get();
    if (!r) return {Chunk{}, -1};
    return {decodeChunk(r->data).value_or(Chunk{}), r->stat.version};
  }
  std::vector<ResultRecord> results(const std::string& batch) {
    std::vector<ResultRecord> out;
    auto names = coord_->children(layout_.batch(batch), nullptr).get();
    if (!names) return out;
    for (const auto& n : *names) {
      auto r = coord_->get(layout_.batch(batch) + "/" + n, nullptr).get();
      if (r) out.push_back(decodeResults(r->data).value_or(ResultRecord{}));
    }
    return out;
  }
  std::vector<TaskEvent> lastEvents() {
    auto names = coord_->children(layout_.events(), nullptr).get();
    if (!names || names->empty()) return {};
    // "e-" and "n-" records share one sequence: the last is the highest number.
    std::sort(names->begin(), names->end(), coord::bySequence);
    auto r = coord_->get(layout_.events() + "/" + names->back(), nullptr).get();
    std::vector<TaskEvent> out;
    for (const auto& g : Json::parse(r->data)) {
      for (auto& e : eventGroupFromJson(g)->expand()) out.push_back(e);
    }
    return out;
  }
  bool exists(const std::string& path) {
    auto r = coord_->exists(path, nullptr).get();
    return r && r->has_value();
  }

  ChunkItem item(const std::string& batch, uint32_t i, int attempt = 1) {
    return ChunkItem{{batch, i}, generatedId({batch, i}), attempt, 100, "", std::nullopt};
  }

  // Submits `batch_` (n tasks) and assigns indices [0, k) to w1 as chunk `c`.
  void submitAndAssign(size_t n, uint32_t k, const std::string& c) {
    Builder s(layout_);
    s.submit(record(batch_, n));
    apply(std::move(s));
    auto [state, version] = pending(batch_);
    Chunk chunk;
    for (uint32_t i = 0; i < k; ++i) {
      state.hold(i, Held{"w1", c});
      chunk.items.push_back(item(batch_, i));
    }
    Builder a = Builder::fenced(layout_, 0);
    a.assign({PendingWrite{batch_, version, state}}, "w1", c, chunk, 200);
    apply(std::move(a));
  }

  // Cancels waiting task `i` of `batch_` at wall-clock ms `at` (the pending state read now).
  void cancelOneWaiting(uint32_t i, int64_t at) {
    auto [state, version] = pending(batch_);
    state.erase(i);
    Builder b(layout_);
    b.cancel(item(batch_, i), PendingWrite{batch_, version, state}, std::nullopt,
             Outcome{i, "", State::kCancelled, 0, "", 0, at, "cancelled", nullptr});
    apply(std::move(b));
  }

  Layout layout_{"/drover"};
  std::string batch_ = makeBatchName(1'796'083'200'000, 1);
  std::string other_ = makeBatchName(1'796'083'200'000, 2);
  std::shared_ptr<coord::FakeServer> server_;
  std::unique_ptr<coord::FakeCoordination> coord_;
};

}  // namespace drover::tasks::v2
