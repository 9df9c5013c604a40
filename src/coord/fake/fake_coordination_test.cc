#include "coord/fake/fake_coordination.h"

#include <gtest/gtest.h>

#include <atomic>
#include <set>
#include <thread>

#include "base/eventually.h"
#include "coord/contract_suite.h"

namespace drover::coord {
namespace {

using contract::await;
using contract::codeOf;
using contract::SessionRecorder;
using contract::valueOf;
using contract::WatchRecorder;

CreateOp persistent(std::string path, std::string data = {}) {
  return CreateOp{std::move(path), std::move(data), CreateMode::kPersistent, {}};
}
CreateOp ephemeral(std::string path) {
  return CreateOp{std::move(path), {}, CreateMode::kEphemeral, {}};
}
CreateOp container(std::string path) {
  return CreateOp{std::move(path), {}, CreateMode::kContainer, {}};
}

class FakeCoordinationTest : public ::testing::Test {
 protected:
  std::shared_ptr<FakeServer> server_ = std::make_shared<FakeServer>();
  FakeCoordination client_{server_};
};

// --- The tree ------------------------------------------------------------------------------

TEST_F(FakeCoordinationTest, RootAlwaysExists) {
  EXPECT_TRUE(server_->peek("/").has_value());
  EXPECT_EQ(server_->nodeCount(), 1u);
  EXPECT_TRUE(server_->dump().empty());
  EXPECT_EQ(codeOf(client_.remove("/", kAnyVersion)), Code::kBadArguments);
  EXPECT_EQ(codeOf(client_.create(persistent("/"))), Code::kNodeExists);
  EXPECT_EQ(codeOf(client_.multi({DeleteOp{"/", kAnyVersion}})), Code::kBadArguments);
  EXPECT_TRUE(server_->peek("/").has_value());
}

TEST_F(FakeCoordinationTest, DumpAndPeekShowTheTree) {
  ASSERT_EQ(codeOf(client_.create(persistent("/b", "2"))), Code::kOk);
  ASSERT_EQ(codeOf(client_.create(persistent("/a", "1"))), Code::kOk);
  ASSERT_EQ(codeOf(client_.create(persistent("/a/c", "3"))), Code::kOk);
  EXPECT_EQ(server_->dump(),
            (std::map<std::string, std::string>{{"/a", "1"}, {"/a/c", "3"}, {"/b", "2"}}));
  EXPECT_EQ(server_->nodeCount(), 4u);
  auto node = server_->peek("/a");
  ASSERT_TRUE(node.has_value());
  EXPECT_EQ(node->data, "1");
  EXPECT_EQ(node->stat.num_children, 1);
  EXPECT_FALSE(server_->peek("/nope").has_value());
}

TEST_F(FakeCoordinationTest, StatBookkeeping) {
  int64_t before = server_->lastZxid();
  ASSERT_EQ(codeOf(client_.create(persistent("/p"))), Code::kOk);
  ASSERT_EQ(codeOf(client_.create(persistent("/p/a", "xy"))), Code::kOk);
  EXPECT_EQ(server_->lastZxid(), before + 2);
  Stat parent = server_->peek("/p")->stat;
  Stat child = server_->peek("/p/a")->stat;
  EXPECT_EQ(parent.czxid, before + 1);
  EXPECT_EQ(parent.mzxid, before + 1);  // a child does not change the parent's data
  EXPECT_EQ(parent.pzxid, child.czxid);
  EXPECT_EQ(parent.cversion, 1);
  EXPECT_EQ(parent.num_children, 1);
  EXPECT_EQ(child.data_length, 2);

  ASSERT_EQ(codeOf(client_.remove("/p/a", kAnyVersion)), Code::kOk);
  parent = server_->peek("/p")->stat;
  EXPECT_EQ(parent.cversion, 2);
  EXPECT_EQ(parent.num_children, 0);
  EXPECT_EQ(parent.pzxid, server_->lastZxid());

  // Failed writes take no zxid.
  int64_t last = server_->lastZxid();
  EXPECT_EQ(codeOf(client_.create(persistent("/p"))), Code::kNodeExists);
  EXPECT_EQ(codeOf(client_.set("/p", "x", 9)), Code::kBadVersion);
  EXPECT_EQ(server_->lastZxid(), last);
}

TEST_F(FakeCoordinationTest, MultiIsOneTransaction) {
  int64_t before = server_->lastZxid();
  ASSERT_EQ(codeOf(client_.multi({CreateOp{"/a", "", CreateMode::kPersistent, {}},
                                  CreateOp{"/b", "", CreateMode::kPersistent, {}}})),
            Code::kOk);
  EXPECT_EQ(server_->lastZxid(), before + 1);
  EXPECT_EQ(server_->peek("/a")->stat.czxid, server_->peek("/b")->stat.czxid);

  // A failed multi leaves the zxid and every stat as they were.
  auto root = server_->peek("/")->stat;
  EXPECT_EQ(
      codeOf(client_.multi({CreateOp{"/c", "", CreateMode::kPersistent, {}}, CheckOp{"/a", 5}})),
      Code::kBadVersion);
  EXPECT_EQ(server_->lastZxid(), before + 1);
  EXPECT_EQ(server_->peek("/")->stat.cversion, root.cversion);
  EXPECT_EQ(server_->peek("/")->stat.num_children, root.num_children);
}

TEST_F(FakeCoordinationTest, EmptyMultiSucceeds) {
  auto results = valueOf(client_.multi({}));
  EXPECT_TRUE(results.empty());
}

TEST_F(FakeCoordinationTest, MultiReportsBadArgumentsWithTheOpIndex) {
  auto result = await(client_.multi(
      {CreateOp{"/ok", "", CreateMode::kPersistent, {}}, SetOp{"bad", "", kAnyVersion}}));
  ASSERT_FALSE(result.has_value());
  EXPECT_EQ(result.error().code(), Code::kBadArguments);
  EXPECT_EQ(result.error().failedOp(), 1);
  EXPECT_FALSE(server_->peek("/ok").has_value());
}

TEST_F(FakeCoordinationTest, SequenceSuffixCountsCreatesAndCollides) {
  ASSERT_EQ(codeOf(client_.create(persistent("/q"))), Code::kOk);
  for (int i = 0; i < 10; ++i) {
    ASSERT_EQ(codeOf(client_.create(persistent("/q/n" + std::to_string(i)))), Code::kOk);
  }
  // Deletes bump cversion but do not move the counter (as in ZooKeeper 3.8).
  for (int i = 0; i < 4; ++i) {
    ASSERT_EQ(codeOf(client_.remove("/q/n" + std::to_string(i), kAnyVersion)), Code::kOk);
  }
  EXPECT_EQ(server_->peek("/q")->stat.cversion, 14);
  EXPECT_EQ(valueOf(client_.create(CreateOp{"/q/s-", "", CreateMode::kPersistentSequential, {}})),
            "/q/s-0000000010");
  // The next name is taken by a plain node: ZooKeeper answers kNodeExists (and so does the fake).
  ASSERT_EQ(codeOf(client_.create(persistent("/q/s-0000000012"))), Code::kOk);
  EXPECT_EQ(codeOf(client_.create(CreateOp{"/q/s-", "", CreateMode::kPersistentSequential, {}})),
            Code::kNodeExists);
}

TEST_F(FakeCoordinationTest, ValuesUpToOneMebibyte) {
  const std::string limit(kMaxDataBytes, 'x');
  const std::string over(kMaxDataBytes + 1, 'x');
  EXPECT_EQ(codeOf(client_.create(persistent("/max", limit))), Code::kOk);
  EXPECT_EQ(server_->peek("/max")->stat.data_length, static_cast<int32_t>(kMaxDataBytes));
  EXPECT_EQ(codeOf(client_.create(persistent("/over", over))), Code::kBadArguments);
  EXPECT_EQ(codeOf(client_.set("/max", over, kAnyVersion)), Code::kBadArguments);
  auto result = await(client_.multi({CheckOp{"/max", kAnyVersion}, SetOp{"/max", over, 0}}));
  ASSERT_FALSE(result.has_value());
  EXPECT_EQ(result.error().code(), Code::kBadArguments);
  EXPECT_EQ(result.error().failedOp(), 1);
  EXPECT_FALSE(server_->peek("/over").has_value());
  EXPECT_EQ(server_->peek("/max")->stat.version, 0);
}

TEST_F(FakeCoordinationTest, SequentialCreateValidatesThePrefix) {
  EXPECT_EQ(codeOf(client_.create(CreateOp{"/", "", CreateMode::kPersistentSequential, {}})),
            Code::kOk);  // "/0000000000"
  EXPECT_EQ(codeOf(client_.create(CreateOp{"/a//", "", CreateMode::kPersistentSequential, {}})),
            Code::kBadArguments);
  EXPECT_EQ(codeOf(client_.create(CreateOp{"rel-", "", CreateMode::kEphemeralSequential, {}})),
            Code::kBadArguments);
  EXPECT_TRUE(server_->peek("/0000000000").has_value());
}

TEST_F(FakeCoordinationTest, SyncRejectsABadPath) {
  EXPECT_EQ(codeOf(client_.sync("/")), Code::kOk);
  EXPECT_EQ(codeOf(client_.sync("/missing")), Code::kOk);
  EXPECT_EQ(codeOf(client_.sync("bad")), Code::kBadArguments);
}

// --- Containers ----------------------------------------------------------------------------

TEST_F(FakeCoordinationTest, ContainerGoesWithItsLastChild) {
  ASSERT_EQ(codeOf(client_.create(container("/box"))), Code::kOk);
  EXPECT_EQ(server_->peek("/box")->stat.ephemeral_owner, 0);
  ASSERT_EQ(codeOf(client_.create(persistent("/box/a"))), Code::kOk);
  ASSERT_EQ(codeOf(client_.create(persistent("/box/b"))), Code::kOk);

  WatchRecorder box;
  WatchRecorder root;
  ASSERT_EQ(codeOf(client_.exists("/box", box.watcher())), Code::kOk);
  ASSERT_EQ(codeOf(client_.remove("/box/a", kAnyVersion)), Code::kOk);
  EXPECT_TRUE(server_->peek("/box").has_value());
  ASSERT_EQ(codeOf(client_.children("/", root.watcher())), Code::kOk);
  ASSERT_EQ(codeOf(client_.remove("/box/b", kAnyVersion)), Code::kOk);
  EXPECT_FALSE(server_->peek("/box").has_value());
  ASSERT_TRUE(box.waitForCount(1));
  ASSERT_TRUE(root.waitForCount(1));
  EXPECT_EQ(box.events()[0].type, EventType::kDeleted);
  EXPECT_EQ(root.events()[0].type, EventType::kChildrenChanged);
  EXPECT_EQ(root.events()[0].path, "/");
}

TEST_F(FakeCoordinationTest, ContainerThatNeverHadChildrenStays) {
  ASSERT_EQ(codeOf(client_.create(container("/box"))), Code::kOk);
  ASSERT_EQ(codeOf(client_.create(persistent("/other"))), Code::kOk);
  ASSERT_EQ(codeOf(client_.remove("/other", kAnyVersion)), Code::kOk);
  EXPECT_TRUE(server_->peek("/box").has_value());
}

TEST_F(FakeCoordinationTest, NestedContainersEmptyBottomUp) {
  ASSERT_EQ(codeOf(client_.create(container("/outer"))), Code::kOk);
  ASSERT_EQ(codeOf(client_.create(container("/outer/inner"))), Code::kOk);
  ASSERT_EQ(codeOf(client_.create(persistent("/outer/inner/leaf"))), Code::kOk);
  ASSERT_EQ(codeOf(client_.remove("/outer/inner/leaf", kAnyVersion)), Code::kOk);
  EXPECT_FALSE(server_->peek("/outer/inner").has_value());
  EXPECT_FALSE(server_->peek("/outer").has_value());
}

TEST_F(FakeCoordinationTest, ContainerSurvivesAMultiThatRefillsIt) {
  ASSERT_EQ(codeOf(client_.create(container("/box"))), Code::kOk);
  ASSERT_EQ(codeOf(client_.create(persistent("/box/a"))), Code::kOk);
  ASSERT_EQ(codeOf(client_.multi({DeleteOp{"/box/a", kAnyVersion},
                                  CreateOp{"/box/b", "", CreateMode::kPersistent, {}}})),
            Code::kOk);
  EXPECT_TRUE(server_->peek("/box/b").has_value());
}

TEST_F(FakeCoordinationTest, ContainerGoesWhenItsEphemeralChildsSessionEnds) {
  ASSERT_EQ(codeOf(client_.create(container("/box"))), Code::kOk);
  {
    FakeCoordination other(server_);
    ASSERT_EQ(codeOf(other.create(ephemeral("/box/member"))), Code::kOk);
  }
  EXPECT_FALSE(server_->peek("/box").has_value());
}

// --- ACLs and auth -------------------------------------------------------------------------

TEST_F(FakeCoordinationTest, AclsAreValidatedAndStored) {
  Acl acl{AclEntry{AclEntry::kRead, "world", "anyone"},
          AclEntry{AclEntry::kAll, "digest", "bob:hash"}};
  ASSERT_EQ(codeOf(client_.create(CreateOp{"/a", "", CreateMode::kPersistent, acl})), Code::kOk);
  auto stored = server_->aclOf("/a");
  ASSERT_TRUE(stored.has_value());
  ASSERT_EQ(stored->size(), 2u);
  EXPECT_EQ((*stored)[1].id, "bob:hash");
  EXPECT_EQ((*stored)[0].perms, AclEntry::kRead);
  EXPECT_FALSE(server_->aclOf("/nope").has_value());

  for (const AclEntry& bad :
       {AclEntry{AclEntry::kAll, "world", "someone"}, AclEntry{AclEntry::kAll, "nosuch", "x"},
        AclEntry{AclEntry::kAll, "digest", "nocolon"}, AclEntry{AclEntry::kAll, "auth", ""},
        AclEntry{64, "world", "anyone"}}) {
    SCOPED_TRACE(bad.scheme + ":" + bad.id);
    EXPECT_EQ(codeOf(client_.create(CreateOp{"/b", "", CreateMode::kPersistent, {bad}})),
              Code::kInvalidAcl);
  }
  EXPECT_FALSE(server_->peek("/b").has_value());
}

TEST_F(FakeCoordinationTest, AuthSchemeNeedsCredentialsAndSurvivesExpiry) {
  const Acl auth_acl{AclEntry{AclEntry::kAll, "auth", ""}};
  ASSERT_EQ(codeOf(client_.addAuth("digest", "bob:secret")), Code::kOk);
  EXPECT_EQ(client_.auths(),
            (std::vector<std::pair<std::string, std::string>>{{"digest", "bob:secret"}}));
  EXPECT_EQ(codeOf(client_.create(CreateOp{"/a", "", CreateMode::kPersistent, auth_acl})),
            Code::kOk);
  // The new session after expiry carries the credentials too.
  client_.expireSession();
  EXPECT_EQ(codeOf(client_.create(CreateOp{"/b", "", CreateMode::kPersistent, auth_acl})),
            Code::kOk);
  // Nobody enforces ACLs in the fake: another session without credentials may write.
  FakeCoordination other(server_);
  EXPECT_EQ(codeOf(other.set("/a", "x", kAnyVersion)), Code::kOk);
}

// --- Watches -------------------------------------------------------------------------------

TEST_F(FakeCoordinationTest, WatchCountTracksRegistrations) {
  ASSERT_EQ(codeOf(client_.create(persistent("/a"))), Code::kOk);
  WatchRecorder watch;
  EXPECT_EQ(codeOf(client_.get("/a", nullptr)), Code::kOk);
  EXPECT_EQ(codeOf(client_.get("/missing", watch.watcher())), Code::kNoNode);
  EXPECT_EQ(codeOf(client_.children("/missing", watch.watcher())), Code::kNoNode);
  EXPECT_EQ(server_->watchCount(), 0u);
  EXPECT_EQ(codeOf(client_.exists("/missing", watch.watcher())), Code::kOk);
  EXPECT_EQ(codeOf(client_.get("/a", watch.watcher())), Code::kOk);
  EXPECT_EQ(codeOf(client_.children("/a", watch.watcher())), Code::kOk);
  EXPECT_EQ(server_->watchCount(), 3u);
  // Deleting /a fires both of its watches.
  ASSERT_EQ(codeOf(client_.remove("/a", kAnyVersion)), Code::kOk);
  EXPECT_EQ(server_->watchCount(), 1u);
  ASSERT_TRUE(watch.waitForCount(2));
  for (const auto& event : watch.events()) EXPECT_EQ(event.type, EventType::kDeleted);
}

TEST_F(FakeCoordinationTest, WatchesRunOnTheEventThreadInOrder) {
  for (const char* p : {"/a", "/b", "/c"}) {
    ASSERT_EQ(codeOf(client_.create(persistent(p))), Code::kOk);
  }
  std::mutex mu;
  std::vector<std::string> order;
  std::set<std::thread::id> threads;
  auto watcher = [&](const WatchEvent& event) {
    std::lock_guard lock(mu);
    order.push_back(event.path);
    threads.insert(std::this_thread::get_id());
  };
  for (const char* p : {"/c", "/a", "/b"}) ASSERT_EQ(codeOf(client_.get(p, watcher)), Code::kOk);
  for (const char* p : {"/b", "/c", "/a"}) {
    ASSERT_EQ(codeOf(client_.set(p, "x", kAnyVersion)), Code::kOk);
  }
  ASSERT_TRUE(base::eventually([&] {
    std::lock_guard lock(mu);
    return order.size() == 3;
  }));
  std::lock_guard lock(mu);
  EXPECT_EQ(order, (std::vector<std::string>{"/b", "/c", "/a"}));
  ASSERT_EQ(threads.size(), 1u);
  EXPECT_NE(*threads.begin(), std::this_thread::get_id());
}

TEST_F(FakeCoordinationTest, CallbacksMayCallBackIntoTheFake) {
  WatchRecorder rearmed;
  std::atomic<bool> read_in_callback{false};
  SessionRecorder listened;
  // Declared after what its callbacks use, so it (and its event thread) goes first.
  FakeCoordination client(server_);
  ASSERT_EQ(codeOf(client.create(persistent("/a", "0"))), Code::kOk);
  ASSERT_EQ(codeOf(client.get("/a",
                              [&](const WatchEvent&) {
                                auto node = client.get("/a", rearmed.watcher()).get();
                                read_in_callback = node.has_value() && node->data == "1";
                              })),
            Code::kOk);
  client.addSessionListener([&](const SessionEvent& event) {
    client.exists("/a", nullptr).get();  // must not deadlock
    listened.listener()(event);
  });
  ASSERT_EQ(codeOf(client.set("/a", "1", kAnyVersion)), Code::kOk);
  ASSERT_TRUE(base::eventually([&] { return read_in_callback.load(); }));
  ASSERT_EQ(codeOf(client.set("/a", "2", kAnyVersion)), Code::kOk);
  EXPECT_TRUE(rearmed.waitForCount(1));
  client.disconnect();
  EXPECT_TRUE(listened.waitFor(SessionState::kDisconnected));
}

TEST_F(FakeCoordinationTest, RemovedListenerIsNotCalled) {
  SessionRecorder kept;
  SessionRecorder removed;
  client_.addSessionListener(kept.listener());
  uint64_t id = client_.addSessionListener(removed.listener());
  client_.removeSessionListener(id);
  client_.disconnect();
  ASSERT_TRUE(kept.waitFor(SessionState::kDisconnected));
  EXPECT_TRUE(removed.events().empty());
}

// --- Fault injection -----------------------------------------------------------------------

TEST_F(FakeCoordinationTest, BeforeApplyFaultFailsOnceAndChangesNothing) {
  client_.failNext(OpKind::kCreate, Code::kConnectionLoss, FaultMode::kBeforeApply);
  EXPECT_EQ(client_.pendingFaults(), 1u);
  EXPECT_EQ(codeOf(client_.create(persistent("/a"))), Code::kConnectionLoss);
  EXPECT_FALSE(server_->peek("/a").has_value());
  EXPECT_EQ(client_.pendingFaults(), 0u);
  EXPECT_EQ(codeOf(client_.create(persistent("/a"))), Code::kOk);
}

TEST_F(FakeCoordinationTest, AfterApplyFaultIsAnAmbiguousWrite) {
  client_.failNext(OpKind::kCreate, Code::kConnectionLoss, FaultMode::kAfterApply);
  auto result = await(client_.create(persistent("/a", "v")));
  ASSERT_FALSE(result.has_value());
  EXPECT_TRUE(result.error().outcomeUnknown());
  ASSERT_TRUE(server_->peek("/a").has_value());
  EXPECT_EQ(server_->peek("/a")->data, "v");
  EXPECT_EQ(client_.pendingFaults(), 0u);
  // The retry sees its own earlier write.
  EXPECT_EQ(codeOf(client_.create(persistent("/a", "v"))), Code::kNodeExists);
}

TEST_F(FakeCoordinationTest, AfterApplyFaultOnEveryWriteKind) {
  ASSERT_EQ(codeOf(client_.create(persistent("/a"))), Code::kOk);
  ASSERT_EQ(codeOf(client_.create(persistent("/b"))), Code::kOk);

  client_.failNext(OpKind::kSet, Code::kOperationTimeout, FaultMode::kAfterApply);
  EXPECT_EQ(codeOf(client_.set("/a", "new", kAnyVersion)), Code::kOperationTimeout);
  EXPECT_EQ(server_->peek("/a")->data, "new");

  client_.failNext(OpKind::kRemove, Code::kConnectionLoss, FaultMode::kAfterApply);
  EXPECT_EQ(codeOf(client_.remove("/b", kAnyVersion)), Code::kConnectionLoss);
  EXPECT_FALSE(server_->peek("/b").has_value());

  client_.failNext(OpKind::kMulti, Code::kConnectionLoss, FaultMode::kAfterApply);
  EXPECT_EQ(codeOf(client_.multi({CreateOp{"/m", "", CreateMode::kPersistent, {}}})),
            Code::kConnectionLoss);
  EXPECT_TRUE(server_->peek("/m").has_value());
  EXPECT_EQ(client_.pendingFaults(), 0u);
}

TEST_F(FakeCoordinationTest, AfterApplyFaultReportsTheInjectedCodeEvenIfTheCallFailed) {
  ASSERT_EQ(codeOf(client_.create(persistent("/a"))), Code::kOk);
  client_.failNext(OpKind::kCreate, Code::kConnectionLoss, FaultMode::kAfterApply);
  EXPECT_EQ(codeOf(client_.create(persistent("/a"))), Code::kConnectionLoss);
  EXPECT_EQ(client_.pendingFaults(), 0u);
}

TEST_F(FakeCoordinationTest, AfterApplyFaultOnAReadStillSetsTheWatch) {
  ASSERT_EQ(codeOf(client_.create(persistent("/a"))), Code::kOk);
  WatchRecorder watch;
  client_.failNext(OpKind::kGet, Code::kConnectionLoss, FaultMode::kAfterApply);
  EXPECT_EQ(codeOf(client_.get("/a", watch.watcher())), Code::kConnectionLoss);
  EXPECT_EQ(server_->watchCount(), 1u);
  client_.failNext(OpKind::kGet, Code::kConnectionLoss, FaultMode::kBeforeApply);
  EXPECT_EQ(codeOf(client_.get("/a", watch.watcher())), Code::kConnectionLoss);
  EXPECT_EQ(server_->watchCount(), 1u);
  EXPECT_EQ(client_.pendingFaults(), 0u);
  ASSERT_EQ(codeOf(client_.set("/a", "x", kAnyVersion)), Code::kOk);
  EXPECT_TRUE(watch.waitForCount(1));
}

struct KindCase {
  OpKind kind;
  std::function<Code(FakeCoordination&)> call;
};

TEST_F(FakeCoordinationTest, BeforeApplyFaultMatchesOnlyItsKind) {
  ASSERT_EQ(codeOf(client_.create(persistent("/a"))), Code::kOk);
  std::vector<KindCase> cases{
      {OpKind::kCreate, [](auto& c) { return codeOf(c.create(persistent("/new"))); }},
      {OpKind::kRemove, [](auto& c) { return codeOf(c.remove("/a", kAnyVersion)); }},
      {OpKind::kSet, [](auto& c) { return codeOf(c.set("/a", "x", kAnyVersion)); }},
      {OpKind::kGet, [](auto& c) { return codeOf(c.get("/a", nullptr)); }},
      {OpKind::kExists, [](auto& c) { return codeOf(c.exists("/a", nullptr)); }},
      {OpKind::kChildren, [](auto& c) { return codeOf(c.children("/a", nullptr)); }},
      {OpKind::kMulti,
       [](auto& c) {
         return codeOf(c.multi({CheckOp{"/a", kAnyVersion}}));
       }},
      {OpKind::kSync, [](auto& c) { return codeOf(c.sync("/a")); }},
  };
  for (const auto& target : cases) {
    SCOPED_TRACE(static_cast<int>(target.kind));
    client_.failNext(target.kind, Code::kSystemError);
    // Every other kind passes the fault by (reads only, so nothing changes).
    for (const auto& other : cases) {
      if (other.kind == target.kind || other.kind == OpKind::kCreate ||
          other.kind == OpKind::kRemove || other.kind == OpKind::kSet) {
        continue;
      }
      EXPECT_NE(other.call(client_), Code::kSystemError);
    }
    EXPECT_EQ(client_.pendingFaults(), 1u);
    size_t calls = client_.callCount(target.kind);
    EXPECT_EQ(target.call(client_), Code::kSystemError);
    EXPECT_EQ(client_.callCount(target.kind), calls + 1);
    EXPECT_EQ(client_.pendingFaults(), 0u);
  }
  EXPECT_TRUE(server_->peek("/a").has_value());
  EXPECT_FALSE(server_->peek("/new").has_value());
}

TEST_F(FakeCoordinationTest, FaultsAreConsumedFirstInFirstOut) {
  client_.failNext(OpKind::kAny, Code::kConnectionLoss);
  client_.failNext(OpKind::kAny, Code::kOperationTimeout);
  client_.failNext(OpKind::kGet, Code::kSessionMoved);
  EXPECT_EQ(codeOf(client_.exists("/", nullptr)), Code::kConnectionLoss);
  EXPECT_EQ(codeOf(client_.get("/", nullptr)), Code::kOperationTimeout);
  EXPECT_EQ(codeOf(client_.sync("/")), Code::kOk);  // the kGet fault waits for a get
  EXPECT_EQ(codeOf(client_.get("/", nullptr)), Code::kSessionMoved);
  EXPECT_EQ(codeOf(client_.get("/", nullptr)), Code::kOk);
  EXPECT_EQ(client_.pendingFaults(), 0u);
}

TEST_F(FakeCoordinationTest, PathFaultsMatchAPrefix) {
  client_.failNextOn(OpKind::kCreate, "/jobs", Code::kConnectionLoss, FaultMode::kAfterApply);
  EXPECT_EQ(codeOf(client_.create(persistent("/other"))), Code::kOk);
  EXPECT_EQ(client_.pendingFaults(), 1u);
  EXPECT_EQ(codeOf(client_.create(persistent("/jobs"))), Code::kConnectionLoss);
  EXPECT_TRUE(server_->peek("/jobs").has_value());

  // A multi matches when any op does.
  client_.failNextOn(OpKind::kAny, "/jobs/", Code::kOperationTimeout);
  EXPECT_EQ(codeOf(client_.multi({CreateOp{"/x", "", CreateMode::kPersistent, {}}})), Code::kOk);
  EXPECT_EQ(codeOf(client_.multi({CreateOp{"/y", "", CreateMode::kPersistent, {}},
                                  CreateOp{"/jobs/1", "", CreateMode::kPersistent, {}}})),
            Code::kOperationTimeout);
  EXPECT_FALSE(server_->peek("/y").has_value());
  EXPECT_EQ(client_.pendingFaults(), 0u);
}

TEST_F(FakeCoordinationTest, APathFaultOnAMultiNamesTheOpItMatched) {
  ASSERT_EQ(codeOf(client_.create(persistent("/a"))), Code::kOk);
  // An op's error: the first op on the prefix is the failed one, as in a real multi failure.
  client_.failNextOn(OpKind::kMulti, "/jobs/", Code::kBadVersion);
  auto r = await(client_.multi({CheckOp{"/a", kAnyVersion}, persistent("/x"), persistent("/jobs/1"),
                                persistent("/jobs/2")}));
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), Code::kBadVersion);
  EXPECT_EQ(r.error().failedOp(), 2);
  EXPECT_FALSE(server_->peek("/x").has_value());
  // A session's error names no op.
  client_.failNextOn(OpKind::kMulti, "/jobs/", Code::kConnectionLoss);
  r = await(client_.multi({persistent("/x"), persistent("/jobs/1")}));
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), Code::kConnectionLoss);
  EXPECT_EQ(r.error().failedOp(), -1);
  // Nor does a fault without a prefix, nor one on a single call.
  client_.failNext(OpKind::kMulti, Code::kNoNode);
  r = await(client_.multi({persistent("/x")}));
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().failedOp(), -1);
  client_.failNextOn(OpKind::kCreate, "/x", Code::kNodeExists);
  auto c = await(client_.create(persistent("/x")));
  ASSERT_FALSE(c.has_value());
  EXPECT_EQ(c.error().code(), Code::kNodeExists);
  EXPECT_EQ(c.error().failedOp(), -1);
  EXPECT_FALSE(server_->peek("/x").has_value());
  EXPECT_EQ(client_.pendingFaults(), 0u);
}

