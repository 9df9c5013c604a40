#include "tasks/dag.h"

#include <gtest/gtest.h>

namespace drover::tasks {
namespace {

TaskSpec task(std::string id, std::vector<std::string> deps = {}) {
  TaskSpec s;
  s.id = std::move(id);
  s.type = "noop";
  s.depends_on = std::move(deps);
  return s;
}

TEST(Dag, IndexReferencesHaveOneSpelling) {
  EXPECT_EQ(parseIndexRef("#0"), 0u);
  EXPECT_EQ(parseIndexRef("#17"), 17u);
  for (const char* bad : {"", "#", "#-1", "#01", "#1x", "17", "# 1", "#99999999999"}) {
    EXPECT_FALSE(parseIndexRef(bad)) << bad;
  }
}

TEST(Dag, ResolvesIdsIndicesAndOutsideIds) {
  // A diamond (a -> b, c -> d) plus a chain hanging off d, with one id-less task and an outside id.
  auto deps = resolveDeps({task("a", {"old-1"}), task("b", {"a"}), task("", {"a", "a"}),
                           task("d", {"b", "#2", "old-1"}), task("e", {"d"}), task("f", {"#4"})});
  ASSERT_TRUE(deps) << deps.error().detail;
  EXPECT_EQ(deps->internal[0], std::vector<uint32_t>{});
  EXPECT_EQ(deps->internal[2], std::vector<uint32_t>{0});  // the repeat counts once
  EXPECT_EQ(deps->internal[3], (std::vector<uint32_t>{1, 2}));
  EXPECT_EQ(deps->internal[5], std::vector<uint32_t>{4});
  EXPECT_EQ(deps->external[0], std::vector<std::string>{"old-1"});
  EXPECT_EQ(deps->external[3], std::vector<std::string>{"old-1"});
  EXPECT_EQ(deps->externalIds(), std::vector<std::string>{"old-1"});
  EXPECT_FALSE(deps->empty());
  auto none = resolveDeps({task("x"), task("")});
  ASSERT_TRUE(none);
  EXPECT_TRUE(none->empty());
}

TEST(Dag, RefusesCyclesSelfReferencesAndBadIndices) {
  struct Case {
    std::vector<TaskSpec> specs;
    std::string field;
    std::string detail;
  };
  std::vector<Case> cases = {
      {{task("a", {"a"})}, "tasks[0].depends_on", "a task cannot depend on itself"},
      {{task("", {"#0"})}, "tasks[0].depends_on", "a task cannot depend on itself"},
      {{task("a", {"b"}), task("b", {"a"})},
       "tasks[0].depends_on",
       "a dependency cycle: a -> b -> a"},
      {{task("x"), task("a", {"#3"}), task("", {"a"}), task("c", {"#2"})},
       "tasks[1].depends_on",
       "a dependency cycle: a -> c -> #2 -> a"},
      {{task("a", {"#5"})}, "tasks[0].depends_on", "#5 is past the batch's end (1 tasks)"},
      {{task("a", {"#x"})}, "tasks[0].depends_on", "'#x' is not an index reference (#N)"},
  };
  for (const auto& c : cases) {
    auto r = resolveDeps(c.specs);
    ASSERT_FALSE(r) << c.detail;
    EXPECT_EQ(r.error().field, c.field);
    EXPECT_EQ(r.error().detail, c.detail);
  }
  std::vector<std::string> many(kMaxDependencies + 1);
  for (size_t i = 0; i < many.size(); ++i) many[i] = "t" + std::to_string(i);
  EXPECT_FALSE(resolveDeps({task("a", many)}));
}

TEST(Dag, ALongChainAndAWideFanAreFine) {
  std::vector<TaskSpec> chain;
  for (int i = 0; i < 1000; ++i)
    chain.push_back(task("", i ? std::vector<std::string>{"#" + std::to_string(i - 1)}
                               : std::vector<std::string>{}));
  ASSERT_TRUE(resolveDeps(chain));
  chain[0].depends_on = {"#999"};  // closes the chain into a ring
  auto ring = resolveDeps(chain);
  ASSERT_FALSE(ring);
  EXPECT_NE(ring.error().detail.find("#0 -> #999"), std::string::npos) << ring.error().detail;
}

}  // namespace
}  // namespace drover::tasks
