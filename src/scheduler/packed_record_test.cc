#include "scheduler/packed_record.h"

#include <gtest/gtest.h>

#include <string>

namespace drover::scheduler {
namespace {

// A record mixing what the leader reads per task: generated and client-chosen ids, priorities,
// routes, callbacks, dependencies, and a large payload.
tasks::BatchRecord mixedRecord() {
  tasks::BatchRecord r;
  r.name = "1a22ee6b0000f3a1";
  r.submitted_at = 1'800'000'000'000;
  for (uint32_t i = 0; i < 40; ++i) {
    tasks::TaskSpec spec;
    spec.id = i % 3 == 1 ? "client-" + std::to_string(i) : tasks::generatedId({r.name, i});
    spec.type = i % 4 == 0 ? "resize" : "noop";
    spec.payload = {{"n", i}, {"text", std::string(i == 7 ? 5000 : 10, 'x')}};
    spec.priority = static_cast<int>(i % 10);
    spec.max_attempts = 1 + static_cast<int>(i % 5);
    spec.queue = i % 5 == 0 ? "etl" : "default";
    if (i % 6 == 0) spec.labels = {"gpu", "ssd"};
    if (i % 7 == 0) spec.callback_url = "http://127.0.0.1:9/done";
    if (i > 0 && i % 8 == 0) spec.depends_on = {"#0", "client-1"};
    r.tasks.push_back(std::move(spec));
  }
  return r;
}

TEST(PackedRecord, AnswersWhatTheDecodedRecordWould) {
  const tasks::BatchRecord r = mixedRecord();
  const std::string data = tasks::encode(r);
  auto decoded = tasks::decodeBatch(r.name, data);
  auto packed = PackedRecord::decode(r.name, data);
  ASSERT_TRUE(decoded);
  ASSERT_TRUE(packed);
  EXPECT_EQ(packed->name(), r.name);
  EXPECT_EQ(packed->submittedAt(), r.submitted_at);
  ASSERT_EQ(packed->size(), decoded->tasks.size());
  for (uint32_t i = 0; i < packed->size(); ++i) {
    const tasks::TaskSpec& want = decoded->tasks[i];
    EXPECT_EQ(packed->spec(i), want) << i;
    EXPECT_EQ(packed->id(i), want.id) << i;
    EXPECT_EQ(packed->customId(i), want.id != tasks::generatedId({r.name, i})) << i;
    EXPECT_EQ(packed->priority(i), want.priority) << i;
    EXPECT_EQ(packed->maxAttempts(i), want.max_attempts) << i;
    EXPECT_EQ(packed->route(i), routeOf(want)) << i;
    EXPECT_EQ(packed->hasCallback(i), !want.callback_url.empty()) << i;
    EXPECT_EQ(packed->hasDependencies(i), !want.depends_on.empty()) << i;
    // What the chunk cut counts: the spec as a chunk carries it, id included.
    EXPECT_EQ(packed->specBytes(i), tasks::toJson(want).dump().size()) << i;
  }
  EXPECT_GT(packed->specBytes(7), tasks::kInlineSpecBytes);
}

TEST(PackedRecord, KeepsIdsWhenTheFirstClientChosenOneComesFirstOrLast) {
  for (uint32_t custom : {0u, 2u}) {
    tasks::BatchRecord r;
    r.name = "1a22ee6b0000f3a1";
    for (uint32_t i = 0; i < 3; ++i) {
      r.tasks.push_back(tasks::TaskSpec{
          .id = i == custom ? "mine" : tasks::generatedId({r.name, i}), .type = "noop"});
    }
    PackedRecord packed = PackedRecord::pack(r);
    for (uint32_t i = 0; i < 3; ++i) {
      EXPECT_EQ(packed.id(i), r.tasks[i].id) << custom << " " << i;
      EXPECT_EQ(packed.customId(i), i == custom) << custom << " " << i;
    }
  }
}

TEST(PackedRecord, RefusesWhatDecodeBatchRefuses) {
  const std::string name = "1a22ee6b0000f3a1";
  for (const char* bad : {
           "",
           "[]",
           R"({"v":1,"at":0,"tasks":[]})",
           R"({"v":2,"at":0,"tasks":{}})",
           R"({"v":2,"at":0,"tasks":[7]})",
           R"({"v":2,"at":0,"tasks":[{"type":"noop","priority":"high"}]})",
           R"({"v":2,"at":0})",
       }) {
    EXPECT_FALSE(tasks::decodeBatch(name, bad)) << bad;
    EXPECT_FALSE(PackedRecord::decode(name, bad)) << bad;
  }
  // Beyond what submit allows, but read as the decoded record reads it.
  auto odd =
      PackedRecord::decode(name, R"({"v":2,"at":0,"tasks":[{"type":"noop","priority":12}]})");
  ASSERT_TRUE(odd);
  EXPECT_EQ(odd->priority(0), 12);
  EXPECT_FALSE(
      PackedRecord::decode(name, R"({"v":2,"at":0,"tasks":[{"type":"noop","priority":1e6}]})"));
  auto empty = PackedRecord::decode(name, R"({"v":2,"at":5,"tasks":[]})");
  ASSERT_TRUE(empty);
  EXPECT_EQ(empty->size(), 0u);
}

}  // namespace
}  // namespace drover::scheduler