TEST_F(FakeCoordinationTest, AHookRunsJustBeforeTheNextMatchingCall) {
  FakeCoordination other(server_);
  ASSERT_EQ(codeOf(client_.create(persistent("/job"))), Code::kOk);
  int runs = 0;
  std::thread::id ran_on;
  client_.beforeNextOn(OpKind::kMulti, "/job", [&] {
    ++runs;
    ran_on = std::this_thread::get_id();
    // Another session takes the node between this client's read and its write.
    EXPECT_EQ(codeOf(other.remove("/job", kAnyVersion)), Code::kOk);
  });
  EXPECT_EQ(client_.pendingFaults(), 1u);
  // Calls of another kind or on other paths pass it by.
  EXPECT_EQ(codeOf(client_.get("/job", nullptr)), Code::kOk);
  EXPECT_EQ(codeOf(client_.multi({persistent("/other")})), Code::kOk);
  EXPECT_EQ(runs, 0);
  EXPECT_EQ(client_.pendingFaults(), 1u);

  auto r = await(client_.multi({persistent("/new"), DeleteOp{"/job", kAnyVersion}}));
  EXPECT_EQ(runs, 1);
  EXPECT_EQ(ran_on, std::this_thread::get_id());
  // The multi was applied to the tree as the hook left it.
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), Code::kNoNode);
  EXPECT_EQ(r.error().failedOp(), 1);
  EXPECT_FALSE(server_->peek("/new").has_value());
  EXPECT_EQ(client_.pendingFaults(), 0u);

  // Consumed once.
  ASSERT_EQ(codeOf(client_.create(persistent("/job"))), Code::kOk);
  EXPECT_EQ(codeOf(client_.multi({DeleteOp{"/job", kAnyVersion}})), Code::kOk);
  EXPECT_EQ(runs, 1);
}

