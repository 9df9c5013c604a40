// The ZooKeeper implementation of Coordination against real servers: the shared contract suite
// (the same one the fake passes), and each error branch of the session and request handling.
#include "coord/zk/zk_coordination.h"

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <zookeeper/zookeeper.h>

#include <atomic>
#include <mutex>
#include <thread>

#include "base/eventually.h"
#include "base/ids.h"
#include "coord/contract_suite.h"
#include "coord/paths.h"
#include "local/zk_cluster.h"

namespace drover::coord {
namespace {

using namespace std::chrono_literals;
using local::ZkCluster;

std::unique_ptr<ZkCoordination> connectTo(const std::string& connect,
                                          std::chrono::milliseconds timeout = 4000ms) {
  auto c = ZkCoordination::connect({connect, timeout});
  EXPECT_TRUE(c) << c.error().toString();
  EXPECT_TRUE((*c)->waitConnected(30s));
  return std::move(*c);
}

// The contract's sessions get 10 s: the contract is about semantics, and a 3-server ensemble
// with fsync on a loaded 2-core machine (the ASan run) can stall a write past the ~2.7 s a 4 s
// session allows the client to wait, failing a create with an operation timeout (seen once in
// CI's ASan step). No contract test depends on how soon a session expires.
struct ZkEnv : ContractEnv {
  explicit ZkEnv(ZkCluster& zk) : zk_(zk) {}
  std::unique_ptr<Coordination> connect() override {
    return connectTo(zk_.connectString(), 10000ms);
  }
  ZkCluster& zk_;
};

INSTANTIATE_TEST_SUITE_P(
    ZooKeeper, CoordinationContract,
    ::testing::Values(
        ContractParam{"standalone",
                      [] { return std::make_unique<ZkEnv>(ZkCluster::sharedStandalone()); }},
        ContractParam{"ensemble",
                      [] { return std::make_unique<ZkEnv>(ZkCluster::sharedEnsemble()); }}),
    contractParamName);

// Records session events for assertions.
struct SessionLog {
  explicit SessionLog(Coordination& c) : coord(c) {
    id = c.addSessionListener([this](const SessionEvent& e) {
      std::lock_guard lock(mu);
      events.push_back(e);
    });
  }
  ~SessionLog() { coord.removeSessionListener(id); }
  Coordination& coord;
  uint64_t id = 0;
  bool saw(SessionState s, uint64_t generation = 0) {
    std::lock_guard lock(mu);
    for (const auto& e : events) {
      if (e.state == s && (generation == 0 || e.generation == generation)) return true;
    }
    return false;
  }
  std::string describe() {
    std::lock_guard lock(mu);
    std::string out;
    for (const auto& e : events) {
      out += fmt::format("gen {} state {}; ", e.generation, static_cast<int>(e.state));
    }
    return out;
  }
  std::mutex mu;
  std::vector<SessionEvent> events;
};

class ZkCoordinationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = "/t-" + base::randomHex(6);
    client_ = connectTo(ZkCluster::sharedStandalone().connectString());
    ASSERT_TRUE(ensurePath(*client_, root_));
  }
  std::string root_;
  std::unique_ptr<ZkCoordination> client_;
};

TEST_F(ZkCoordinationTest, ReportsTheNegotiatedSession) {
  auto s = client_->session();
  EXPECT_EQ(s.state, SessionState::kConnected);
  EXPECT_NE(s.session_id, 0);
  EXPECT_EQ(s.generation, 1u);
  // tickTime 500 ms: the server clamps the timeout to [1 s, 10 s]; 4 s is inside.
  EXPECT_EQ(s.timeout, 4000ms);
}

