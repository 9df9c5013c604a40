#include "tasks/batch.h"

#include <gtest/gtest.h>

#include <map>
#include <random>

#include "tasks/layout.h"

namespace drover::tasks {
namespace {

TaskSpec spec(const std::string& id, const std::string& type = "noop") {
  TaskSpec s;
  s.id = id;
  s.type = type;
  return s;
}

TEST(BatchNames, SortBySubmitTimeAndNameTheirTimeBucket) {
  const int64_t ms = 1'796'083'200'123;  // 2026-12-01
  std::string a = makeBatchName(ms, 0xfffff);
  std::string b = makeBatchName(ms + 1, 0);
  EXPECT_TRUE(isBatchName(a));
  EXPECT_EQ(a.size(), 16u);
  EXPECT_LT(a, b);
  EXPECT_EQ(batchTime(a), ms);
  // Batches 65,536 ms apart fall in neighbouring buckets; the bucket is in both paths.
  Layout layout("/d");
  std::string c = makeBatchName(ms + 65'536, 7);
  EXPECT_EQ(layout.batch(a), "/d/batches/" + a.substr(0, 7) + "/" + a);
  EXPECT_EQ(layout.pending(a), "/d/pending/" + a.substr(0, 7) + "/" + a);
  EXPECT_NE(a.substr(0, 7), c.substr(0, 7));
  EXPECT_FALSE(isBatchName("0123456789abcdeF"));
  EXPECT_FALSE(isBatchName("0123456789abcde"));
}

TEST(BatchNames, GeneratedIdsRoundTripAndOthersAreNotTakenForThem) {
  std::string batch = makeBatchName(1000, 42);
  auto ref = parseGeneratedId(generatedId({batch, 17}));
  ASSERT_TRUE(ref);
  EXPECT_EQ(*ref, (TaskRef{batch, 17}));
  for (std::string id : {std::string("report-7"), batch, batch + ".", batch + ".017", batch + ".-1",
                         batch + ".99999999999", batch + ".1x", "x" + batch + ".1"}) {
    EXPECT_FALSE(parseGeneratedId(id)) << id;
  }
}

TEST(BatchRecords, BatchRecordStoresClientIdsOnly) {
  BatchRecord batch{makeBatchName(5000, 1), 5000, {}};
  batch.tasks.push_back(spec(generatedId({batch.name, 0})));
  batch.tasks.push_back(spec("client-id", "echo"));
  batch.tasks[1].payload = {{"k", "v"}};
  batch.tasks[1].priority = 9;
  std::string data = encode(batch);
  EXPECT_EQ(data.find(generatedId({batch.name, 0})), std::string::npos);
  EXPECT_NE(data.find("client-id"), std::string::npos);
  auto back = decodeBatch(batch.name, data);
  ASSERT_TRUE(back);
  EXPECT_EQ(back->submitted_at, 5000);
  EXPECT_EQ(back->tasks, batch.tasks);
  EXPECT_FALSE(decodeBatch(batch.name, R"({"v":1,"tasks":[]})"));
  EXPECT_FALSE(decodeBatch(batch.name, R"({"v":2,"tasks":[{"payload":{}}]})"));
  EXPECT_FALSE(decodeBatch(batch.name, "not json"));
}

TEST(BatchRecords, FreshPendingStateOfAThousandTasksIsOneRange) {
  PendingState fresh;
  for (uint32_t i = 0; i < 1000; ++i) fresh.wait(i, Waiting{});
  std::string data = encode(fresh);
  EXPECT_LT(data.size(), 40u) << data;
  auto back = decodePending(data);
  ASSERT_TRUE(back);
  EXPECT_EQ(*back, fresh);
}

TEST(BatchRecords, PendingStateKeepsRetriesAndHeldPointers) {
  PendingState s;
  for (uint32_t i = 0; i < 10; ++i) s.wait(i, Waiting{});
  s.hold(2, Held{"w1", "c-1"});
  s.hold(3, Held{"w1", "c-1"});
  s.hold(7, Held{"w2", "c-2"});
  s.wait(5, Waiting{2, 9000, "exit 3"});
  s.wait(6, Waiting{2, 9000, "exit 3"});
  s.erase(9);
  auto back = decodePending(encode(s));
  ASSERT_TRUE(back);
  EXPECT_EQ(*back, s);
  EXPECT_EQ(back->heldAt(3)->chunk, "c-1");
  EXPECT_EQ(back->waitingAt(6)->attempt, 2);
  EXPECT_EQ(back->waitingAt(9), nullptr);
  back->forgetChunk("w1", "c-1");
  EXPECT_EQ(back->held().size(), 1u);
  EXPECT_FALSE(back->empty());
}

// The waiting tasks are stored as runs; against a plain map of index -> Waiting driven by the same
// random waits, holds and erases, every read agrees, the runs stay merged (so == compares
// states, not histories) and the encoding round-trips.
TEST(BatchRecords, PendingStateRunsAgreeWithAPlainMap) {
  std::mt19937 random(20261203);
  const Waiting values[] = {Waiting{}, Waiting{2, 0, "exit 1"}, Waiting{3, 500, ""}};
  PendingState state;
  std::map<uint32_t, Waiting> model;
  for (int step = 0; step < 20'000; ++step) {
    const uint32_t index = random() % 300;
    switch (random() % 4) {
      case 0:
      case 1: {
        const Waiting& w = values[random() % 3];
        state.wait(index, w);
        model[index] = w;
        break;
      }
      case 2:
        state.hold(index, Held{"w1", "c-1"});
        model.erase(index);
        break;
      default:
        state.erase(index);
        model.erase(index);
    }
    if (step % 500 != 0) continue;
    ASSERT_EQ(state.waiting().size(), model.size()) << step;
    std::map<uint32_t, Waiting> seen;
    for (const auto& [i, w] : state.waiting()) seen.emplace(i, w);
    ASSERT_EQ(seen, model) << step;
    for (uint32_t i = 0; i < 300; ++i) {
      const Waiting* at = state.waitingAt(i);
      auto m = model.find(i);
      ASSERT_EQ(at != nullptr, m != model.end()) << i;
      if (at) {
        ASSERT_EQ(*at, m->second) << i;
      }
    }
    PendingState rebuilt;  // the same tasks waited on in another order: an equal state
    for (auto it = model.rbegin(); it != model.rend(); ++it) rebuilt.wait(it->first, it->second);
    for (const auto& [i, h] : state.held()) rebuilt.hold(i, h);
    ASSERT_EQ(rebuilt, state) << step;
    auto back = decodePending(encode(state));
    ASSERT_TRUE(back);
    ASSERT_EQ(*back, state) << step;
  }
}

TEST(BatchRecords, BadPendingStatesAreRefused) {
  for (const char* bad : {"", "[]", R"({"v":2})", R"({"v":1,"w":[]})", R"({"v":2,"w":[[5,2]]})",
                          R"({"v":2,"w":[[0,4000000000]]})", R"({"v":2,"w":[-1]})",
                          R"({"v":2,"w":[],"h":[{"r":1}]})"}) {
    EXPECT_FALSE(decodePending(bad)) << bad;
  }
}

TEST(BatchRecords, ChunkCarriesSmallSpecsAndClientIds) {
  std::string batch = makeBatchName(1, 1);
  Chunk chunk;
  chunk.items.resize(2);
  chunk.items[0].ref = TaskRef{batch, 0};
  chunk.items[0].id = generatedId({batch, 0});
  chunk.items[0].submitted_at = 100;
  chunk.items[0].spec = spec(generatedId({batch, 0}));
  chunk.items[1].ref = TaskRef{batch, 1};
  chunk.items[1].id = "mine";
  chunk.items[1].attempt = 3;
  chunk.items[1].submitted_at = 100;
  chunk.items[1].error = "timed out";
  auto back = decodeChunk(encode(chunk));
  ASSERT_TRUE(back);
  EXPECT_EQ(*back, chunk);
  EXPECT_EQ(back->find({batch, 1})->id, "mine");
  Chunk rest = chunk.without({{batch, 0}});
  ASSERT_EQ(rest.items.size(), 1u);
  EXPECT_EQ(rest.items[0].ref.index, 1u);
  EXPECT_FALSE(decodeChunk(R"({"v":2,"items":[{"b":"nope","i":0}]})"));
}

TEST(BatchRecords, ResultRecordsNameTheirRangeAndBoundResults) {
  ResultRecord r;
  r.outcomes.push_back(Outcome{12, "", State::kSucceeded, 1, "w1", 10, 20, "", Json{{"ok", 1}}});
  r.outcomes.push_back(Outcome{4, "mine", State::kFailed, 3, "w1", 10, 20, "exit 1", nullptr});
  r.outcomes.push_back(Outcome{7, "", State::kSucceeded, 1, "w1", 10, 20, "",
                               Json(std::string(kMaxResultBytes + 10, 'x'))});
  EXPECT_EQ(resultPrefix(r), "r-4-12-");
  auto range = resultRange(resultPrefix(r) + "0000000003");
  ASSERT_TRUE(range);
  EXPECT_EQ(*range, (std::pair<uint32_t, uint32_t>{4, 12}));
  EXPECT_FALSE(resultRange("r-9-4-0000000001"));
  EXPECT_FALSE(resultRange("x-1-2-3"));
  auto back = decodeResults(encode(r));
  ASSERT_TRUE(back);
  EXPECT_EQ(back->find(12)->result, (Json{{"ok", 1}}));
  EXPECT_EQ(back->find(4)->id, "mine");
  EXPECT_EQ(back->find(4)->error, "exit 1");
  EXPECT_TRUE(back->find(7)->result.value("truncated", false));
  EXPECT_EQ(back->find(5), nullptr);
  EXPECT_FALSE(decodeResults(R"({"v":2,"o":[{"i":1,"s":"running"}]})"));  // not an outcome
}

TEST(BatchRecords, EventGroupsSpellOutEveryTaskId) {
  EventGroup g{makeBatchName(9, 9), {0, 1, 2, 5}, {{5, "mine"}}, State::kAssigned, 2, "w1", 77};
  auto back = eventGroupFromJson(toJson(g));
  ASSERT_TRUE(back);
  EXPECT_EQ(*back, g);
  auto events = back->expand();
  ASSERT_EQ(events.size(), 4u);
  EXPECT_EQ(events[1].id, generatedId({g.batch, 1}));
  EXPECT_EQ(events[3].id, "mine");
  EXPECT_EQ(events[3].state, State::kAssigned);
  EXPECT_EQ(events[3].worker, "w1");
}

}  // namespace
}  // namespace drover::tasks