TEST_F(FakeCoordinationTest, AHookMayCallItsOwnSession) {
  int runs = 0;
  client_.beforeNextOn(OpKind::kCreate, "/a", [&] {
    ++runs;
    // No deadlock, and this create (which matches too) does not run the hook again.
    EXPECT_EQ(codeOf(client_.create(persistent("/a0"))), Code::kOk);
  });
  EXPECT_EQ(codeOf(client_.create(persistent("/a"))), Code::kOk);
  EXPECT_EQ(runs, 1);
  ASSERT_TRUE(server_->peek("/a0").has_value());
  EXPECT_LT(server_->peek("/a0")->stat.czxid, server_->peek("/a")->stat.czxid);
  EXPECT_EQ(client_.pendingFaults(), 0u);
}

TEST_F(FakeCoordinationTest, HooksWaitWhileDisconnectedAndFaultsStillApply) {
  std::vector<std::string> ran;
  client_.beforeNextOn(OpKind::kAny, {}, [&] { ran.push_back("first"); });
  client_.beforeNextOn(OpKind::kGet, {}, [&] { ran.push_back("second"); });
  client_.failNext(OpKind::kGet, Code::kOperationTimeout);
  client_.disconnect();
  EXPECT_EQ(codeOf(client_.get("/", nullptr)), Code::kConnectionLoss);
  EXPECT_TRUE(ran.empty());
  EXPECT_EQ(client_.pendingFaults(), 3u);
  client_.reconnect();
  // First queued, first run; the call then still takes its fault.
  EXPECT_EQ(codeOf(client_.get("/", nullptr)), Code::kOperationTimeout);
  EXPECT_EQ(ran, std::vector<std::string>{"first"});
  EXPECT_EQ(codeOf(client_.get("/", nullptr)), Code::kOk);
  EXPECT_EQ(ran, (std::vector<std::string>{"first", "second"}));
  EXPECT_EQ(client_.pendingFaults(), 0u);
}