TEST_F(ZkCoordinationTest, OversizedRequestsAreRefusedLocallyAndTheSessionSurvives) {
  std::string big(2 * 1024 * 1024, 'x');
  auto created = client_->create({root_ + "/big", big, CreateMode::kPersistent, {}}).get();
  ASSERT_FALSE(created);
  EXPECT_EQ(created.error().code(), Code::kBadArguments);
  ASSERT_TRUE(client_->create({root_ + "/small", "", CreateMode::kPersistent, {}}).get());
  auto set = client_->set(root_ + "/small", big, kAnyVersion).get();
  ASSERT_FALSE(set);
  EXPECT_EQ(set.error().code(), Code::kBadArguments);
  std::vector<Op> ops;
  for (int i = 0; i < 20; ++i) {
    ops.emplace_back(CreateOp{root_ + "/m" + std::to_string(i),
                              std::string(100 * 1024, 'y'),
                              CreateMode::kPersistent,
                              {}});
  }
  auto multi = client_->multi(ops).get();
  ASSERT_FALSE(multi);
  EXPECT_EQ(multi.error().code(), Code::kBadArguments);
  // Nothing was sent, so the connection is intact and nothing was written.
  EXPECT_EQ(client_->session().state, SessionState::kConnected);
  auto kids = client_->children(root_, nullptr).get();
  ASSERT_TRUE(kids);
  EXPECT_EQ(*kids, std::vector<std::string>{"small"});
  // Just under the limit goes through.
  EXPECT_TRUE(client_->set(root_ + "/small", std::string(900 * 1024, 'z'), kAnyVersion).get());
}

TEST_F(ZkCoordinationTest, ClosedHandleRefusesCallsAndDropsEphemeralsAtOnce) {
  auto other = connectTo(ZkCluster::sharedStandalone().connectString());
  SessionLog log(*other);
  ASSERT_TRUE(other->create({root_ + "/eph", "", CreateMode::kEphemeral, {}}).get());
  std::atomic<bool> deleted{false};
  ASSERT_TRUE(client_
                  ->exists(root_ + "/eph",
                           [&](const WatchEvent& e) { deleted = e.type == EventType::kDeleted; })
                  .get());
  other->close();
  EXPECT_TRUE(log.saw(SessionState::kClosed));
  EXPECT_TRUE(base::eventually([&] { return deleted.load(); }, 5s));
  auto r = other->get(root_, nullptr).get();
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), Code::kClosing);
  other->close();  // idempotent
}

TEST_F(ZkCoordinationTest, ForcedExpiryRebuildsTheSessionAndDropsItsState) {
  auto victim = connectTo(ZkCluster::sharedStandalone().connectString());
  SessionLog log(*victim);
  int64_t old_id = victim->session().session_id;
  ASSERT_TRUE(victim->create({root_ + "/eph", "", CreateMode::kEphemeral, {}}).get());
  std::atomic<int> stale_watch_fired{0};
  ASSERT_TRUE(victim->get(root_, [&](const WatchEvent&) { stale_watch_fired++; }).get());

  ASSERT_TRUE(victim->expireSessionForTesting(20s));
  ASSERT_TRUE(base::eventually([&] { return log.saw(SessionState::kExpired, 1); }, 20s));
  ASSERT_TRUE(base::eventually([&] { return log.saw(SessionState::kConnected, 2); }, 20s));
  auto s = victim->session();
  EXPECT_EQ(s.generation, 2u);
  EXPECT_NE(s.session_id, old_id);
  // The old session's ephemeral is gone; the new session works.
  auto gone = client_->exists(root_ + "/eph", nullptr).get();
  ASSERT_TRUE(gone);
  EXPECT_FALSE(gone->has_value());
  ASSERT_TRUE(victim->create({root_ + "/eph2", "", CreateMode::kEphemeral, {}}).get());
  // A watch of the expired session never fires, even when its node changes.
  ASSERT_TRUE(client_->set(root_, "changed", kAnyVersion).get());
  ASSERT_TRUE(victim->sync(root_).get());
  EXPECT_EQ(stale_watch_fired.load(), 0);
}

