// Leader election against a real 3-node ZooKeeper ensemble, with candidates in processes of
// their own that the tests kill -9, pause and resume.
#include "recipes/election.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <sstream>

#include "base/eventually.h"
#include "base/ids.h"
#include "coord/fault_injecting.h"
#include "coord/paths.h"
#include "coord/zk/zk_coordination.h"
#include "local/process.h"
#include "local/zk_cluster.h"

namespace drover {
namespace {

using namespace std::chrono_literals;
using local::Process;
using local::ZkCluster;

constexpr int kSessionMs = 2000;

std::vector<std::string> splitLines(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

// One candidate process and what it reported.
struct Candidate {
  std::string id;
  std::unique_ptr<Process> process;

  std::vector<std::string> lines() const { return splitLines(process->readStdout()); }
  // The epoch it leads with now (by its own account), or -1.
  int leadingEpoch() const {
    int epoch = -1;
    for (const auto& l : lines()) {
      if (l.rfind("elected ", 0) == 0) epoch = std::stoi(l.substr(8));
      if (l.rfind("lost ", 0) == 0) epoch = -1;
    }
    return epoch;
  }
  int count(const std::string& prefix) const {
    auto ls = lines();
    return static_cast<int>(std::count_if(
        ls.begin(), ls.end(), [&](const std::string& l) { return l.rfind(prefix, 0) == 0; }));
  }
};

class ElectionTest : public ::testing::Test {
 protected:
  static ZkCluster& zk() { return ZkCluster::sharedEnsemble(); }

  void SetUp() override { root_ = "/t-" + base::randomHex(6); }

  Candidate& spawn(const std::string& id, const std::string& connect = "") {
    auto c = std::make_unique<Candidate>();
    c->id = id;
    c->process = std::make_unique<Process>(std::vector<std::string>{
        DROVER_ELECTION_CANDIDATE, "--zk", connect.empty() ? zk().connectString() : connect,
        "--root", root_, "--id", id, "--session-timeout-ms", std::to_string(kSessionMs)});
    EXPECT_TRUE(c->process->waitForOutput("ready", 30s)) << c->process->readStderr();
    candidates_.push_back(std::move(c));
    return *candidates_.back();
  }

  std::vector<Candidate*> leaders() {
    std::vector<Candidate*> out;
    for (auto& c : candidates_) {
      if (c->process->alive() && c->leadingEpoch() >= 0) out.push_back(c.get());
    }
    return out;
  }

  Candidate* waitForLeader(int min_epoch, std::chrono::milliseconds timeout,
                           const Candidate* except = nullptr) {
    Candidate* found = nullptr;
    base::eventually(
        [&] {
          for (auto* c : leaders()) {
            if (c != except && c->leadingEpoch() >= min_epoch) found = c;
          }
          return found != nullptr;
        },
        timeout, 10ms);
    return found;
  }

  // The fenced log the leaders wrote: (writer id, epoch) in commit order.
  std::vector<std::pair<std::string, int>> log() {
    auto conn = coord::ZkCoordination::connect({zk().connectString(), 4000ms});
    EXPECT_TRUE(conn);
    EXPECT_TRUE((*conn)->waitConnected(20s));
    // A new session may sit on a server that has not applied the leaders' last writes yet.
    EXPECT_TRUE((*conn)->sync(root_ + "/log").get());
    auto kids = (*conn)->children(root_ + "/log", nullptr).get();
    EXPECT_TRUE(kids);
    std::vector<std::string> names = kids ? *kids : std::vector<std::string>{};
    std::sort(names.begin(), names.end());
    std::vector<std::pair<std::string, int>> out;
    for (const auto& n : names) {
      auto node = (*conn)->get(root_ + "/log/" + n, nullptr).get();
      if (!node) continue;
      std::istringstream in(node->data);
      std::string id;
      int epoch = 0;
      in >> id >> epoch;
      out.emplace_back(id, epoch);
    }
    return out;
  }

  // P5: epochs never go backwards in commit order, and one epoch has one writer.
  void expectOneLeaderPerEpoch() {
    auto entries = log();
    ASSERT_FALSE(entries.empty());
    std::map<int, std::string> writer_of;
    int last = -1;
    for (const auto& [id, epoch] : entries) {
      EXPECT_GE(epoch, last) << "a write of epoch " << epoch << " landed after epoch " << last;
      last = std::max(last, epoch);
      auto [it, inserted] = writer_of.emplace(epoch, id);
      EXPECT_EQ(it->second, id) << "two writers in epoch " << epoch;
    }
  }

  std::string root_;
  std::vector<std::unique_ptr<Candidate>> candidates_;
};

TEST_F(ElectionTest, FiveCandidatesElectExactlyOneLeader) {
  for (int i = 0; i < 5; ++i) spawn("c" + std::to_string(i));
  ASSERT_NE(waitForLeader(0, 20s), nullptr);
  // Watch the group for a while: never two leaders by their own account.
  auto until = std::chrono::steady_clock::now() + 1500ms;
  while (std::chrono::steady_clock::now() < until) {
    ASSERT_EQ(leaders().size(), 1u);
  }
  expectOneLeaderPerEpoch();
}

TEST_F(ElectionTest, KilledLeaderIsReplacedWithinSessionTimeoutWithAHigherEpoch) {
  for (int i = 0; i < 3; ++i) spawn("c" + std::to_string(i));
  Candidate* first = waitForLeader(0, 20s);
  ASSERT_NE(first, nullptr);
  int epoch = first->leadingEpoch();
  auto killed_at = std::chrono::steady_clock::now();
  first->process->kill9();
  Candidate* next = waitForLeader(epoch + 1, std::chrono::milliseconds(kSessionMs) + 10s, first);
  ASSERT_NE(next, nullptr);
  auto took = std::chrono::duration_cast<std::chrono::milliseconds>(
      std::chrono::steady_clock::now() - killed_at);
  std::cout << "[ figure ] new leader " << took.count() << " ms after kill -9 (session "
            << kSessionMs << " ms)\n";
  EXPECT_LE(took, std::chrono::milliseconds(kSessionMs) + 1s);
  EXPECT_GT(next->leadingEpoch(), epoch);
  EXPECT_EQ(leaders().size(), 1u);
  // The log holds writes of the new epoch once its leader has written.
  ASSERT_TRUE(base::eventually([&] { return next->count("write ") > 0; }, 10s));
  expectOneLeaderPerEpoch();
}

TEST_F(ElectionTest, PausedLeaderIsReplacedAndItsLateWritesAreFenced) {
  for (int i = 0; i < 3; ++i) spawn("c" + std::to_string(i));
  Candidate* old = waitForLeader(0, 20s);
  ASSERT_NE(old, nullptr);
  int old_epoch = old->leadingEpoch();
  ASSERT_TRUE(base::eventually([&] { return old->count("write ") > 0; }, 10s));
  old->process->pause();
  Candidate* next = waitForLeader(old_epoch + 1, std::chrono::milliseconds(kSessionMs) + 15s, old);
  ASSERT_NE(next, nullptr);
  ASSERT_TRUE(base::eventually([&] { return next->count("write ") > 0; }, 10s));
  old->process->resume();
  // The old leader learns it lost (session expired, or its fenced write bounced) and steps down.
  ASSERT_TRUE(old->process->waitForOutput("lost ", 20s)) << old->process->readStdout();
  ASSERT_TRUE(base::eventually([&] { return leaders().size() == 1; }, 10s));
  // Let the new leader write a little more after the old one woke up, then check the log: no
  // write of the old epoch after the first write of the new one.
  int writes = next->count("write ");
  ASSERT_TRUE(base::eventually([&] { return next->count("write ") > writes + 5; }, 10s));
  expectOneLeaderPerEpoch();
}

TEST_F(ElectionTest, KillingTheLeaderWakesOnlyItsSuccessor) {
  constexpr int kCandidates = 8;
  constexpr int kKills = 10;
  for (int i = 0; i < kCandidates; ++i) spawn("c" + std::to_string(i));
  int epoch = -1;
  int next_name = kCandidates;
  for (int k = 0; k < kKills; ++k) {
    Candidate* leader = waitForLeader(epoch + 1, std::chrono::milliseconds(kSessionMs) + 15s);
    ASSERT_NE(leader, nullptr) << "no leader after kill " << k;
    epoch = leader->leadingEpoch();
    int watches_before = 0;
    for (auto& c : candidates_) watches_before += c->count("watch");
    leader->process->kill9();
    Candidate* successor =
        waitForLeader(epoch + 1, std::chrono::milliseconds(kSessionMs) + 15s, leader);
    ASSERT_NE(successor, nullptr);
    int watches_after = 0;
    for (auto& c : candidates_) watches_after += c->count("watch");
    EXPECT_EQ(watches_after - watches_before, 1) << "kill " << k << ": a herd of notifications";
    spawn("c" + std::to_string(next_name++));  // keep eight standing
  }
  expectOneLeaderPerEpoch();
}

TEST_F(ElectionTest, AmbiguousCandidateCreateLeavesNoOrphan) {
  auto conn = coord::ZkCoordination::connect({zk().connectString(), 4000ms});
  ASSERT_TRUE(conn);
  ASSERT_TRUE((*conn)->waitConnected(20s));
  ASSERT_TRUE(coord::ensurePath(**conn, root_ + "/election"));
  coord::FaultInjectingCoordination faulty(**conn);
  faulty.ambiguousNext(root_ + "/election/");
  std::atomic<int> elected{-1};
  recipes::LeaderElection election(
      faulty, {root_ + "/election", root_ + "/epoch", root_ + "/leader", "solo", "{}"},
      {[&](int32_t e) { elected = e; }, nullptr, nullptr});
  election.start();
  ASSERT_TRUE(base::eventually([&] { return elected.load() >= 0; }, 10s));
  EXPECT_EQ(faulty.injected(), 1);
  auto kids = (*conn)->children(root_ + "/election", nullptr).get();
  ASSERT_TRUE(kids);
  EXPECT_EQ(kids->size(), 1u) << "an orphaned candidate node blocks the election";
  EXPECT_EQ(election.candidateNode(), kids->front());
  election.stop();
  kids = (*conn)->children(root_ + "/election", nullptr).get();
  ASSERT_TRUE(kids);
  EXPECT_TRUE(kids->empty());
}

// A rolling restart of one ZooKeeper server must cost no session and no leadership change.
TEST(EnsembleRestart, RestartingOneServerExpiresNoSessionAndKeepsTheLeader) {
  auto zk = ZkCluster::ensemble(3);
  std::string root = "/t-" + base::randomHex(6);
  std::vector<std::unique_ptr<Candidate>> cands;
  for (int i = 0; i < 3; ++i) {
    auto c = std::make_unique<Candidate>();
    c->id = "c" + std::to_string(i);
    c->process = std::make_unique<Process>(
        std::vector<std::string>{DROVER_ELECTION_CANDIDATE, "--zk", zk->connectString(), "--root",
                                 root, "--id", c->id, "--session-timeout-ms", "6000"});
    ASSERT_TRUE(c->process->waitForOutput("ready", 30s));
    cands.push_back(std::move(c));
  }
  Candidate* leader = nullptr;
  ASSERT_TRUE(base::eventually(
      [&] {
        for (auto& c : cands) {
          if (c->leadingEpoch() >= 0) leader = c.get();
        }
        return leader != nullptr;
      },
      20s));
  int epoch = leader->leadingEpoch();
  // Restart a follower server (clients connected to it move to the others).
  int victim = (zk->leaderIndex() + 1) % zk->size();
  zk->stop(victim);
  zk->restart(victim);
  ASSERT_TRUE(zk->waitUntilServing(60s));
  int writes = leader->count("write ");
  ASSERT_TRUE(base::eventually([&] { return leader->count("write ") > writes + 10; }, 20s));
  for (auto& c : cands) {
    EXPECT_EQ(c->count("session expired"), 0) << c->id;
    EXPECT_EQ(c->count("lost "), 0) << c->id;
  }
  EXPECT_EQ(leader->leadingEpoch(), epoch);
}

}  // namespace
}  // namespace drover