TEST_F(FakeCoordinationTest, FaultsWaitWhileDisconnected) {
  client_.failNext(OpKind::kAny, Code::kSystemError);
  client_.disconnect();
  EXPECT_EQ(codeOf(client_.get("/", nullptr)), Code::kConnectionLoss);
  EXPECT_EQ(client_.pendingFaults(), 1u);
  client_.reconnect();
  EXPECT_EQ(codeOf(client_.get("/", nullptr)), Code::kSystemError);
  EXPECT_EQ(client_.pendingFaults(), 0u);
}

TEST_F(FakeCoordinationTest, CallCountsIncludeFailures) {
  EXPECT_EQ(client_.callCount(OpKind::kAny), 0u);
  EXPECT_EQ(codeOf(client_.get("/nope", nullptr)), Code::kNoNode);
  EXPECT_EQ(codeOf(client_.get("/", nullptr)), Code::kOk);
  client_.disconnect();
  EXPECT_EQ(codeOf(client_.set("/", "", kAnyVersion)), Code::kConnectionLoss);
  EXPECT_EQ(client_.callCount(OpKind::kGet), 2u);
  EXPECT_EQ(client_.callCount(OpKind::kSet), 1u);
  EXPECT_EQ(client_.callCount(OpKind::kCreate), 0u);
  EXPECT_EQ(client_.callCount(OpKind::kAny), 3u);
}