// Multis sent while the session expires must never reach the C client on a dead handle: its
// zoo_amulti (3.8.0) frees an unset path when a sub-op cannot be built on an expired handle, and
// glibc aborts the process ("double free"). A pump keeps multi-op multis in flight through several
// forced expiries; the process must live, each multi must end with success or a session error,
// and some must have met the expiry (else the test did not exercise the window).
TEST_F(ZkCoordinationTest, MultisInFlightAcrossSessionExpiryNeverCrashTheProcess) {
  auto victim = connectTo(ZkCluster::sharedStandalone().connectString(), 2000ms);
  SessionLog log(*victim);
  ASSERT_TRUE(victim->create({root_ + "/m", "", CreateMode::kPersistent, {}}).get());
  std::atomic<bool> stop{false};
  std::atomic<int> in_flight{0}, ok{0}, session_errors{0}, other_errors{0};
  std::mutex mu;
  std::string unexpected;
  // A failed assertion must not leave the pump running past the test.
  struct Stopper {
    std::atomic<bool>& stop;
    std::thread& t;
    ~Stopper() {
      stop = true;
      if (t.joinable()) t.join();
    }
  };
  std::thread pump([&] {
    // Paths long enough to live on the heap, so a stray free of one is caught at once.
    std::string path = root_ + "/m";
    while (!stop) {
      if (in_flight >= 200) {
        std::this_thread::yield();
        continue;
      }
      in_flight++;
      victim
          ->multi(
              {CheckOp{path, kAnyVersion}, CheckOp{path, kAnyVersion}, CheckOp{path, kAnyVersion}})
          .then([&](const Result<std::vector<OpResult>>& r) {
            if (r) {
              ok++;
            } else if (r.error().sessionLost() || r.error().code() == Code::kConnectionLoss ||
                       r.error().code() == Code::kOperationTimeout ||
                       r.error().code() == Code::kClosing) {
              session_errors++;
            } else {
              other_errors++;
              std::lock_guard lock(mu);
              unexpected = r.error().toString();
            }
            in_flight--;
          });
    }
  });
  Stopper stopper{stop, pump};
  constexpr uint64_t kExpiries = 6;
  for (uint64_t generation = 1; generation <= kExpiries; ++generation) {
    ASSERT_TRUE(base::eventually(
        [&] {
          auto s = victim->session();
          return s.state == SessionState::kConnected && s.generation == generation;
        },
        20s))
        << "generation " << generation << ", events: " << log.describe();
    int before = ok.load();
    ASSERT_TRUE(base::eventually([&] { return ok.load() > before + 100; }, 20s));
    ASSERT_TRUE(victim->expireSessionForTesting(20s));
  }
  ASSERT_TRUE(
      base::eventually([&] { return log.saw(SessionState::kConnected, kExpiries + 1); }, 20s));
  EXPECT_TRUE(log.saw(SessionState::kExpired, kExpiries));
  int before = ok.load();
  EXPECT_TRUE(base::eventually([&] { return ok.load() > before + 100; }, 20s));
  stop = true;
  pump.join();
  EXPECT_TRUE(base::eventually([&] { return in_flight.load() == 0; }, 20s));
  EXPECT_GT(session_errors.load(), 0) << "no multi met an expiry: the window was not exercised";
  std::lock_guard lock(mu);
  EXPECT_EQ(other_errors.load(), 0) << unexpected;
  std::printf("[ figure ] multis: %d ok, %d ended by a lost session\n", ok.load(),
              session_errors.load());
}

TEST_F(ZkCoordinationTest, AclsRefuseUnauthenticatedSessions) {
  ASSERT_TRUE(client_->addAuth("digest", "alice:secret").get());
  ASSERT_TRUE(client_
                  ->create({root_ + "/private", "s3cret", CreateMode::kPersistent,
                            Acl{AclEntry{AclEntry::kAll, "auth", ""}}})
                  .get());
  auto stranger = connectTo(ZkCluster::sharedStandalone().connectString());
  auto denied = stranger->get(root_ + "/private", nullptr).get();
  ASSERT_FALSE(denied);
  EXPECT_EQ(denied.error().code(), Code::kNoAuth);
  ASSERT_TRUE(stranger->addAuth("digest", "alice:secret").get());
  auto allowed = stranger->get(root_ + "/private", nullptr).get();
  ASSERT_TRUE(allowed) << allowed.error().toString();
  EXPECT_EQ(allowed->data, "s3cret");
  auto bad_acl =
      client_->create({root_ + "/bad", "", CreateMode::kPersistent, Acl{{31, "nosuch", "x"}}})
          .get();
  ASSERT_FALSE(bad_acl);
  EXPECT_EQ(bad_acl.error().code(), Code::kInvalidAcl);
}

