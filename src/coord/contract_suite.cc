#include "coord/contract_suite.h"

#include <algorithm>

#include "base/eventually.h"
#include "base/ids.h"
#include "coord/paths.h"

namespace drover::coord {

using contract::await;
using contract::codeOf;
using contract::SessionRecorder;
using contract::valueOf;
using contract::WatchRecorder;

ContractEnv::~ContractEnv() = default;

std::string contractParamName(const ::testing::TestParamInfo<ContractParam>& info) {
  return info.param.name;
}

namespace contract {

Watcher WatchRecorder::watcher() const {
  return [state = state_](const WatchEvent& event) {
    std::lock_guard lock(state->mu);
    state->events.push_back(event);
  };
}

std::vector<WatchEvent> WatchRecorder::events() const {
  std::lock_guard lock(state_->mu);
  return state_->events;
}

size_t WatchRecorder::count() const {
  std::lock_guard lock(state_->mu);
  return state_->events.size();
}

bool WatchRecorder::waitForCount(size_t n) const {
  return base::eventually([&] { return count() >= n; }, kWait);
}

SessionListener SessionRecorder::listener() const {
  return [state = state_](const SessionEvent& event) {
    std::lock_guard lock(state->mu);
    state->events.push_back(event);
  };
}

std::vector<SessionEvent> SessionRecorder::events() const {
  std::lock_guard lock(state_->mu);
  return state_->events;
}

std::vector<SessionState> SessionRecorder::states() const {
  std::vector<SessionState> out;
  for (const auto& event : events()) out.push_back(event.state);
  return out;
}

bool SessionRecorder::waitFor(SessionState state) const {
  return base::eventually(
      [&] {
        auto seen = states();
        return std::find(seen.begin(), seen.end(), state) != seen.end();
      },
      kWait);
}

}  // namespace contract

namespace {

// Deletes `path` and everything under it; errors are ignored (best effort cleanup).
void removeTree(Coordination& coord, const std::string& path) {
  auto kids = coord.children(path, nullptr).waitFor(contract::kWait);
  if (kids && *kids) {
    for (const auto& kid : **kids) removeTree(coord, join(path, kid));
  }
  coord.remove(path, kAnyVersion).waitFor(contract::kWait);
}

std::vector<std::string> sorted(std::vector<std::string> names) {
  std::sort(names.begin(), names.end());
  return names;
}

// Sequential names end in "%010d" of the parent's count of child creates so far.
std::string suffix(int n) {
  char buf[16];
  std::snprintf(buf, sizeof(buf), "%010d", n);
  return buf;
}

}  // namespace

void CoordinationContract::SetUp() {
  env_ = GetParam().factory();
  ASSERT_NE(env_, nullptr);
  client_ = env_->connect();
  ASSERT_NE(client_, nullptr);
  base_ = "/drover-contract-" + base::randomHex(8);
  ASSERT_EQ(codeOf(client_->create(CreateOp{base_, "", CreateMode::kPersistent, {}})), Code::kOk);
}

void CoordinationContract::TearDown() {
  if (!env_ || base_.empty()) return;
  // A fresh client: the test may have closed or broken client_.
  auto admin = env_->connect();
  if (admin) {
    // A new session reads only what its server has applied: catch up with client_'s writes.
    (void)admin->sync(base_).get();
    removeTree(*admin, base_);
    admin->close();
  }
  client_.reset();
  env_.reset();
}

std::string CoordinationContract::path(const std::string& relative) const {
  return join(base_, relative);
}

// --- Sessions ------------------------------------------------------------------------------

TEST_P(CoordinationContract, ConnectGivesAConnectedSession) {
  SessionEvent session = client_->session();
  EXPECT_EQ(session.state, SessionState::kConnected);
  EXPECT_NE(session.session_id, 0);
  EXPECT_GE(session.generation, 1u);
  EXPECT_GT(session.timeout.count(), 0);

  auto other = env_->connect();
  EXPECT_NE(other->session().session_id, session.session_id);
}

TEST_P(CoordinationContract, CloseFailsLaterCallsWithClosingAndTellsListeners) {
  auto other = env_->connect();
  SessionRecorder recorder;
  other->addSessionListener(recorder.listener());
  other->close();
  EXPECT_TRUE(recorder.waitFor(SessionState::kClosed));
  EXPECT_EQ(other->session().state, SessionState::kClosed);
  EXPECT_EQ(codeOf(other->get(base_, nullptr)), Code::kClosing);
  EXPECT_EQ(codeOf(other->create(CreateOp{path("x"), "", CreateMode::kPersistent, {}})),
            Code::kClosing);
  other->close();  // idempotent
}

// --- Create modes --------------------------------------------------------------------------

TEST_P(CoordinationContract, CreatePersistentThenGet) {
  EXPECT_EQ(valueOf(client_->create(CreateOp{path("a"), "hello", CreateMode::kPersistent, {}})),
            path("a"));
  Node node = valueOf(client_->get(path("a"), nullptr));
  EXPECT_EQ(node.data, "hello");
  EXPECT_EQ(node.stat.version, 0);
  EXPECT_EQ(node.stat.cversion, 0);
  EXPECT_EQ(node.stat.data_length, 5);
  EXPECT_EQ(node.stat.num_children, 0);
  EXPECT_EQ(node.stat.ephemeral_owner, 0);
  EXPECT_EQ(node.stat.czxid, node.stat.mzxid);
  EXPECT_GT(node.stat.czxid, 0);
  EXPECT_GT(node.stat.ctime_ms, 0);
  EXPECT_EQ(node.stat.ctime_ms, node.stat.mtime_ms);
}

TEST_P(CoordinationContract, DataIsBinarySafe) {
  const std::string binary("a\0b\xff\x01", 5);
  ASSERT_EQ(codeOf(client_->create(CreateOp{path("bin"), binary, CreateMode::kPersistent, {}})),
            Code::kOk);
  EXPECT_EQ(valueOf(client_->get(path("bin"), nullptr)).data, binary);
  ASSERT_EQ(codeOf(client_->create(CreateOp{path("empty"), "", CreateMode::kPersistent, {}})),
            Code::kOk);
  Node empty = valueOf(client_->get(path("empty"), nullptr));
  EXPECT_EQ(empty.data, "");
  EXPECT_EQ(empty.stat.data_length, 0);
}

TEST_P(CoordinationContract, ExplicitOpenAclIsAccepted) {
  Acl open{AclEntry{AclEntry::kAll, "world", "anyone"}};
  ASSERT_EQ(codeOf(client_->create(CreateOp{path("acl"), "x", CreateMode::kPersistent, open})),
            Code::kOk);
  EXPECT_EQ(valueOf(client_->get(path("acl"), nullptr)).data, "x");
}

TEST_P(CoordinationContract, EphemeralIsOwnedByTheSession) {
  ASSERT_EQ(codeOf(client_->create(CreateOp{path("e"), "", CreateMode::kEphemeral, {}})),
            Code::kOk);
  auto stat = valueOf(client_->exists(path("e"), nullptr));
  ASSERT_TRUE(stat.has_value());
  EXPECT_EQ(stat->ephemeral_owner, client_->session().session_id);
}

TEST_P(CoordinationContract, SequentialSuffixCountsCreatesNotDeletes) {
  const std::string prefix = path("q-");
  auto first =
      valueOf(client_->create(CreateOp{prefix, "", CreateMode::kPersistentSequential, {}}));
  auto second =
      valueOf(client_->create(CreateOp{prefix, "", CreateMode::kPersistentSequential, {}}));
  EXPECT_EQ(first, prefix + suffix(0));
  EXPECT_EQ(second, prefix + suffix(1));
  EXPECT_EQ(sequenceOf(baseName(second)), 1);

  // A delete bumps the parent's cversion but not the sequence (ZooKeeper 3.8), and a deleted
  // name is never handed out again.
  ASSERT_EQ(codeOf(client_->remove(second, kAnyVersion)), Code::kOk);
  EXPECT_EQ(valueOf(client_->get(base_, nullptr)).stat.cversion, 3);
  auto third =
      valueOf(client_->create(CreateOp{prefix, "", CreateMode::kPersistentSequential, {}}));
  EXPECT_EQ(third, prefix + suffix(2));
  EXPECT_EQ(valueOf(client_->get(base_, nullptr)).stat.cversion, 4);
  EXPECT_EQ(sorted(valueOf(client_->children(base_, nullptr))),
            (std::vector<std::string>{"q-" + suffix(0), "q-" + suffix(2)}));
}

TEST_P(CoordinationContract, SequentialNamesAreMonotonicAndTenDigits) {
  ASSERT_EQ(codeOf(client_->create(CreateOp{path("seq"), "", CreateMode::kPersistent, {}})),
            Code::kOk);
  int64_t last = -1;
  for (int i = 0; i < 12; ++i) {
    // A bare prefix ("/parent/") is allowed for sequential creates.
    auto made = valueOf(
        client_->create(CreateOp{path("seq") + "/", "", CreateMode::kPersistentSequential, {}}));
    auto name = baseName(made);
    ASSERT_EQ(name.size(), 10u) << made;
    EXPECT_TRUE(std::all_of(name.begin(), name.end(), [](char c) { return c >= '0' && c <= '9'; }));
    EXPECT_GT(sequenceOf(name), last);
    last = sequenceOf(name);
  }
  EXPECT_EQ(last, 11);
}

TEST_P(CoordinationContract, EphemeralSequentialHasBothProperties) {
  auto made =
      valueOf(client_->create(CreateOp{path("lock-"), "me", CreateMode::kEphemeralSequential, {}}));
  EXPECT_EQ(made, path("lock-") + suffix(0));
  auto stat = valueOf(client_->exists(made, nullptr));
  ASSERT_TRUE(stat.has_value());
  EXPECT_EQ(stat->ephemeral_owner, client_->session().session_id);
}

TEST_P(CoordinationContract, ContainerTakesChildren) {
  ASSERT_EQ(codeOf(client_->create(CreateOp{path("box"), "", CreateMode::kContainer, {}})),
            Code::kOk);
  // Not an ephemeral as far as clients can see (ZooKeeper 3.8 reports owner 0).
  EXPECT_EQ(valueOf(client_->get(path("box"), nullptr)).stat.ephemeral_owner, 0);
  ASSERT_EQ(codeOf(client_->create(CreateOp{path("box/item"), "", CreateMode::kPersistent, {}})),
            Code::kOk);
  ASSERT_EQ(codeOf(client_->create(CreateOp{path("box/eph"), "", CreateMode::kEphemeral, {}})),
            Code::kOk);
  EXPECT_EQ(sorted(valueOf(client_->children(path("box"), nullptr))),
            (std::vector<std::string>{"eph", "item"}));
}

// --- Create errors ---------------------------------------------------------------------------

TEST_P(CoordinationContract, CreateErrors) {
  ASSERT_EQ(codeOf(client_->create(CreateOp{path("a"), "", CreateMode::kPersistent, {}})),
            Code::kOk);
  EXPECT_EQ(codeOf(client_->create(CreateOp{path("a"), "", CreateMode::kPersistent, {}})),
            Code::kNodeExists);
  EXPECT_EQ(codeOf(client_->create(CreateOp{path("a"), "", CreateMode::kEphemeral, {}})),
            Code::kNodeExists);
  EXPECT_EQ(codeOf(client_->create(CreateOp{path("missing/a"), "", CreateMode::kPersistent, {}})),
            Code::kNoNode);
  EXPECT_EQ(codeOf(client_->create(
                CreateOp{path("missing/s-"), "", CreateMode::kPersistentSequential, {}})),
            Code::kNoNode);

  ASSERT_EQ(codeOf(client_->create(CreateOp{path("eph"), "", CreateMode::kEphemeral, {}})),
            Code::kOk);
  EXPECT_EQ(codeOf(client_->create(CreateOp{path("eph/kid"), "", CreateMode::kPersistent, {}})),
            Code::kNoChildrenForEphemerals);
  EXPECT_EQ(codeOf(client_->create(CreateOp{path("eph/kid"), "", CreateMode::kEphemeral, {}})),
            Code::kNoChildrenForEphemerals);
  EXPECT_FALSE(valueOf(client_->exists(path("eph/kid"), nullptr)).has_value());
}

TEST_P(CoordinationContract, InvalidPathsAreBadArguments) {
  for (std::string bad : {std::string("relative"), std::string(""), path("a/"), path("a//b"),
                          path("./b"), path("../b"), path("a") + std::string("\0b", 2)}) {
    SCOPED_TRACE(bad);
    EXPECT_EQ(codeOf(client_->create(CreateOp{bad, "", CreateMode::kPersistent, {}})),
              Code::kBadArguments);
    EXPECT_EQ(codeOf(client_->get(bad, nullptr)), Code::kBadArguments);
    EXPECT_EQ(codeOf(client_->exists(bad, nullptr)), Code::kBadArguments);
    EXPECT_EQ(codeOf(client_->children(bad, nullptr)), Code::kBadArguments);
    EXPECT_EQ(codeOf(client_->set(bad, "", kAnyVersion)), Code::kBadArguments);
    EXPECT_EQ(codeOf(client_->remove(bad, kAnyVersion)), Code::kBadArguments);
  }
}

// --- Reads ---------------------------------------------------------------------------------

TEST_P(CoordinationContract, ReadsOfAMissingNode) {
  EXPECT_EQ(codeOf(client_->get(path("nope"), nullptr)), Code::kNoNode);
  EXPECT_EQ(codeOf(client_->children(path("nope"), nullptr)), Code::kNoNode);
  auto stat = await(client_->exists(path("nope"), nullptr));
  ASSERT_TRUE(stat.has_value());
  EXPECT_FALSE(stat->has_value());
}

TEST_P(CoordinationContract, ExistsReturnsTheStat) {
  ASSERT_EQ(codeOf(client_->create(CreateOp{path("a"), "abc", CreateMode::kPersistent, {}})),
            Code::kOk);
  auto stat = valueOf(client_->exists(path("a"), nullptr));
  ASSERT_TRUE(stat.has_value());
  EXPECT_EQ(stat->data_length, 3);
  EXPECT_EQ(stat->czxid, valueOf(client_->get(path("a"), nullptr)).stat.czxid);
  EXPECT_TRUE(valueOf(client_->exists("/", nullptr)).has_value());
}

TEST_P(CoordinationContract, ChildrenListsDirectChildrenOnly) {
  for (const char* name : {"c", "a", "b"}) {
    ASSERT_EQ(codeOf(client_->create(CreateOp{path(name), "", CreateMode::kPersistent, {}})),
              Code::kOk);
  }
  ASSERT_EQ(codeOf(client_->create(CreateOp{path("a/deep"), "", CreateMode::kPersistent, {}})),
            Code::kOk);
  EXPECT_EQ(sorted(valueOf(client_->children(base_, nullptr))),
            (std::vector<std::string>{"a", "b", "c"}));
  EXPECT_TRUE(valueOf(client_->children(path("b"), nullptr)).empty());
  Stat stat = valueOf(client_->get(base_, nullptr)).stat;
  EXPECT_EQ(stat.num_children, 3);
  EXPECT_EQ(stat.cversion, 3);

  auto roots = valueOf(client_->children("/", nullptr));
  EXPECT_NE(std::find(roots.begin(), roots.end(), std::string(baseName(base_))), roots.end());
}

// --- Writes and versions -------------------------------------------------------------------

TEST_P(CoordinationContract, SetChecksVersions) {
  ASSERT_EQ(codeOf(client_->create(CreateOp{path("a"), "v0", CreateMode::kPersistent, {}})),
            Code::kOk);
  Stat created = valueOf(client_->get(path("a"), nullptr)).stat;

  Stat first = valueOf(client_->set(path("a"), "v1", 0));
  EXPECT_EQ(first.version, 1);
  EXPECT_EQ(first.data_length, 2);
  EXPECT_GT(first.mzxid, created.czxid);
  EXPECT_EQ(first.czxid, created.czxid);

  EXPECT_EQ(codeOf(client_->set(path("a"), "stale", 0)), Code::kBadVersion);
  EXPECT_EQ(valueOf(client_->get(path("a"), nullptr)).data, "v1");

  Stat second = valueOf(client_->set(path("a"), "v2", kAnyVersion));
  EXPECT_EQ(second.version, 2);
  Node node = valueOf(client_->get(path("a"), nullptr));
  EXPECT_EQ(node.data, "v2");
  EXPECT_EQ(node.stat.version, 2);
  EXPECT_EQ(node.stat.mzxid, second.mzxid);

  EXPECT_EQ(codeOf(client_->set(path("nope"), "x", kAnyVersion)), Code::kNoNode);
}

TEST_P(CoordinationContract, RemoveChecksVersionsAndChildren) {
  ASSERT_EQ(codeOf(client_->create(CreateOp{path("a"), "", CreateMode::kPersistent, {}})),
            Code::kOk);
  ASSERT_EQ(codeOf(client_->set(path("a"), "x", kAnyVersion)), Code::kOk);  // version 1

  EXPECT_EQ(codeOf(client_->remove(path("a"), 0)), Code::kBadVersion);
  EXPECT_TRUE(valueOf(client_->exists(path("a"), nullptr)).has_value());
  EXPECT_EQ(codeOf(client_->remove(path("a"), 1)), Code::kOk);
  EXPECT_EQ(codeOf(client_->get(path("a"), nullptr)), Code::kNoNode);
  EXPECT_EQ(codeOf(client_->remove(path("a"), kAnyVersion)), Code::kNoNode);

  ASSERT_EQ(codeOf(client_->create(CreateOp{path("p"), "", CreateMode::kPersistent, {}})),
            Code::kOk);
  ASSERT_EQ(codeOf(client_->create(CreateOp{path("p/c"), "", CreateMode::kPersistent, {}})),
            Code::kOk);
  EXPECT_EQ(codeOf(client_->remove(path("p"), kAnyVersion)), Code::kNotEmpty);
  ASSERT_EQ(codeOf(client_->remove(path("p/c"), kAnyVersion)), Code::kOk);
  EXPECT_EQ(codeOf(client_->remove(path("p"), kAnyVersion)), Code::kOk);
}

TEST_P(CoordinationContract, ZxidsOrderWrites) {
  int64_t last = 0;
  for (int i = 0; i < 5; ++i) {
    std::string p = path("n" + std::to_string(i));
    ASSERT_EQ(codeOf(client_->create(CreateOp{p, "", CreateMode::kPersistent, {}})), Code::kOk);
    Stat stat = valueOf(client_->get(p, nullptr)).stat;
    EXPECT_GT(stat.czxid, last);
    last = stat.czxid;
  }
  // The parent's pzxid is the zxid of the last change to its children.
  EXPECT_EQ(valueOf(client_->get(base_, nullptr)).stat.pzxid, last);
  Stat changed = valueOf(client_->set(path("n0"), "x", kAnyVersion));
  EXPECT_GT(changed.mzxid, last);
}

TEST_P(CoordinationContract, ValueSizes) {
  const std::string big(100 * 1024, 'x');
  ASSERT_EQ(codeOf(client_->create(CreateOp{path("big"), big, CreateMode::kPersistent, {}})),
            Code::kOk);
  EXPECT_EQ(valueOf(client_->get(path("big"), nullptr)).data, big);

  // Far over the packet limit: some error (a real client may lose its connection), never a
  // stored value. A separate client takes the hit.
  auto victim = env_->connect();
  const std::string huge(2 * 1024 * 1024, 'y');
  EXPECT_NE(codeOf(victim->create(CreateOp{path("huge"), huge, CreateMode::kPersistent, {}})),
            Code::kOk);
  EXPECT_NE(codeOf(victim->set(path("big"), huge, kAnyVersion)), Code::kOk);
  victim.reset();
  EXPECT_FALSE(valueOf(client_->exists(path("huge"), nullptr)).has_value());
  EXPECT_EQ(valueOf(client_->get(path("big"), nullptr)).data, big);
}

// --- Multi ---------------------------------------------------------------------------------

TEST_P(CoordinationContract, MultiAppliesAllAndReportsResults) {
  ASSERT_EQ(codeOf(client_->create(CreateOp{path("old"), "", CreateMode::kPersistent, {}})),
            Code::kOk);
  std::vector<Op> ops{
      CreateOp{path("x"), "x0", CreateMode::kPersistent, {}},
      CreateOp{path("x/y"), "", CreateMode::kPersistent, {}},  // sees the create before it
      SetOp{path("x"), "x1", 0},
      CheckOp{path("x"), 1},
      CreateOp{path("x/s-"), "", CreateMode::kPersistentSequential, {}},
      DeleteOp{path("old"), 0},
  };
  auto results = valueOf(client_->multi(ops));
  ASSERT_EQ(results.size(), ops.size());
  for (const auto& result : results) EXPECT_EQ(result.code, Code::kOk);
  EXPECT_EQ(results[0].path, path("x"));
  EXPECT_EQ(results[1].path, path("x/y"));
  EXPECT_EQ(results[2].stat.version, 1);
  EXPECT_EQ(results[2].stat.data_length, 2);
  EXPECT_EQ(results[4].path, path("x/s-") + suffix(1));  // x/y took cversion 0

  EXPECT_EQ(valueOf(client_->get(path("x"), nullptr)).data, "x1");
  EXPECT_TRUE(valueOf(client_->exists(path("x/y"), nullptr)).has_value());
  EXPECT_FALSE(valueOf(client_->exists(path("old"), nullptr)).has_value());
}

TEST_P(CoordinationContract, MultiCanCreateAndDeleteTheSameNode) {
  auto results = valueOf(client_->multi(
      {CreateOp{path("t"), "", CreateMode::kPersistent, {}}, DeleteOp{path("t"), kAnyVersion}}));
  EXPECT_EQ(results.size(), 2u);
  EXPECT_FALSE(valueOf(client_->exists(path("t"), nullptr)).has_value());
}

TEST_P(CoordinationContract, FailedMultiAppliesNothing) {
  ASSERT_EQ(codeOf(client_->create(CreateOp{path("n"), "orig", CreateMode::kPersistent, {}})),
            Code::kOk);
  // The check sees the set before it (version 1), so version 0 fails.
  auto result = await(client_->multi({
      CreateOp{path("a"), "", CreateMode::kPersistent, {}},
      SetOp{path("n"), "changed", 0},
      CheckOp{path("n"), 0},
      CreateOp{path("b"), "", CreateMode::kPersistent, {}},
  }));
  ASSERT_FALSE(result.has_value());
  EXPECT_EQ(result.error().code(), Code::kBadVersion);
  EXPECT_EQ(result.error().failedOp(), 2);

  EXPECT_FALSE(valueOf(client_->exists(path("a"), nullptr)).has_value());
  EXPECT_FALSE(valueOf(client_->exists(path("b"), nullptr)).has_value());
  Node n = valueOf(client_->get(path("n"), nullptr));
  EXPECT_EQ(n.data, "orig");
  EXPECT_EQ(n.stat.version, 0);
  // Nothing changed the parent either: a later sequential create still gets its next number.
  EXPECT_EQ(valueOf(client_->get(base_, nullptr)).stat.cversion, 1);
}

TEST_P(CoordinationContract, FailedMultiNamesTheFailingOp) {
  ASSERT_EQ(codeOf(client_->create(CreateOp{path("n"), "", CreateMode::kPersistent, {}})),
            Code::kOk);
  struct Case {
    std::vector<Op> ops;
    Code code;
    int index;
  };
  std::vector<Case> cases{
      {{CreateOp{path("n"), "", CreateMode::kPersistent, {}}}, Code::kNodeExists, 0},
      {{CheckOp{path("n"), kAnyVersion}, DeleteOp{path("nope"), kAnyVersion}}, Code::kNoNode, 1},
      {{CheckOp{path("n"), 0}, SetOp{path("n"), "", 0}, CheckOp{path("n"), 7}},
       Code::kBadVersion,
       2},
      {{CreateOp{path("n/c"), "", CreateMode::kPersistent, {}}, DeleteOp{path("n"), kAnyVersion}},
       Code::kNotEmpty,
       1},
      {{CheckOp{path("missing"), kAnyVersion}}, Code::kNoNode, 0},
  };
  for (size_t i = 0; i < cases.size(); ++i) {
    SCOPED_TRACE("case " + std::to_string(i));
    auto result = await(client_->multi(cases[i].ops));
    ASSERT_FALSE(result.has_value());
    EXPECT_EQ(result.error().code(), cases[i].code);
    EXPECT_EQ(result.error().failedOp(), cases[i].index);
  }
  Node n = valueOf(client_->get(path("n"), nullptr));
  EXPECT_EQ(n.stat.version, 0);
  EXPECT_EQ(n.stat.num_children, 0);
}

// --- Watches -------------------------------------------------------------------------------

TEST_P(CoordinationContract, DataWatchFiresOnceOnChange) {
  ASSERT_EQ(codeOf(client_->create(CreateOp{path("w"), "0", CreateMode::kPersistent, {}})),
            Code::kOk);
  WatchRecorder first;
  ASSERT_EQ(codeOf(client_->get(path("w"), first.watcher())), Code::kOk);
  ASSERT_EQ(codeOf(client_->set(path("w"), "1", kAnyVersion)), Code::kOk);
  ASSERT_TRUE(first.waitForCount(1));
  EXPECT_EQ(first.events()[0].type, EventType::kDataChanged);
  EXPECT_EQ(first.events()[0].path, path("w"));

  // One-shot: a second change fires only a newly set watch. Events arrive in order, so once the
  // second watch has fired the first would have fired again too.
  WatchRecorder second;
  ASSERT_EQ(codeOf(client_->get(path("w"), second.watcher())), Code::kOk);
  ASSERT_EQ(codeOf(client_->set(path("w"), "2", kAnyVersion)), Code::kOk);
  ASSERT_TRUE(second.waitForCount(1));
  EXPECT_EQ(first.count(), 1u);
}

TEST_P(CoordinationContract, DataWatchSeesAnotherClientsWrite) {
  ASSERT_EQ(codeOf(client_->create(CreateOp{path("w"), "", CreateMode::kPersistent, {}})),
            Code::kOk);
  auto other = env_->connect();
  WatchRecorder watch;
  ASSERT_EQ(codeOf(client_->exists(path("w"), watch.watcher())), Code::kOk);
  ASSERT_EQ(codeOf(other->set(path("w"), "x", kAnyVersion)), Code::kOk);
  ASSERT_TRUE(watch.waitForCount(1));
  EXPECT_EQ(watch.events()[0].type, EventType::kDataChanged);
}

TEST_P(CoordinationContract, DataWatchFiresOnDelete) {
  ASSERT_EQ(codeOf(client_->create(CreateOp{path("w"), "", CreateMode::kPersistent, {}})),
            Code::kOk);
  WatchRecorder watch;
  ASSERT_EQ(codeOf(client_->get(path("w"), watch.watcher())), Code::kOk);
  ASSERT_EQ(codeOf(client_->remove(path("w"), kAnyVersion)), Code::kOk);
  ASSERT_TRUE(watch.waitForCount(1));
  EXPECT_EQ(watch.events()[0].type, EventType::kDeleted);
  EXPECT_EQ(watch.events()[0].path, path("w"));
}

TEST_P(CoordinationContract, ExistsWatchOnAMissingNodeFiresOnCreate) {
  WatchRecorder watch;
  auto stat = valueOf(client_->exists(path("later"), watch.watcher()));
  EXPECT_FALSE(stat.has_value());
  ASSERT_EQ(codeOf(client_->create(CreateOp{path("later"), "", CreateMode::kPersistent, {}})),
            Code::kOk);
  ASSERT_TRUE(watch.waitForCount(1));
  EXPECT_EQ(watch.events()[0].type, EventType::kCreated);
  EXPECT_EQ(watch.events()[0].path, path("later"));
}

TEST_P(CoordinationContract, FailedGetSetsNoWatch) {
  WatchRecorder failed;
  WatchRecorder exists;
  EXPECT_EQ(codeOf(client_->get(path("later"), failed.watcher())), Code::kNoNode);
  ASSERT_EQ(codeOf(client_->exists(path("later"), exists.watcher())), Code::kOk);
  ASSERT_EQ(codeOf(client_->create(CreateOp{path("later"), "", CreateMode::kPersistent, {}})),
            Code::kOk);
  ASSERT_TRUE(exists.waitForCount(1));
  EXPECT_EQ(failed.count(), 0u);
}

TEST_P(CoordinationContract, ChildWatchFiresOnceOnChildChanges) {
  WatchRecorder first;
  ASSERT_TRUE(valueOf(client_->children(base_, first.watcher())).empty());
  // A data change of the parent is not a child change.
  ASSERT_EQ(codeOf(client_->set(base_, "data", kAnyVersion)), Code::kOk);
  ASSERT_EQ(codeOf(client_->create(CreateOp{path("kid"), "", CreateMode::kPersistent, {}})),
            Code::kOk);
  ASSERT_TRUE(first.waitForCount(1));
  EXPECT_EQ(first.events()[0].type, EventType::kChildrenChanged);
  EXPECT_EQ(first.events()[0].path, base_);

  WatchRecorder second;
  ASSERT_EQ(valueOf(client_->children(base_, second.watcher())), (std::vector<std::string>{"kid"}));
  ASSERT_EQ(codeOf(client_->remove(path("kid"), kAnyVersion)), Code::kOk);
  ASSERT_TRUE(second.waitForCount(1));
  EXPECT_EQ(second.events()[0].type, EventType::kChildrenChanged);
  EXPECT_EQ(first.count(), 1u);
}

TEST_P(CoordinationContract, ChildWatchFiresDeletedWhenTheNodeGoes) {
  ASSERT_EQ(codeOf(client_->create(CreateOp{path("p"), "", CreateMode::kPersistent, {}})),
            Code::kOk);
  WatchRecorder watch;
  ASSERT_EQ(codeOf(client_->children(path("p"), watch.watcher())), Code::kOk);
  ASSERT_EQ(codeOf(client_->remove(path("p"), kAnyVersion)), Code::kOk);
  ASSERT_TRUE(watch.waitForCount(1));
  EXPECT_EQ(watch.events()[0].type, EventType::kDeleted);
  EXPECT_EQ(watch.events()[0].path, path("p"));
}

TEST_P(CoordinationContract, MultiFiresWatches) {
  ASSERT_EQ(codeOf(client_->create(CreateOp{path("a"), "", CreateMode::kPersistent, {}})),
            Code::kOk);
  WatchRecorder data;
  WatchRecorder kids;
  ASSERT_EQ(codeOf(client_->get(path("a"), data.watcher())), Code::kOk);
  ASSERT_EQ(codeOf(client_->children(base_, kids.watcher())), Code::kOk);
  ASSERT_EQ(codeOf(client_->multi({SetOp{path("a"), "x", kAnyVersion},
                                   CreateOp{path("b"), "", CreateMode::kPersistent, {}}})),
            Code::kOk);
  ASSERT_TRUE(data.waitForCount(1));
  ASSERT_TRUE(kids.waitForCount(1));
  EXPECT_EQ(data.events()[0].type, EventType::kDataChanged);
  EXPECT_EQ(kids.events()[0].type, EventType::kChildrenChanged);
}

// --- Sessions and other clients ------------------------------------------------------------

TEST_P(CoordinationContract, EphemeralsVanishForOthersWhenTheOwnerCloses) {
  auto owner = env_->connect();
  ASSERT_EQ(codeOf(owner->create(CreateOp{path("eph"), "", CreateMode::kEphemeral, {}})),
            Code::kOk);
  ASSERT_EQ(codeOf(owner->create(CreateOp{path("kept"), "", CreateMode::kPersistent, {}})),
            Code::kOk);
  WatchRecorder watch;
  // Another session's write: visible to client_'s reads once it has synced.
  ASSERT_EQ(codeOf(client_->sync(path("eph"))), Code::kOk);
  auto seen = valueOf(client_->exists(path("eph"), watch.watcher()));
  ASSERT_TRUE(seen.has_value());
  EXPECT_EQ(seen->ephemeral_owner, owner->session().session_id);

  owner->close();
  ASSERT_TRUE(watch.waitForCount(1));
  EXPECT_EQ(watch.events()[0].type, EventType::kDeleted);
  ASSERT_EQ(codeOf(client_->sync(base_)), Code::kOk);
  EXPECT_FALSE(valueOf(client_->exists(path("eph"), nullptr)).has_value());
  EXPECT_TRUE(valueOf(client_->exists(path("kept"), nullptr)).has_value());
}

TEST_P(CoordinationContract, SyncThenReadSeesAnotherClientsWrite) {
  auto writer = env_->connect();
  ASSERT_EQ(codeOf(writer->create(CreateOp{path("s"), "v", CreateMode::kPersistent, {}})),
            Code::kOk);
  ASSERT_EQ(codeOf(client_->sync(path("s"))), Code::kOk);
  EXPECT_EQ(valueOf(client_->get(path("s"), nullptr)).data, "v");
}

}  // namespace drover::coord
