#pragma once

// Internal to src/coord/zk/ (not installed; nothing outside this folder includes it): what the
// parts of ZkCoordination share. The session and handle manager is ZkCoordination::Impl, defined
// here and implemented in zk_session.cc; the one-call requests are in zk_calls.cc, the multi in
// zk_multi.cc and the watch registry in zk_watches.cc.

#include <fmt/format.h>
#include <zookeeper/zookeeper.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "base/executor.h"
#include "coord/coordination.h"
#include "coord/paths.h"
#include "coord/zk/zk_coordination.h"
#include "coord/zk/zk_errors.h"

namespace drover::coord {
namespace zk_detail {

inline Error toError(int rc, const std::string& path) {
  return Error(toCode(rc), fmt::format("{} (zk rc {})", path, rc));
}

inline Stat toStat(const ::Stat* s) {
  Stat out;
  if (s == nullptr) return out;
  out.czxid = s->czxid;
  out.mzxid = s->mzxid;
  out.pzxid = s->pzxid;
  out.ctime_ms = s->ctime;
  out.mtime_ms = s->mtime;
  out.version = s->version;
  out.cversion = s->cversion;
  out.ephemeral_owner = s->ephemeralOwner;
  out.data_length = s->dataLength;
  out.num_children = s->numChildren;
  return out;
}

inline int toMode(CreateMode mode) {
  switch (mode) {
    case CreateMode::kPersistent:
      return ZOO_PERSISTENT;
    case CreateMode::kEphemeral:
      return ZOO_EPHEMERAL;
    case CreateMode::kPersistentSequential:
      return ZOO_PERSISTENT_SEQUENTIAL;
    case CreateMode::kEphemeralSequential:
      return ZOO_EPHEMERAL_SEQUENTIAL;
    case CreateMode::kContainer:
      return ZOO_CONTAINER;
  }
  return ZOO_PERSISTENT;
}

// An ACL in the C client's layout, owning its strings. Empty = world:anyone with all rights, or,
// for a session with digest credentials (`creator_only`), all rights to the creator's identity
// only (ZOO_CREATOR_ALL_ACL: the server puts the session's authenticated ids in its place).
class CAcl {
 public:
  CAcl(const Acl& acl, bool creator_only) : creator_only_(creator_only) {
    for (const auto& e : acl) {
      schemes_.push_back(e.scheme);
      ids_.push_back(e.id);
    }
    entries_.resize(acl.size());
    for (size_t i = 0; i < acl.size(); ++i) {
      entries_[i].perms = acl[i].perms;
      entries_[i].id.scheme = schemes_[i].data();
      entries_[i].id.id = ids_[i].data();
    }
    vec_.count = static_cast<int32_t>(entries_.size());
    vec_.data = entries_.data();
  }
  CAcl(const CAcl&) = delete;
  CAcl& operator=(const CAcl&) = delete;
  const struct ACL_vector* get() const {
    if (!entries_.empty()) return &vec_;
    return creator_only_ ? &ZOO_CREATOR_ALL_ACL : &ZOO_OPEN_ACL_UNSAFE;
  }

 private:
  bool creator_only_;
  std::vector<std::string> schemes_, ids_;
  std::vector<struct ACL> entries_;
  struct ACL_vector vec_ {};
};

// The watch registry (zk_watches.cc): a watch set through the C client carries the number
// registerWatch returns as its context, and nodeWatcher as its watcher function.
void* registerWatch(Watcher fn, const void* owner, uint64_t generation);
void dropWatch(void* ctx);
void dropWatchesOf(const void* owner, uint64_t generation);
void nodeWatcher(zhandle_t*, int type, int state, const char* path, void* ctx);

// The C client takes paths as C strings: a NUL inside would silently cut the path short and
// touch another node. Every path is checked here first.
inline bool badPath(const std::string& path) { return !isValidPath(path); }

inline Error pathError(const std::string& path) {
  return Error(Code::kBadArguments, fmt::format("invalid path '{}'", path));
}

inline const std::string& opPath(const Op& op) {
  return std::visit([](const auto& o) -> const std::string& { return o.path; }, op);
}

}  // namespace zk_detail

// One zhandle_t and the generation (session incarnation) it serves.
struct Handle {
  zhandle_t* zh = nullptr;
  uint64_t generation = 0;
  ZkCoordination::Impl* impl = nullptr;
  bool was_connected = false;  // guarded by Impl::mu_
  bool lost = false;           // the session expired or failed auth; guarded by Impl::mu_
};

struct ZkCoordination::Impl {
  explicit Impl(ZkOptions o) : options(std::move(o)), manager("zk-manager") {}

  ZkOptions options;
  mutable std::mutex mu;
  // Orders publish(); taken before `mu`, never under it; recursive so a listener may close().
  std::recursive_mutex publish_mu;
  mutable std::condition_variable cv;
  std::unique_ptr<Handle> handle;  // the current session's handle; null once closed
  SessionEvent state{SessionState::kConnecting, 0, 1, std::chrono::milliseconds(0)};
  bool closed = false;
  std::vector<std::pair<std::string, std::string>> auths;
  std::map<uint64_t, SessionListener> listeners;
  uint64_t next_listener = 1;
  base::ThreadExecutor manager;  // rebuilds handles after expiry; never the completion thread

  // A multi that waits for its session to be connected (see sendMulti). `send` hands it to the
  // client and returns the client's immediate code; `fail` completes it with an error and must be
  // called without `mu` held (continuations run inline).
  struct HeldMulti {
    uint64_t id;
    uint64_t generation;
    std::function<int(zhandle_t*)> send;
    std::function<void(int)> fail;
  };
  std::vector<HeldMulti> held;  // guarded by mu
  uint64_t next_held = 1;       // guarded by mu

  static void sessionWatcher(zhandle_t* zh, int type, int zstate, const char* path, void* ctx);

  // Defined in zk_session.cc, each under its comment.
  Result<std::unique_ptr<Handle>> open(uint64_t generation);
  void publish(const SessionEvent& event);
  void onSession(Handle* h, int zstate);
  int sendMulti(std::function<int(zhandle_t*)> send, std::function<void(int)> fail);
  void releaseHeld();
  void dropHeld(uint64_t id);
  void replace(uint64_t gen);

  // Runs `submit(zh)` with the current handle, or reports why there is none. `submit` returns
  // the C client's immediate return code; non-ZOK means the completion will never run.
  template <class Submit>
  int withHandle(Submit&& submit, uint64_t* generation = nullptr) {
    std::lock_guard lock(mu);
    if (closed || !handle) return ZCLOSING;
    if (generation != nullptr) *generation = handle->generation;
    return submit(handle->zh);
  }

  Error sizeError(size_t bytes) const {
    return Error(Code::kBadArguments, fmt::format("request of {} bytes is over the {}-byte limit",
                                                  bytes, options.max_request_bytes));
  }
};

}  // namespace drover::coord
