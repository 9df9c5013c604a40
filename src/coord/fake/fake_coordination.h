#pragma once

// An in-memory coordination service for unit tests: FakeServer is the shared tree (one ZooKeeper
// ensemble), FakeCoordination is one client session on it, with fault injection.
//
// What the fake models exactly (and the contract suite checks against real ZooKeeper):
//   - the znode tree, Stat bookkeeping (one global zxid; a multi takes one zxid for all its ops,
//     like a ZooKeeper transaction; cversion counts child creates and deletes), ephemerals per
//     session, the error codes and their precedence;
//   - sequential names: "%010d" of how many children the parent has had created so far. That is
//     what ZooKeeper 3.8 does (checked against a server): deletes bump the parent's cversion but
//     not the sequence, so after create, create, delete the next suffix is 2, not 3;
//   - container nodes report ephemeral_owner 0, as ZooKeeper 3.8 shows them to clients;
//   - one-shot watches: get/exists set data watches (exists on a missing node fires kCreated),
//     children sets a child watch; a failed get/children sets no watch;
//   - multi: all or nothing, later ops see earlier ones, Error::failedOp() names the failing op.
// Where it deliberately differs:
//   - Container nodes are deleted as soon as their last child goes (ZooKeeper does it up to a
//     minute later). A container that never had a child stays, as in ZooKeeper.
//   - Values over kMaxDataBytes are rejected with kBadArguments; a real client would lose its
//     connection instead (the server drops packets over jute.maxbuffer).
//   - ACLs are validated (known scheme, "world" must be "anyone", "auth" needs a prior addAuth)
//     and stored, but never enforced: the fake never answers kNoAuth. addAuth always succeeds.
//   - There is no /zookeeper subtree and no session timeout: a disconnected session lives until
//     the test calls expireSession() or close().
//   - Futures are completed before the call returns. Watches and session events still arrive
//     asynchronously, on the FakeCoordination's own event thread.

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "coord/coordination.h"

namespace drover::coord {

// The largest value the fake accepts (ZooKeeper's default jute.maxbuffer, 1 MiB).
inline constexpr size_t kMaxDataBytes = 1048576;

// The shared tree. Create one per test and hand it to every FakeCoordination that should see
// the same data. Thread-safe: one mutex guards everything, and no callback ever runs under it.
class FakeServer {
 public:
  FakeServer();
  FakeServer(const FakeServer&) = delete;
  FakeServer& operator=(const FakeServer&) = delete;

  // Test helpers; each takes a consistent snapshot.
  // Every node but the root, path -> data, sorted by path.
  std::map<std::string, std::string> dump() const;
  std::optional<Node> peek(const std::string& path) const;
  // The ACL stored with `path` at create; nullopt for a missing node.
  std::optional<Acl> aclOf(const std::string& path) const;
  // Watches registered and not yet fired, over all sessions.
  size_t watchCount() const;
  // Nodes including the root.
  size_t nodeCount() const;
  // Sessions that are alive (connected or disconnected, not expired or closed).
  size_t sessionCount() const;
  // The zxid of the last committed write.
  int64_t lastZxid() const;

 private:
  friend class FakeCoordination;

  // Delivers one fired watch to the session's event thread; called under mu_, must only queue.
  using WatchSink = std::function<void(int64_t session, WatchEvent event, Watcher watcher)>;

  struct NodeRec {
    std::string data;
    Stat stat;
    Acl acl;
    bool container = false;
    int32_t sequence = 0;            // the next sequential suffix for a child
    std::set<std::string> children;  // base names
  };
  struct WatchRec {
    int64_t session;
    Watcher watcher;
  };
  struct SessionRec {
    WatchSink sink;
    std::vector<std::pair<std::string, std::string>> auths;  // scheme, credential
  };
  // The writes of one transaction: watch triggers and containers to check, both in order.
  struct Txn {
    int64_t zxid = 0;
    int64_t session = 0;
    std::vector<std::pair<std::string, EventType>> triggers;
    std::vector<std::string> touched_parents;
  };
  enum class WatchKind { kData, kChild };

  // Session bookkeeping (FakeCoordination only).
  int64_t openSession(WatchSink sink);
  // Deletes the session's ephemerals (firing other sessions' watches) and drops its watches.
  void endSession(int64_t session);
  void addAuth(int64_t session, std::string scheme, std::string credential);

  // The operations. `watcher` may be empty (no watch).
  Result<std::string> create(int64_t session, const CreateOp& op);
  Status remove(int64_t session, const std::string& path, int32_t version);
  Result<Stat> set(int64_t session, const std::string& path, std::string data, int32_t version);
  Result<Node> get(int64_t session, const std::string& path, Watcher watcher);
  Result<std::optional<Stat>> exists(int64_t session, const std::string& path, Watcher watcher);
  Result<std::vector<std::string>> children(int64_t session, const std::string& path,
                                            Watcher watcher);
  Result<std::vector<OpResult>> multi(int64_t session, const std::vector<Op>& ops);
  Status sync(int64_t session, const std::string& path);