TEST(ZkCoordinationConnect, RejectsAConnectStringTheClientCannotParse) {
  auto c = ZkCoordination::connect({"", 4000ms});
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error().code(), Code::kBadArguments);
}

// The client's own thread can finish connecting before zookeeper_init returns, i.e. before the
// handle is published as the session's. That "connected" event must not be dropped: it once
// was, about 1 connect in 1,000 on a loaded machine, and waitConnected then never returned.
// The hook holds the window open until the client's thread has delivered the "connected"
// event (the second hook sees it arrive, before it takes any lock).
TEST(ZkCoordinationConnect, ConnectingBeforeTheHandleIsPublishedIsNotLost) {
  ZkOptions options{ZkCluster::sharedStandalone().connectString(), 4000ms};
  std::atomic<bool> delivered{false};
  options.on_session_event_for_testing = [&](int state) {
    if (state == ZOO_CONNECTED_STATE) delivered = true;
  };
  options.after_handle_created_for_testing = [&](zhandle_t*) {
    EXPECT_TRUE(base::eventually([&] { return delivered.load(); }, 10s));
  };
  auto c = ZkCoordination::connect(options);
  ASSERT_TRUE(c) << c.error().toString();
  EXPECT_TRUE((*c)->waitConnected(5s));
  EXPECT_EQ((*c)->session().state, SessionState::kConnected);
  EXPECT_TRUE((*c)->get("/", nullptr).get());
}

// Pausing the only server: calls fail with connection loss (outcome unknown), the listener hears
// kDisconnected; resuming within the session timeout reconnects the same session.
TEST(ZkCoordinationFaults, ServerPauseDisconnectsAndResumeReconnectsTheSameSession) {
  auto zk = ZkCluster::standalone();
  auto c = connectTo(zk->connectString(), 10000ms);
  SessionLog log(*c);
  int64_t id = c->session().session_id;
  ASSERT_TRUE(c->create({"/p", "", CreateMode::kPersistent, {}}).get());
  zk->pause(0);
  // The client notices silence after about two thirds of the timeout and reports the loss.
  auto r = c->set("/p", "during pause", kAnyVersion).get();
  ASSERT_FALSE(r);
  EXPECT_TRUE(r.error().outcomeUnknown()) << r.error().toString();
  EXPECT_TRUE(r.error().retryable());
  ASSERT_TRUE(base::eventually([&] { return log.saw(SessionState::kDisconnected); }, 20s));
  zk->resume(0);
  ASSERT_TRUE(c->waitConnected(30s));
  EXPECT_EQ(c->session().session_id, id);
  EXPECT_EQ(c->session().generation, 1u);
  EXPECT_FALSE(log.saw(SessionState::kExpired));
  // "Outcome unknown" is meant literally: the request sat in the paused server's socket buffer
  // and may have been applied after the resume. Either way the node is intact and readable.
  auto node = c->get("/p", nullptr).get();
  ASSERT_TRUE(node);
  EXPECT_TRUE(node->data.empty() || node->data == "during pause") << node->data;
}

// A crash of the only server (kill -9) and its restart: the client reconnects by itself, and
// what was committed before the crash is still there (ZooKeeper logs before it acknowledges).
TEST(ZkCoordinationFaults, ServerCrashAndRestartIsSurvived) {
  auto zk = ZkCluster::standalone();
  auto c = connectTo(zk->connectString(), 4000ms);
  SessionLog log(*c);
  ASSERT_TRUE(c->create({"/durable", "kept", CreateMode::kPersistent, {}}).get());
  zk->kill9(0);
  ASSERT_TRUE(base::eventually([&] { return log.saw(SessionState::kDisconnected); }, 20s));
  auto during = c->get("/durable", nullptr).get();
  ASSERT_FALSE(during);
  EXPECT_TRUE(during.error().retryable());
  zk->restart(0);
  ASSERT_TRUE(
      base::eventually([&] { return c->session().state == SessionState::kConnected; }, 30s));
  auto node = c->get("/durable", nullptr).get();
  ASSERT_TRUE(node) << node.error().toString();
  EXPECT_EQ(node->data, "kept");
}

}  // namespace
}  // namespace drover::coord
