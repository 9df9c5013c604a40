#include "coord/zk/zk_coordination.h"

#include <spdlog/spdlog.h>
#include <zookeeper/zookeeper.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <mutex>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <vector>

#include "base/executor.h"
#include "base/metrics.h"
#include "coord/paths.h"
#include "coord/zk/zk_errors.h"
#include "coord/zk/zk_request_metrics.h"

namespace drover::coord {
namespace {

Error toError(int rc, const std::string& path) {
  return Error(toCode(rc), fmt::format("{} (zk rc {})", path, rc));
}

Stat toStat(const ::Stat* s) {
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

int toMode(CreateMode mode) {
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

// Per-call watchers live in one process-wide table keyed by a number, and the C client carries
// only that number. A watcher is taken out of the table when it fires or when its session ends,
// so a late or repeated call from the client never touches freed memory.
struct WatchEntry {
  Watcher fn;
  const void* owner;
  uint64_t generation;
};
std::mutex g_watch_mu;
std::unordered_map<uint64_t, WatchEntry> g_watches;
std::atomic<uint64_t> g_next_watch{1};

void* registerWatch(Watcher fn, const void* owner, uint64_t generation) {
  uint64_t id = g_next_watch++;
  std::lock_guard lock(g_watch_mu);
  g_watches.emplace(id, WatchEntry{std::move(fn), owner, generation});
  return reinterpret_cast<void*>(id);  // NOLINT(performance-no-int-to-ptr)
}

void dropWatch(void* ctx) {
  std::lock_guard lock(g_watch_mu);
  g_watches.erase(reinterpret_cast<uint64_t>(ctx));
}

void dropWatchesOf(const void* owner, uint64_t generation) {
  std::lock_guard lock(g_watch_mu);
  std::erase_if(g_watches, [&](const auto& kv) {
    return kv.second.owner == owner && kv.second.generation <= generation;
  });
}

void nodeWatcher(zhandle_t*, int type, int state, const char* path, void* ctx) {
  // Session events reach every registered watcher too; they are the session listener's business.
  if (type == ZOO_SESSION_EVENT || type == ZOO_NOTWATCHING_EVENT) return;
  Watcher fn;
  {
    std::lock_guard lock(g_watch_mu);
    auto it = g_watches.find(reinterpret_cast<uint64_t>(ctx));
    if (it == g_watches.end()) return;
    fn = std::move(it->second.fn);
    g_watches.erase(it);
  }
  EventType event = EventType::kDataChanged;
  if (type == ZOO_CREATED_EVENT) event = EventType::kCreated;
  if (type == ZOO_DELETED_EVENT) event = EventType::kDeleted;
  if (type == ZOO_CHILD_EVENT) event = EventType::kChildrenChanged;
  if (fn) fn(WatchEvent{event, path != nullptr ? path : ""});
}

// The C client takes paths as C strings: a NUL inside would silently cut the path short and
// touch another node. Every path is checked here first.
bool badPath(const std::string& path) { return !isValidPath(path); }

Error pathError(const std::string& path) {
  return Error(Code::kBadArguments, fmt::format("invalid path '{}'", path));
}

void zkLog(const char* message) { spdlog::debug("zookeeper client: {}", message); }

const std::string& opPath(const Op& op) {
  return std::visit([](const auto& o) -> const std::string& { return o.path; }, op);
}

}  // namespace

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

  // Called with `mu` held, so session events of the new handle wait until it is published.
  Result<std::unique_ptr<Handle>> open(uint64_t generation) {
    auto h = std::make_unique<Handle>();
    h->generation = generation;
    h->impl = this;
    h->zh = zookeeper_init2(options.connect.c_str(), &Impl::sessionWatcher,
                            static_cast<int>(options.session_timeout.count()), nullptr, h.get(), 0,
                            &zkLog);
    if (h->zh != nullptr && options.after_handle_created_for_testing) {
      options.after_handle_created_for_testing(h->zh);
    }
    if (h->zh == nullptr) {
      return fail(Code::kBadArguments, fmt::format("cannot open a ZooKeeper client for '{}': {}",
                                                   options.connect, std::strerror(errno)));
    }
    for (const auto& [scheme, cred] : auths) {
      zoo_add_auth(h->zh, scheme.c_str(), cred.data(), static_cast<int>(cred.size()), nullptr,
                   nullptr);
    }
    return h;
  }

  // Sets the state and tells the listeners. Deliveries happen one at a time, in the order their
  // states were set: without that, an expiry told on the old session's completion thread could
  // land after the new session's "connected", leaving the state expired on a live session.
  void publish(const SessionEvent& event) {
    std::lock_guard order(publish_mu);
    std::vector<SessionListener> copy;
    {
      std::lock_guard lock(mu);
      state = event;
      for (const auto& [id, l] : listeners) copy.push_back(l);
    }
    cv.notify_all();
    for (const auto& l : copy) l(event);
  }

  void onSession(Handle* h, int zstate) {
    SessionEvent event;
    bool rebuild = false;
    {
      std::lock_guard lock(mu);
      if (closed || handle.get() != h) return;  // an event of a replaced session: dropped
      event = state;
      event.generation = h->generation;
      if (zstate == ZOO_CONNECTED_STATE) {
        h->was_connected = true;
        event.state = SessionState::kConnected;
        event.session_id = zoo_client_id(h->zh)->client_id;
        event.timeout = std::chrono::milliseconds(zoo_recv_timeout(h->zh));
      } else if (zstate == ZOO_CONNECTING_STATE || zstate == ZOO_ASSOCIATING_STATE ||
                 zstate == ZOO_NOTCONNECTED_STATE) {
        event.state = h->was_connected ? SessionState::kDisconnected : SessionState::kConnecting;
      } else if (zstate == ZOO_EXPIRED_SESSION_STATE || zstate == ZOO_AUTH_FAILED_STATE) {
        h->lost = true;
        event.state = SessionState::kExpired;
        rebuild = true;
      } else {
        return;
      }
    }
    if (rebuild) {
      dropWatchesOf(this, h->generation);
      spdlog::warn("zookeeper session 0x{:x} expired; opening a new session", event.session_id);
    }
    // The expiry is told before the rebuild is queued, so it precedes every event of the new
    // session.
    publish(event);
    if (rebuild) manager.post([this, gen = h->generation] { replace(gen); });
    if (event.state == SessionState::kConnected || event.state == SessionState::kExpired) {
      releaseHeld();
    }
  }

  // The ZooKeeper 3.8.0 C client's zoo_amulti frees a path it never set when a sub-op's request
  // cannot be built, and a sub-op cannot be built once the handle's session has expired or failed
  // auth (ZINVALIDSTATE): glibc then aborts the process ("double free"). Every other async call
  // returns the error cleanly. So a multi reaches the client only while the handle is connected:
  // from there, an expiry takes the client's I/O thread a disconnect, a reconnect and the
  // server's answer, all while this thread is inside the few microseconds in which zoo_amulti
  // builds its sub-requests (only a preemption of this thread right there, lasting a loopback
  // round trip, can still meet it: the client offers no lock to close that, so MultiCall's
  // CPaths makes the client's stray frees harmless). A handle whose
  // session is gone
  // gets the session-lost error here; one that is (re)connecting holds the multi until it is
  // connected (sent then), its session is lost or the handle closed (failed then), or a session
  // timeout passes (failed as a connection loss: never sent, as the client itself would report a
  // request queued across a failed reconnect).
  //
  // Returns ZOK when the multi was sent or held (its completion or `fail` now owns it), else the
  // error for the caller to complete it with.
  int sendMulti(std::function<int(zhandle_t*)> send, std::function<void(int)> fail) {
    std::lock_guard lock(mu);
    if (closed || !handle) return ZCLOSING;
    int zstate = zoo_state(handle->zh);
    if (handle->lost || zstate == ZOO_EXPIRED_SESSION_STATE || zstate == ZOO_AUTH_FAILED_STATE) {
      return ZSESSIONEXPIRED;
    }
    if (zstate == ZOO_CONNECTED_STATE && held.empty()) return send(handle->zh);
    uint64_t id = next_held++;
    held.push_back(HeldMulti{id, handle->generation, std::move(send), std::move(fail)});
    manager.postAfter(options.session_timeout, [this, id] { dropHeld(id); });
    return ZOK;
  }

  // Sends the held multis the current handle can take now, in the order they came, and fails
  // those whose session is gone.
  void releaseHeld() {
    std::vector<std::pair<std::function<void(int)>, int>> failed;
    {
      std::lock_guard lock(mu);
      std::vector<HeldMulti> keep;
      for (auto& m : held) {
        int rc = ZOK;
        if (closed || !handle) {
          rc = ZCLOSING;
        } else if (handle->lost || m.generation != handle->generation) {
          rc = ZSESSIONEXPIRED;
        } else if (!keep.empty() || zoo_state(handle->zh) != ZOO_CONNECTED_STATE) {
          keep.push_back(std::move(m));
          continue;
        } else {
          rc = m.send(handle->zh);
        }
        if (rc != ZOK) failed.emplace_back(std::move(m.fail), rc);
      }
      held = std::move(keep);
    }
    for (auto& [fail, rc] : failed) fail(rc);
  }

  // A multi held past its deadline: failed as never sent.
  void dropHeld(uint64_t id) {
    std::function<void(int)> fail;
    {
      std::lock_guard lock(mu);
      auto it = std::find_if(held.begin(), held.end(), [&](const auto& m) { return m.id == id; });
      if (it == held.end()) return;
      fail = std::move(it->fail);
      held.erase(it);
    }
    fail(ZCONNECTIONLOSS);
  }

  // Replaces the expired handle of generation `gen` with a new session.
  void replace(uint64_t gen) {
    std::unique_ptr<Handle> old;
    {
      // Held until "connecting" is told, so the new session's own events come after it.
      std::unique_lock order(publish_mu);
      std::unique_lock lock(mu);
      if (closed || !handle || handle->generation != gen) return;
      auto fresh = open(gen + 1);
      if (!fresh) {
        spdlog::error("{}", fresh.error().toString());
        manager.postAfter(std::chrono::seconds(1), [this, gen] { replace(gen); });
        return;
      }
      old = std::move(handle);
      handle = std::move(*fresh);
      state = SessionEvent{SessionState::kConnecting, 0, gen + 1, std::chrono::milliseconds(0)};
      lock.unlock();
      publish(SessionEvent{SessionState::kConnecting, 0, gen + 1, std::chrono::milliseconds(0)});
    }
    // Outside publish_mu: closing joins the old session's completion thread, which may be
    // waiting to publish.
    zookeeper_close(old->zh);  // completes the old session's pending calls with an error
  }

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

void ZkCoordination::Impl::sessionWatcher(zhandle_t*, int type, int zstate, const char*,
                                          void* ctx) {
  if (type != ZOO_SESSION_EVENT) return;
  auto* h = static_cast<Handle*>(ctx);
  if (h->impl->options.on_session_event_for_testing) {
    h->impl->options.on_session_event_for_testing(zstate);
  }
  h->impl->onSession(h, zstate);
}

namespace {

// Completion contexts: one heap object per call, freed by its completion.
// One request in flight: freed by its completion (or at once when the client refuses it).
template <class T>
struct Call {
  Promise<T> promise;
  std::string path;
  void* watch = nullptr;
  zk_metrics::RequestTimer timer;
};

// Sends one request: checks `check_path`, registers `watcher` (if any) with the session's
// generation, and lets `send(zh, call)` hand the request to the C client with `call` as its
// completion data. A request the client refuses at once completes here with its error.
template <class T, class Send>
Future<T> issue(ZkCoordination::Impl& impl, const char* op, const std::string& path,
                const std::string& check_path, Watcher watcher, Send send) {
  if (badPath(check_path)) return Future<T>::ready(tl::unexpected(pathError(path)));
  if (std::strcmp(op, "get") == 0 || std::strcmp(op, "children") == 0 ||
      std::strcmp(op, "exists") == 0) {
    zk_metrics::countRead(op, path);
  }
  auto* call = new Call<T>{{}, path, nullptr, zk_metrics::RequestTimer(op)};
  Future<T> f = call->promise.future();
  int rc = impl.withHandle([&](zhandle_t* zh) {
    if (watcher) call->watch = registerWatch(std::move(watcher), &impl, impl.handle->generation);
    return send(zh, call);
  });
  if (rc != ZOK) {
    if (call->watch != nullptr) dropWatch(call->watch);
    Promise<T> p = call->promise;
    delete call;
    p.set(tl::unexpected(toError(rc, path)));
  }
  return f;
}

// Completes a request from the C client's completion `data`: the value `make()` on success, else
// the error (a watch that was not set is forgotten).
template <class T, class Make>
void complete(const void* data, int rc, Make make) {
  std::unique_ptr<Call<T>> c(static_cast<Call<T>*>(const_cast<void*>(data)));
  c->timer.completed();
  if (rc == ZOK) {
    c->promise.set(make());
    return;
  }
  if (c->watch != nullptr) dropWatch(c->watch);
  c->promise.set(tl::unexpected(toError(rc, c->path)));
}

}  // namespace

Result<std::unique_ptr<ZkCoordination>> ZkCoordination::connect(ZkOptions options) {
  static std::once_flag once;
  std::call_once(once, [] { zoo_set_debug_level(ZOO_LOG_LEVEL_WARN); });
  auto impl = std::make_unique<Impl>(std::move(options));
  // Added to the first handle and to every one that replaces it, right after zookeeper_init and
  // before any request: the client sends its credentials first on every (re)connection.
  if (!impl->options.digest_auth.empty()) {
    impl->auths.emplace_back("digest", impl->options.digest_auth);
  }
  {
    // The client thread may report "connected" before zookeeper_init returns; holding the lock
    // until the handle is published makes that event wait instead of being dropped as one of
    // a replaced session (which left the session connected but reported as connecting).
    std::lock_guard lock(impl->mu);
    auto h = impl->open(1);
    if (!h) return tl::unexpected(h.error());
    impl->handle = std::move(*h);
  }
  return std::unique_ptr<ZkCoordination>(new ZkCoordination(std::move(impl)));
}

ZkCoordination::ZkCoordination(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

ZkCoordination::~ZkCoordination() {
  close();
  impl_->manager.stop();
}

Future<std::string> ZkCoordination::create(CreateOp op) {
  if (op.data.size() + op.path.size() > impl_->options.max_request_bytes) {
    return Future<std::string>::ready(tl::unexpected(impl_->sizeError(op.data.size())));
  }
  // A sequential create may name a bare prefix ("/parent/"): check the name it will get.
  bool sequential =
      op.mode == CreateMode::kPersistentSequential || op.mode == CreateMode::kEphemeralSequential;
  CAcl acl(op.acl, !impl_->options.digest_auth.empty());
  zk_metrics::countWritten(op.data.size());
  return issue<std::string>(
      *impl_, "create", op.path, sequential ? op.path + "0000000000" : op.path, nullptr,
      [&](zhandle_t* zh, void* call) {
        return zoo_acreate(
            zh, op.path.c_str(), op.data.data(), static_cast<int>(op.data.size()), acl.get(),
            toMode(op.mode),
            [](int rc, const char* value, const void* d) {
              complete<std::string>(d, rc,
                                    [&] { return std::string(value != nullptr ? value : ""); });
            },
            call);
      });
}

Future<void> ZkCoordination::remove(const std::string& path, int32_t version) {
  return issue<void>(*impl_, "delete", path, path, nullptr, [&](zhandle_t* zh, void* call) {
    return zoo_adelete(
        zh, path.c_str(), version,
        [](int rc, const void* d) { complete<void>(d, rc, [] { return Result<void>(); }); }, call);
  });
}

Future<Stat> ZkCoordination::set(const std::string& path, std::string data, int32_t version) {
  if (data.size() + path.size() > impl_->options.max_request_bytes) {
    return Future<Stat>::ready(tl::unexpected(impl_->sizeError(data.size())));
  }
  zk_metrics::countWritten(data.size());
  return issue<Stat>(*impl_, "set", path, path, nullptr, [&](zhandle_t* zh, void* call) {
    return zoo_aset(
        zh, path.c_str(), data.data(), static_cast<int>(data.size()), version,
        [](int rc, const ::Stat* stat, const void* d) {
          complete<Stat>(d, rc, [&] { return toStat(stat); });
        },
        call);
  });
}

Future<Node> ZkCoordination::get(const std::string& path, Watcher watcher) {
  return issue<Node>(
      *impl_, "get", path, path, std::move(watcher), [&](zhandle_t* zh, Call<Node>* call) {
        return zoo_awget(
            zh, path.c_str(), call->watch != nullptr ? &nodeWatcher : nullptr, call->watch,
            [](int rc, const char* value, int len, const ::Stat* stat, const void* d) {
              complete<Node>(d, rc, [&] {
                return Node{std::string(value != nullptr ? value : "",
                                        value != nullptr && len > 0 ? len : 0),
                            toStat(stat)};
              });
            },
            call);
      });
}

Future<std::optional<Stat>> ZkCoordination::exists(const std::string& path, Watcher watcher) {
  using T = std::optional<Stat>;
  return issue<T>(
      *impl_, "exists", path, path, std::move(watcher), [&](zhandle_t* zh, Call<T>* call) {
        return zoo_awexists(
            zh, path.c_str(), call->watch != nullptr ? &nodeWatcher : nullptr, call->watch,
            [](int rc, const ::Stat* stat, const void* d) {
              // A missing node is a value; its watch stays and fires when the node is created.
              complete<T>(d, rc == ZNONODE ? ZOK : rc,
                          [&] { return rc == ZNONODE ? T() : T(toStat(stat)); });
            },
            call);
      });
}

Future<std::vector<std::string>> ZkCoordination::children(const std::string& path,
                                                          Watcher watcher) {
  using T = std::vector<std::string>;
  return issue<T>(
      *impl_, "children", path, path, std::move(watcher), [&](zhandle_t* zh, Call<T>* call) {
        return zoo_awget_children(
            zh, path.c_str(), call->watch != nullptr ? &nodeWatcher : nullptr, call->watch,
            [](int rc, const struct String_vector* strings, const void* d) {
              complete<T>(d, rc, [&] {
                T out;
                if (strings != nullptr) {
                  out.reserve(strings->count);
                  for (int i = 0; i < strings->count; ++i) out.emplace_back(strings->data[i]);
                }
                return out;
              });
            },
            call);
      });
}

namespace {

// Everything a multi needs until its completion: the ops, their buffers and the results.
// The paths a multi hands zoo_amulti, each its own malloc'd copy. Why: when a sub-op's request
// cannot be built (the session turned expired under the call: ZINVALIDSTATE, reachable when this
// thread is preempted between sendMulti's state check and the build, as after a SIGCONT of the
// whole process), the 3.8.0 client's zoo_amulti skips building every later sub-op but still
// frees each one's `req.path`, an uninitialized stack slot that holds the previous sub-op's path
// pointer: it free()s paths it never allocated. Paths owned by std::string were then freed again
// by their owner ("double free", a node killed in the paused-node cluster test). With malloc'd
// copies that stray free() is a valid one, and after a failed zoo_amulti the copies are
// deliberately not freed again (a few hundred bytes leaked per such multi: session expiries only).
struct CPaths {
  std::vector<char*> paths;
  bool client_may_have_freed = false;
  CPaths() = default;
  CPaths(const CPaths&) = delete;
  CPaths& operator=(const CPaths&) = delete;
  ~CPaths() {
    if (client_may_have_freed) return;
    for (char* p : paths) std::free(p);
  }
  const char* add(const std::string& path) {
    paths.push_back(strdup(path.c_str()));
    return paths.back();
  }
};

struct MultiCall {
  Promise<std::vector<OpResult>> promise;
  CPaths c_paths;
  zk_metrics::RequestTimer timer{"multi"};
  std::vector<Op> ops;
  std::vector<std::unique_ptr<CAcl>> acls;
  std::vector<zoo_op_t> zops;
  std::vector<zoo_op_result_t> results;
  std::vector<std::vector<char>> path_buffers;
  std::vector<::Stat> stats;
};

void multiDone(int rc, const void* d) {
  std::unique_ptr<MultiCall> c(static_cast<MultiCall*>(const_cast<void*>(d)));
  c->timer.completed();
  if (rc == ZOK) {
    std::vector<OpResult> out(c->ops.size());
    for (size_t i = 0; i < c->ops.size(); ++i) {
      if (std::holds_alternative<CreateOp>(c->ops[i])) {
        out[i].path = std::string(c->path_buffers[i].data());
      } else if (std::holds_alternative<SetOp>(c->ops[i])) {
        out[i].stat = toStat(&c->stats[i]);
      }
    }
    c->promise.set(std::move(out));
    return;
  }
  // The failing op is the first whose own error is neither ok nor "rolled back".
  for (size_t i = 0; i < c->results.size(); ++i) {
    int err = c->results[i].err;
    if (err != ZOK && err != ZRUNTIMEINCONSISTENCY) {
      c->promise.set(tl::unexpected(
          Error(toCode(err), fmt::format("multi op {} ({}): zk rc {}", i, opPath(c->ops[i]), err),
                static_cast<int>(i))));
      return;
    }
  }
  c->promise.set(tl::unexpected(toError(rc, "multi")));
}

}  // namespace

Future<std::vector<OpResult>> ZkCoordination::multi(std::vector<Op> ops) {
  auto call = std::make_unique<MultiCall>();
  Future<std::vector<OpResult>> f = call->promise.future();
  if (ops.empty()) {
    call->promise.set(std::vector<OpResult>{});
    return f;
  }
  size_t bytes = 0;
  for (size_t i = 0; i < ops.size(); ++i) {
    const auto* create = std::get_if<CreateOp>(&ops[i]);
    bool sequential = create != nullptr && (create->mode == CreateMode::kPersistentSequential ||
                                            create->mode == CreateMode::kEphemeralSequential);
    if (badPath(sequential ? opPath(ops[i]) + "0000000000" : opPath(ops[i]))) {
      Error e = pathError(opPath(ops[i]));
      call->promise.set(tl::unexpected(Error(e.code(), e.detail(), static_cast<int>(i))));
      return f;
    }
    bytes += opBytes(ops[i]);
  }
  if (bytes > impl_->options.max_request_bytes) {
    call->promise.set(tl::unexpected(impl_->sizeError(bytes)));
    return f;
  }
  size_t written = 0;
  for (const auto& op : ops) {
    if (const auto* c = std::get_if<CreateOp>(&op)) written += c->data.size();
    if (const auto* s = std::get_if<SetOp>(&op)) written += s->data.size();
  }
  zk_metrics::countWritten(written);
  call->ops = std::move(ops);
  size_t n = call->ops.size();
  call->zops.resize(n);
  call->results.resize(n);
  call->path_buffers.resize(n);
  call->stats.resize(n);
  for (size_t i = 0; i < n; ++i) {
    std::visit(
        [&](const auto& o) {
          using T = std::decay_t<decltype(o)>;
          if constexpr (std::is_same_v<T, CreateOp>) {
            call->acls.push_back(
                std::make_unique<CAcl>(o.acl, !impl_->options.digest_auth.empty()));
            call->path_buffers[i].assign(o.path.size() + 32, '\0');
            zoo_create_op_init(&call->zops[i], call->c_paths.add(o.path), o.data.data(),
                               static_cast<int>(o.data.size()), call->acls.back()->get(),
                               toMode(o.mode), call->path_buffers[i].data(),
                               static_cast<int>(call->path_buffers[i].size()));
          } else if constexpr (std::is_same_v<T, DeleteOp>) {
            zoo_delete_op_init(&call->zops[i], call->c_paths.add(o.path), o.version);
          } else if constexpr (std::is_same_v<T, SetOp>) {
            zoo_set_op_init(&call->zops[i], call->c_paths.add(o.path), o.data.data(),
                            static_cast<int>(o.data.size()), o.version, &call->stats[i]);
          } else {
            zoo_check_op_init(&call->zops[i], call->c_paths.add(o.path), o.version);
          }
        },
        call->ops[i]);
  }
  MultiCall* raw = call.get();
  int rc = impl_->sendMulti(
      [raw, n](zhandle_t* zh) {
        int rc = zoo_amulti(zh, static_cast<int>(n), raw->zops.data(), raw->results.data(),
                            &multiDone, raw);
        if (rc != ZOK) raw->c_paths.client_may_have_freed = true;  // see CPaths
        return rc;
      },
      [raw](int error) {
        std::unique_ptr<MultiCall> c(raw);
        c->promise.set(tl::unexpected(toError(error, "multi")));
      });
  if (rc != ZOK) {
    call->promise.set(tl::unexpected(toError(rc, "multi")));
    return f;
  }
  call.release();  // owned by the completion now
  return f;
}

Future<void> ZkCoordination::sync(const std::string& path) {
  return issue<void>(*impl_, "sync", path, path, nullptr, [&](zhandle_t* zh, void* call) {
    return zoo_async(
        zh, path.c_str(),
        [](int rc, const char*, const void* d) {
          complete<void>(d, rc, [] { return Result<void>(); });
        },
        call);
  });
}

Future<void> ZkCoordination::addAuth(const std::string& scheme, const std::string& credential) {
  // The scheme stands in for a path in errors; "/" passes the path check.
  return issue<void>(
      *impl_, "auth", "auth " + scheme, "/", nullptr, [&](zhandle_t* zh, void* call) {
        impl_->auths.emplace_back(scheme, credential);  // re-applied to every later session
        return zoo_add_auth(
            zh, scheme.c_str(), credential.data(), static_cast<int>(credential.size()),
            [](int rc, const void* d) { complete<void>(d, rc, [] { return Result<void>(); }); },
            call);
      });
}

Future<Acl> ZkCoordination::getAcl(const std::string& path) {
  return issue<Acl>(*impl_, "other", path, path, nullptr, [&](zhandle_t* zh, void* call) {
    return zoo_aget_acl(
        zh, path.c_str(),
        [](int rc, struct ACL_vector* acl, ::Stat*, const void* d) {
          complete<Acl>(d, rc, [&] {
            Acl out;
            for (int32_t i = 0; acl != nullptr && i < acl->count; ++i) {
              out.push_back(
                  AclEntry{acl->data[i].perms, acl->data[i].id.scheme, acl->data[i].id.id});
            }
            return out;
          });
        },
        call);
  });
}

SessionEvent ZkCoordination::session() const {
  std::lock_guard lock(impl_->mu);
  return impl_->state;
}

uint64_t ZkCoordination::addSessionListener(SessionListener listener) {
  std::lock_guard lock(impl_->mu);
  uint64_t id = impl_->next_listener++;
  impl_->listeners.emplace(id, std::move(listener));
  return id;
}

void ZkCoordination::removeSessionListener(uint64_t id) {
  std::lock_guard lock(impl_->mu);
  impl_->listeners.erase(id);
}

void ZkCoordination::close() {
  std::unique_ptr<Handle> h;
  {
    std::lock_guard lock(impl_->mu);
    if (impl_->closed) return;
    impl_->closed = true;
    h = std::move(impl_->handle);
  }
  if (h) {
    zookeeper_close(h->zh);  // ends the session now: its ephemerals go at once
    dropWatchesOf(impl_.get(), h->generation);
  }
  impl_->releaseHeld();  // fails the multis still waiting for a connection
  SessionEvent event = session();
  event.state = SessionState::kClosed;
  impl_->publish(event);
}

bool ZkCoordination::waitConnected(std::chrono::milliseconds timeout) const {
  std::unique_lock lock(impl_->mu);
  return impl_->cv.wait_for(lock, timeout,
                            [&] { return impl_->state.state == SessionState::kConnected; });
}

Status ZkCoordination::expireSessionForTesting(std::chrono::milliseconds timeout) {
  // The server hands a session to whichever connection presented it last, so the victim's own
  // reconnect can win the race against the second handle: the second handle is then cut off
  // before its close reaches the server and the session lives on. So each round checks that the
  // victim really saw the expiry and tries again if not.
  auto deadline = std::chrono::steady_clock::now() + timeout;
  clientid_t id{};
  uint64_t generation = 0;
  {
    std::lock_guard lock(impl_->mu);
    if (impl_->closed || !impl_->handle) return fail(Code::kClosing, "closed");
    id = *zoo_client_id(impl_->handle->zh);
    generation = impl_->handle->generation;
  }
  auto expired = [&] {
    return impl_->state.generation != generation || impl_->state.state == SessionState::kExpired;
  };
  while (std::chrono::steady_clock::now() < deadline) {
    zhandle_t* other = zookeeper_init2(
        impl_->options.connect.c_str(), [](zhandle_t*, int, int, const char*, void*) {},
        static_cast<int>(impl_->options.session_timeout.count()), &id, nullptr, 0, &zkLog);
    if (other == nullptr) return fail(Code::kSystemError, "cannot open the second handle");
    while (zoo_state(other) != ZOO_CONNECTED_STATE && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    bool attached = zoo_state(other) == ZOO_CONNECTED_STATE;
    zookeeper_close(other);
    if (!attached) break;
    std::unique_lock lock(impl_->mu);
    auto round_end =
        std::min(deadline, std::chrono::steady_clock::now() + impl_->options.session_timeout);
    if (impl_->cv.wait_until(lock, round_end, expired)) return {};
    if (impl_->closed) return fail(Code::kClosing, "closed");
  }
  return fail(Code::kOperationTimeout, "the session did not expire");
}

}  // namespace drover::coord