  // Helpers; all run under mu_.
  Result<OpResult> applyCreate(const CreateOp& op, Txn& txn);
  Result<OpResult> applyDelete(const DeleteOp& op, Txn& txn);
  Result<OpResult> applySet(const SetOp& op, Txn& txn);
  Result<OpResult> applyCheck(const CheckOp& op) const;
  void eraseNode(const std::string& path, Txn& txn);
  // Deletes emptied containers, then fires the transaction's watches.
  void commit(Txn& txn);
  void fire(const std::string& path, EventType type);
  void addWatch(WatchKind kind, const std::string& path, int64_t session, Watcher watcher);
  Status checkAcl(int64_t session, const Acl& acl) const;

  mutable std::mutex mu_;
  std::map<std::string, NodeRec> nodes_;
  std::multimap<std::string, WatchRec> data_watches_;
  std::multimap<std::string, WatchRec> child_watches_;
  std::map<int64_t, SessionRec> sessions_;
  int64_t zxid_ = 0;
  int64_t next_session_ = 0x1000;
};

// Which call a fault applies to.
enum class OpKind { kAny, kCreate, kRemove, kSet, kGet, kExists, kChildren, kMulti, kSync };

enum class FaultMode {
  kBeforeApply,  // the call fails and changes nothing (a request lost on the way)
  kAfterApply,   // the call takes effect, then reports the error (a lost reply: the
                 // "ambiguous write"). Reads register their watch before failing.
};

// One client session on a FakeServer. Thread-safe.
//
// It starts connected, with a fresh session id and generation 1. Every call completes before it
// returns (the future is ready). Watches and session events are delivered on one event thread
// owned by this object, in the order they happened and never under a lock, so callbacks may call
// back into the fake. While disconnected, watch events that fire are held and delivered after
// the kConnected event (like ZooKeeper re-registering watches on reconnect).
//
// Calls fail with kConnectionLoss while disconnected, kSessionExpired while expired (see
// expireSession(false)), and kClosing after close(). A failed call changes nothing, except for
// injected kAfterApply faults.
//
// The destructor closes the session, delivers the events already queued, and stops the event
// thread; it must not run on that thread (i.e. from inside a watch or listener).
class FakeCoordination final : public Coordination {
 public:
  explicit FakeCoordination(std::shared_ptr<FakeServer> server,
                            std::chrono::milliseconds session_timeout = std::chrono::seconds(10));
  ~FakeCoordination() override;
  FakeCoordination(const FakeCoordination&) = delete;
  FakeCoordination& operator=(const FakeCoordination&) = delete;

  Future<std::string> create(CreateOp op) override;
  Future<void> remove(const std::string& path, int32_t version) override;
  Future<Stat> set(const std::string& path, std::string data, int32_t version) override;
  Future<Node> get(const std::string& path, Watcher watcher) override;
  Future<std::optional<Stat>> exists(const std::string& path, Watcher watcher) override;
  Future<std::vector<std::string>> children(const std::string& path, Watcher watcher) override;
  Future<std::vector<OpResult>> multi(std::vector<Op> ops) override;
  Future<void> sync(const std::string& path) override;
  Future<void> addAuth(const std::string& scheme, const std::string& credential) override;

  SessionEvent session() const override;
  uint64_t addSessionListener(SessionListener listener) override;
  // A listener that is running at that moment may finish; it is not called again afterwards.
  void removeSessionListener(uint64_t id) override;
  void close() override;

  // --- Fault injection and inspection (tests only) ---