// --- Session transitions -------------------------------------------------------------------

TEST_F(FakeCoordinationTest, StartsConnectedWithItsOwnSession) {
  FakeCoordination other(server_, std::chrono::milliseconds(1234));
  SessionEvent mine = client_.session();
  SessionEvent theirs = other.session();
  EXPECT_EQ(mine.state, SessionState::kConnected);
  EXPECT_EQ(mine.generation, 1u);
  EXPECT_NE(mine.session_id, theirs.session_id);
  EXPECT_EQ(theirs.timeout, std::chrono::milliseconds(1234));
  EXPECT_EQ(server_->sessionCount(), 2u);
}

TEST_F(FakeCoordinationTest, DisconnectFailsCallsUntilReconnect) {
  ASSERT_EQ(codeOf(client_.create(ephemeral("/e"))), Code::kOk);
  SessionRecorder recorder;
  client_.addSessionListener(recorder.listener());
  const SessionEvent before = client_.session();

  client_.disconnect();
  client_.disconnect();  // no-op
  EXPECT_EQ(client_.session().state, SessionState::kDisconnected);
  EXPECT_EQ(codeOf(client_.create(persistent("/x"))), Code::kConnectionLoss);
  EXPECT_EQ(codeOf(client_.remove("/e", kAnyVersion)), Code::kConnectionLoss);
  EXPECT_EQ(codeOf(client_.set("/e", "", kAnyVersion)), Code::kConnectionLoss);
  EXPECT_EQ(codeOf(client_.get("/e", nullptr)), Code::kConnectionLoss);
  EXPECT_EQ(codeOf(client_.exists("/e", nullptr)), Code::kConnectionLoss);
  EXPECT_EQ(codeOf(client_.children("/", nullptr)), Code::kConnectionLoss);
  EXPECT_EQ(codeOf(client_.multi({CheckOp{"/e", kAnyVersion}})), Code::kConnectionLoss);
  EXPECT_EQ(codeOf(client_.sync("/")), Code::kConnectionLoss);
  EXPECT_TRUE(server_->peek("/e").has_value());  // the session lives on

  client_.reconnect();
  client_.reconnect();  // no-op
  ASSERT_TRUE(recorder.waitFor(SessionState::kConnected));
  auto events = recorder.events();
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].state, SessionState::kDisconnected);
  EXPECT_EQ(events[1].state, SessionState::kConnected);
  EXPECT_EQ(events[1].session_id, before.session_id);
  EXPECT_EQ(events[1].generation, before.generation);
  EXPECT_EQ(codeOf(client_.get("/e", nullptr)), Code::kOk);
}

