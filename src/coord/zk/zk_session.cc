// ZkCoordination's session and handle manager: ZkCoordination::Impl's member functions (the
// session watcher, the rebuild after an expiry, the multis held until their session is
// connected), connect, the session's state and listeners, close and the forced expiry for tests.

#include <spdlog/spdlog.h>
#include <zookeeper/zookeeper.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

#include "coord/zk/zk_coordination.h"
#include "coord/zk/zk_internal.h"

namespace drover::coord {

using zk_detail::dropWatchesOf;

namespace {

void zkLog(const char* message) { spdlog::debug("zookeeper client: {}", message); }

}  // namespace

// Called with `mu` held, so session events of the new handle wait until it is published.
Result<std::unique_ptr<Handle>> ZkCoordination::Impl::open(uint64_t generation) {
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
void ZkCoordination::Impl::publish(const SessionEvent& event) {
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

void ZkCoordination::Impl::onSession(Handle* h, int zstate) {
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
int ZkCoordination::Impl::sendMulti(std::function<int(zhandle_t*)> send,
                                    std::function<void(int)> fail) {
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
void ZkCoordination::Impl::releaseHeld() {
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
void ZkCoordination::Impl::dropHeld(uint64_t id) {
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
void ZkCoordination::Impl::replace(uint64_t gen) {
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

void ZkCoordination::Impl::sessionWatcher(zhandle_t*, int type, int zstate, const char*,
                                          void* ctx) {
  if (type != ZOO_SESSION_EVENT) return;
  auto* h = static_cast<Handle*>(ctx);
  if (h->impl->options.on_session_event_for_testing) {
    h->impl->options.on_session_event_for_testing(zstate);
  }
  h->impl->onSession(h, zstate);
}

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