  // Queues a fault: the next call of `kind` (kAny: of any kind) fails with `code`. Faults are
  // consumed once each, first queued first, and only by calls made while connected. A
  // kAfterApply fault whose call itself fails (say kNoNode) reports `code` anyway. The error names
  // no failed op (Error::failedOp() is -1); to fail one op of a multi, use failNextOn.
  void failNext(OpKind kind, Code code, FaultMode mode = FaultMode::kBeforeApply);
  // Like failNext, but only for calls on a path starting with `path_prefix` (a multi matches
  // when any of its ops does). On a multi, an error that belongs to one op (kNoNode,
  // kNodeExists, kBadVersion, kNotEmpty, kNoChildrenForEphemerals, kNoAuth, kInvalidAcl,
  // kBadArguments) names the first op whose path matches as the failed op, as a real multi
  // failure names its op; the session's errors (connection loss, expiry, ...) name none.
  void failNextOn(OpKind kind, std::string path_prefix, Code code,
                  FaultMode mode = FaultMode::kBeforeApply);
  // Queues a hook: `action` runs once, just before the next call of `kind` (kAny: of any kind)
  // on a path starting with `path_prefix` (empty: any path; a multi matches when any of its ops
  // does) is admitted, and the call then goes ahead on the tree as the action left it. This makes
  // a race happen for certain: another session's write lands between a client's read and its
  // write. The action runs on the calling thread with none of this fake's locks held, so it may
  // use any session, this one included; a call it makes does not trigger the hook again. Hooks
  // are consumed once each, first queued first, only by calls made while connected, and are
  // independent of the fault queue (a call may run a hook and then take a fault).
  void beforeNextOn(OpKind kind, std::string path_prefix, std::function<void()> action);
  // Faults and hooks queued and not yet consumed: 0 once every one has fired.
  size_t pendingFaults() const;

  // Connection lost: listeners get kDisconnected; calls fail with kConnectionLoss. The session
  // and its ephemerals stay. No-op unless connected.
  void disconnect();
  // Connection back: listeners get kConnected (same session id and generation), then any watch
  // events held meanwhile. No-op unless disconnected.
  void reconnect();
  // The server expires the session: its ephemerals go (firing other sessions' watches), its
  // watches are dropped unfired, listeners get kExpired. With `rebuild` a new session (new id,
  // generation + 1) is built at once and listeners get kConnected; without it the handle stays
  // expired (calls fail kSessionExpired) until rebuildSession(). No-op once closed.
  void expireSession(bool rebuild = true);
  // Builds the new session after expireSession(false). No-op unless expired.
  void rebuildSession();

  // Calls issued of `kind` (kAny: all), failed ones included.
  size_t callCount(OpKind kind) const;
  // Credentials added with addAuth, in order.
  std::vector<std::pair<std::string, std::string>> auths() const;

 private:
  struct Fault {
    OpKind kind;
    std::string prefix;
    Code code;
    FaultMode mode;
  };
  struct Hook {
    OpKind kind;
    std::string prefix;
    std::function<void()> action;
  };

  // The single event thread: runs posted tasks in order.
  class EventThread {
   public:
    EventThread();
    ~EventThread();
    void post(std::function<void()> task);
    // Runs what was posted so far, then stops; later posts are dropped.
    void drainAndStop();
    bool isCurrent() const { return std::this_thread::get_id() == thread_.get_id(); }

   private:
    void run();
    std::mutex mu_;
    std::condition_variable cv_;
    std::deque<std::function<void()>> queue_;
    bool stopping_ = false;
    std::thread thread_;
  };

  // Under mu_: counts the call, checks the session state and the fault queue. Returns the error
  // to report before applying, and sets `after` to the error to report after applying.
  std::optional<Error> admit(OpKind kind, const std::vector<std::string>& paths,
                             std::optional<Error>& after);
  // Takes the first queued hook that matches the call (empty if none, or if not connected).
  // Takes mu_ itself.
  std::function<void()> takeHook(OpKind kind, const std::vector<std::string>& paths);
  // Under mu_: queues a session event for the listeners.
  void postSessionEvent(SessionState state);
  void openSessionLocked();
  // Event thread only.
  void deliverSessionEvent(const SessionEvent& event);
  void deliverWatch(int64_t session, const WatchEvent& event, const Watcher& watcher);

  template <class T, class Fn>
  Future<T> run(OpKind kind, std::vector<std::string> paths, Fn&& apply);

  const std::shared_ptr<FakeServer> server_;
  const std::chrono::milliseconds timeout_;

  // Calls hold mu_ while they run on the server, so one handle's calls apply in order. Lock
  // order: mu_, then the server's mutex, then the event thread's.
  mutable std::mutex mu_;
  SessionState state_ = SessionState::kConnecting;
  int64_t session_id_ = 0;
  uint64_t generation_ = 0;
  std::deque<Fault> faults_;
  std::deque<Hook> hooks_;
  size_t hooks_running_ = 0;  // taken from hooks_ and not yet returned
  std::map<OpKind, size_t> calls_;
  std::vector<std::pair<std::string, std::string>> auths_;
  std::map<uint64_t, SessionListener> listeners_;
  uint64_t next_listener_ = 1;

  // Event-thread state: the session as the listeners have been told so far, and watch events
  // held while disconnected.
  SessionState delivered_state_ = SessionState::kConnecting;
  int64_t delivered_session_ = 0;
  std::vector<std::pair<WatchEvent, Watcher>> held_;

  EventThread events_;  // last: stopped before the members above go
};

}  // namespace drover::coord