TEST_F(FakeCoordinationTest, WatchEventsWaitForTheReconnect) {
  std::mutex mu;
  std::vector<std::string> log;
  auto note = [&](std::string what) {
    std::lock_guard lock(mu);
    log.push_back(std::move(what));
  };
  FakeCoordination client(server_);  // after what its callbacks use
  ASSERT_EQ(codeOf(client.create(persistent("/a"))), Code::kOk);
  client.addSessionListener([&](const SessionEvent& event) {
    note(event.state == SessionState::kConnected ? "connected" : "disconnected");
  });
  ASSERT_EQ(codeOf(client.get("/a", [&](const WatchEvent&) { note("watch"); })), Code::kOk);
  client.disconnect();
  FakeCoordination other(server_);
  ASSERT_EQ(codeOf(other.set("/a", "x", kAnyVersion)), Code::kOk);
  client.reconnect();
  ASSERT_TRUE(base::eventually([&] {
    std::lock_guard lock(mu);
    return log.size() == 3;
  }));
  std::lock_guard lock(mu);
  EXPECT_EQ(log, (std::vector<std::string>{"disconnected", "connected", "watch"}));
}

TEST_F(FakeCoordinationTest, ExpiryEndsTheSessionAndBuildsANewOne) {
  FakeCoordination other(server_);
  ASSERT_EQ(codeOf(client_.create(ephemeral("/e"))), Code::kOk);
  ASSERT_EQ(codeOf(client_.create(persistent("/p"))), Code::kOk);
  WatchRecorder others_watch;
  WatchRecorder my_old_watch;
  ASSERT_EQ(codeOf(other.exists("/e", others_watch.watcher())), Code::kOk);
  ASSERT_EQ(codeOf(client_.get("/p", my_old_watch.watcher())), Code::kOk);
  SessionRecorder recorder;
  client_.addSessionListener(recorder.listener());
  const SessionEvent before = client_.session();

  client_.expireSession();
  EXPECT_FALSE(server_->peek("/e").has_value());
  EXPECT_TRUE(server_->peek("/p").has_value());
  ASSERT_TRUE(others_watch.waitForCount(1));
  EXPECT_EQ(others_watch.events()[0].type, EventType::kDeleted);

  ASSERT_TRUE(recorder.waitFor(SessionState::kConnected));
  auto events = recorder.events();
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].state, SessionState::kExpired);
  EXPECT_EQ(events[0].session_id, before.session_id);
  EXPECT_EQ(events[0].generation, 1u);
  EXPECT_EQ(events[1].state, SessionState::kConnected);
  EXPECT_NE(events[1].session_id, before.session_id);
  EXPECT_EQ(events[1].generation, 2u);
  EXPECT_EQ(client_.session().session_id, events[1].session_id);

  // The old session's watch is gone: a change fires only the new session's watch.
  WatchRecorder my_new_watch;
  ASSERT_EQ(codeOf(client_.get("/p", my_new_watch.watcher())), Code::kOk);
  EXPECT_EQ(server_->watchCount(), 1u);
  ASSERT_EQ(codeOf(other.set("/p", "x", kAnyVersion)), Code::kOk);
  ASSERT_TRUE(my_new_watch.waitForCount(1));
  EXPECT_EQ(my_old_watch.count(), 0u);

  // New ephemerals belong to the new session.
  ASSERT_EQ(codeOf(client_.create(ephemeral("/e"))), Code::kOk);
  EXPECT_EQ(server_->peek("/e")->stat.ephemeral_owner, events[1].session_id);
}

