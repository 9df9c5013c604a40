#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "coord/error.h"
#include "coord/future.h"

namespace drover::coord {

// Matches any version in set/remove (ZooKeeper's -1).
inline constexpr int32_t kAnyVersion = -1;

enum class CreateMode {
  kPersistent,
  kEphemeral,             // deleted when the creating session ends
  kPersistentSequential,  // the server appends a 10-digit counter to the name
  kEphemeralSequential,
  kContainer,  // deleted by the server some time after its last child goes
};

struct Stat {
  int64_t czxid = 0;  // zxid of the create: a cluster-wide creation order
  int64_t mzxid = 0;
  int64_t pzxid = 0;
  int64_t ctime_ms = 0;
  int64_t mtime_ms = 0;
  int32_t version = 0;   // data version
  int32_t cversion = 0;  // children version
  int64_t ephemeral_owner = 0;
  int32_t data_length = 0;
  int32_t num_children = 0;
};

struct Node {
  std::string data;
  Stat stat;
};

// One ACL entry. An empty ACL list means "open to all" (world:anyone, all permissions).
struct AclEntry {
  enum Perm : int32_t { kRead = 1, kWrite = 2, kCreate = 4, kDelete = 8, kAdmin = 16, kAll = 31 };
  int32_t perms = kAll;
  std::string scheme;  // "world", "digest", "auth", "ip", ...
  std::string id;
};
using Acl = std::vector<AclEntry>;

struct CreateOp {
  std::string path;
  std::string data;
  CreateMode mode = CreateMode::kPersistent;
  Acl acl;  // empty = open
};
struct DeleteOp {
  std::string path;
  int32_t version = kAnyVersion;
};
struct SetOp {
  std::string path;
  std::string data;
  int32_t version = kAnyVersion;
};
struct CheckOp {
  std::string path;
  int32_t version = kAnyVersion;
};
using Op = std::variant<CreateOp, DeleteOp, SetOp, CheckOp>;

// An estimate of what an op adds to a multi request on the wire: its path and data plus a
// framing allowance (the multi header, lengths, a create's flags and ACL list). The one estimate
// both the multi builders (tasks/protocol.h) and the client's packet-limit check use.
inline size_t opBytes(const Op& op) {
  constexpr size_t kOpFraming = 64;
  return std::visit(
      [](const auto& o) -> size_t {
        if constexpr (requires { o.data; }) {
          return o.path.size() + o.data.size() + kOpFraming;
        } else {
          return o.path.size() + kOpFraming;
        }
      },
      op);
}

struct OpResult {
  Code code = Code::kOk;
  std::string path;  // create: the path made (with its sequence suffix)
  Stat stat;         // set: the node's new stat
};

enum class EventType { kCreated, kDeleted, kDataChanged, kChildrenChanged };

struct WatchEvent {
  EventType type;
  std::string path;
};

// A one-shot watch. It fires at most once, on the coordination's event thread, and must not
// block. Watches set by a session that expires never fire: the owner learns of the loss through
// its session listener instead.
using Watcher = std::function<void(const WatchEvent&)>;

enum class SessionState {
  kConnecting,    // no session yet (first connect, or rebuilding after expiry)
  kConnected,     // connected; `id` and `generation` say which session
  kDisconnected,  // the session may still be alive: ephemerals stay until it times out
  kExpired,       // the session is gone; a new one is being built (generation + 1)
  kClosed,        // close() was called
};

struct SessionEvent {
  SessionState state;
  int64_t session_id = 0;
  uint64_t generation = 0;  // increments each time a new session replaces an expired one
  std::chrono::milliseconds timeout{0};  // the negotiated session timeout
};
using SessionListener = std::function<void(const SessionEvent&)>;

// A client session to a coordination service (ZooKeeper). Every call is asynchronous and
// returns a Future; calls issued one after another from one thread are applied in that order
// (so they can be pipelined). Thread-safe.
//
// Paths are absolute ("/drover/jobs"). Errors come as values; outcomeUnknown() ones
// (connection loss, timeout) mean a write may have been applied: callers re-read.
//
// Session expiry is terminal for that session: the implementation reports kExpired to the
// listeners, fails every call of the old session with kSessionExpired, and builds a new session
// (a new generation). Owners of ephemeral state (membership, election) re-create it then.
class Coordination {
 public:
  virtual ~Coordination() = default;

  virtual Future<std::string> create(CreateOp op) = 0;
  virtual Future<void> remove(const std::string& path, int32_t version) = 0;
  virtual Future<Stat> set(const std::string& path, std::string data, int32_t version) = 0;
  virtual Future<Node> get(const std::string& path, Watcher watcher) = 0;
  // A missing node is a value (nullopt), not an error; the watch then fires on its creation.
  virtual Future<std::optional<Stat>> exists(const std::string& path, Watcher watcher) = 0;
  virtual Future<std::vector<std::string>> children(const std::string& path, Watcher watcher) = 0;
  // All or nothing. On failure nothing was applied and Error::failedOp() names the failing op.
  virtual Future<std::vector<OpResult>> multi(std::vector<Op> ops) = 0;
  // Brings this session's view up to date with the leader for `path` before later reads.
  virtual Future<void> sync(const std::string& path) = 0;
  // ACL hook: adds credentials to this session (and to every session that replaces it).
  virtual Future<void> addAuth(const std::string& scheme, const std::string& credential) = 0;

  // Session state; listeners run on the event thread and must not block. A listener is called
  // until it is removed (close() and the destructor still call it with kClosed): remove it
  // before whatever it refers to is destroyed.
  virtual SessionEvent session() const = 0;
  virtual uint64_t addSessionListener(SessionListener listener) = 0;
  virtual void removeSessionListener(uint64_t id) = 0;
  // Ends the session cleanly (ephemerals go at once). Later calls fail with kClosing.
  virtual void close() = 0;
};

}  // namespace drover::coord