TEST_F(FakeCoordinationTest, CallsFailWhileExpired) {
  SessionRecorder recorder;
  client_.addSessionListener(recorder.listener());
  client_.rebuildSession();  // no-op while connected
  client_.expireSession(/*rebuild=*/false);
  EXPECT_EQ(client_.session().state, SessionState::kExpired);
  EXPECT_EQ(codeOf(client_.get("/", nullptr)), Code::kSessionExpired);
  EXPECT_EQ(codeOf(client_.create(persistent("/x"))), Code::kSessionExpired);
  EXPECT_EQ(codeOf(client_.addAuth("digest", "a:b")), Code::kSessionExpired);
  client_.disconnect();  // no-op while expired
  EXPECT_EQ(client_.session().state, SessionState::kExpired);

  client_.rebuildSession();
  EXPECT_EQ(client_.session().state, SessionState::kConnected);
  EXPECT_EQ(client_.session().generation, 2u);
  EXPECT_EQ(codeOf(client_.get("/", nullptr)), Code::kOk);
  ASSERT_TRUE(recorder.waitFor(SessionState::kConnected));
  EXPECT_EQ(recorder.states(),
            (std::vector<SessionState>{SessionState::kExpired, SessionState::kConnected}));
}

TEST_F(FakeCoordinationTest, ExpiryWhileDisconnectedDropsHeldWatchEvents) {
  ASSERT_EQ(codeOf(client_.create(persistent("/a"))), Code::kOk);
  WatchRecorder watch;
  ASSERT_EQ(codeOf(client_.get("/a", watch.watcher())), Code::kOk);
  SessionRecorder recorder;
  client_.addSessionListener(recorder.listener());
  client_.disconnect();
  FakeCoordination other(server_);
  ASSERT_EQ(codeOf(other.set("/a", "x", kAnyVersion)), Code::kOk);  // held for the session
  client_.expireSession();
  ASSERT_TRUE(recorder.waitFor(SessionState::kConnected));
  // A watch set now fires on the next change; by then the held one would have fired.
  WatchRecorder fresh;
  ASSERT_EQ(codeOf(client_.get("/a", fresh.watcher())), Code::kOk);
  ASSERT_EQ(codeOf(other.set("/a", "y", kAnyVersion)), Code::kOk);
  ASSERT_TRUE(fresh.waitForCount(1));
  EXPECT_EQ(watch.count(), 0u);
  EXPECT_EQ(recorder.states(),
            (std::vector<SessionState>{SessionState::kDisconnected, SessionState::kExpired,
                                       SessionState::kConnected}));
}

TEST_F(FakeCoordinationTest, CloseRemovesEphemeralsAndFailsLaterCalls) {
  auto owner = std::make_unique<FakeCoordination>(server_);
  ASSERT_EQ(codeOf(owner->create(ephemeral("/e"))), Code::kOk);
  ASSERT_EQ(codeOf(owner->create(persistent("/p"))), Code::kOk);
  SessionRecorder recorder;
  owner->addSessionListener(recorder.listener());
  EXPECT_EQ(server_->sessionCount(), 2u);

  owner->close();
  EXPECT_FALSE(server_->peek("/e").has_value());
  EXPECT_TRUE(server_->peek("/p").has_value());
  EXPECT_EQ(server_->sessionCount(), 1u);
  EXPECT_EQ(codeOf(owner->get("/p", nullptr)), Code::kClosing);
  EXPECT_EQ(codeOf(owner->addAuth("digest", "a:b")), Code::kClosing);
  owner->close();
  owner->expireSession();
  owner->disconnect();
  EXPECT_EQ(owner->session().state, SessionState::kClosed);
  ASSERT_TRUE(recorder.waitFor(SessionState::kClosed));
  owner.reset();  // delivers what was queued, then stops
  EXPECT_EQ(recorder.states(), (std::vector<SessionState>{SessionState::kClosed}));
}

TEST_F(FakeCoordinationTest, DestructionClosesTheSession) {
  {
    FakeCoordination owner(server_);
    ASSERT_EQ(codeOf(owner.create(ephemeral("/e"))), Code::kOk);
    WatchRecorder watch;
    ASSERT_EQ(codeOf(owner.exists("/nope", watch.watcher())), Code::kOk);
  }
  EXPECT_FALSE(server_->peek("/e").has_value());
  EXPECT_EQ(server_->watchCount(), 0u);
  EXPECT_EQ(server_->sessionCount(), 1u);
}

TEST_F(FakeCoordinationTest, ConcurrentClientsGetDistinctSequenceNumbers) {
  ASSERT_EQ(codeOf(client_.create(persistent("/q"))), Code::kOk);
  constexpr int kThreads = 4;
  constexpr int kPerThread = 50;
  std::vector<std::thread> threads;
  std::mutex mu;
  std::set<std::string> made;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      FakeCoordination mine(server_);
      for (int i = 0; i < kPerThread; ++i) {
        auto path = mine.create(CreateOp{"/q/n-", "", CreateMode::kPersistentSequential, {}}).get();
        if (!path) continue;
        std::lock_guard lock(mu);
        made.insert(*path);
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(made.size(), static_cast<size_t>(kThreads * kPerThread));
  EXPECT_EQ(server_->peek("/q")->stat.num_children, kThreads * kPerThread);
}

}  // namespace
}  // namespace drover::coord
