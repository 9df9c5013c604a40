#include "coord/fake/fake_coordination.h"

#include <cstdio>
#include <cstdlib>

#include "base/clock.h"
#include "coord/paths.h"

namespace drover::coord {
namespace {

bool isSequential(CreateMode mode) {
  return mode == CreateMode::kPersistentSequential || mode == CreateMode::kEphemeralSequential;
}

bool isEphemeral(CreateMode mode) {
  return mode == CreateMode::kEphemeral || mode == CreateMode::kEphemeralSequential;
}

std::string sequenceSuffix(int32_t sequence) {
  char buf[16];
  std::snprintf(buf, sizeof(buf), "%010d", sequence);
  return buf;
}

tl::unexpected<Error> badPath(const std::string& path) {
  return fail(Code::kBadArguments, "invalid path '" + path + "'");
}

bool startsWith(const std::string& s, const std::string& prefix) {
  return s.compare(0, prefix.size(), prefix) == 0;
}

const std::string& pathOf(const Op& op) {
  return std::visit([](const auto& o) -> const std::string& { return o.path; }, op);
}

// Whether a queued fault or hook for (`want`, `prefix`) applies to a call of `kind` on `paths`:
// nullopt if not; else the index of the first path the prefix matched (-1 without a prefix).
std::optional<int> matchCall(OpKind want, const std::string& prefix, OpKind kind,
                             const std::vector<std::string>& paths) {
  if (want != OpKind::kAny && want != kind) return std::nullopt;
  if (prefix.empty()) return -1;
  for (size_t i = 0; i < paths.size(); ++i) {
    if (startsWith(paths[i], prefix)) return static_cast<int>(i);
  }
  return std::nullopt;
}

// The errors a single op of a multi fails with (the others are the session's or the client's).
bool isOpError(Code code) {
  switch (code) {
    case Code::kNoNode:
    case Code::kNodeExists:
    case Code::kBadVersion:
    case Code::kNotEmpty:
    case Code::kNoChildrenForEphemerals:
    case Code::kNoAuth:
    case Code::kInvalidAcl:
    case Code::kBadArguments:
      return true;
    default:
      return false;
  }
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// FakeServer

FakeServer::FakeServer() { nodes_.emplace("/", NodeRec{}); }

std::map<std::string, std::string> FakeServer::dump() const {
  std::lock_guard lock(mu_);
  std::map<std::string, std::string> out;
  for (const auto& [path, rec] : nodes_) {
    if (path != "/") out.emplace(path, rec.data);
  }
  return out;
}

std::optional<Node> FakeServer::peek(const std::string& path) const {
  std::lock_guard lock(mu_);
  auto it = nodes_.find(path);
  if (it == nodes_.end()) return std::nullopt;
  return Node{it->second.data, it->second.stat};
}

std::optional<Acl> FakeServer::aclOf(const std::string& path) const {
  std::lock_guard lock(mu_);
  auto it = nodes_.find(path);
  if (it == nodes_.end()) return std::nullopt;
  return it->second.acl;
}

size_t FakeServer::watchCount() const {
  std::lock_guard lock(mu_);
  return data_watches_.size() + child_watches_.size();
}

size_t FakeServer::nodeCount() const {
  std::lock_guard lock(mu_);
  return nodes_.size();
}

size_t FakeServer::sessionCount() const {
  std::lock_guard lock(mu_);
  return sessions_.size();
}

int64_t FakeServer::lastZxid() const {
  std::lock_guard lock(mu_);
  return zxid_;
}

int64_t FakeServer::openSession(WatchSink sink) {
  std::lock_guard lock(mu_);
  int64_t id = next_session_++;
  sessions_.emplace(id, SessionRec{std::move(sink), {}});
  return id;
}

void FakeServer::endSession(int64_t session) {
  std::lock_guard lock(mu_);
  if (sessions_.erase(session) == 0) return;
  for (auto* watches : {&data_watches_, &child_watches_}) {
    std::erase_if(*watches, [&](const auto& entry) { return entry.second.session == session; });
  }
  // ZooKeeper closes a session in one transaction that deletes all its ephemerals.
  Txn txn{zxid_ + 1, session, {}, {}};
  std::vector<std::string> ephemerals;
  for (const auto& [path, rec] : nodes_) {
    if (rec.stat.ephemeral_owner == session) ephemerals.push_back(path);
  }
  if (ephemerals.empty()) return;
  for (const auto& path : ephemerals) eraseNode(path, txn);
  zxid_ = txn.zxid;
  commit(txn);
}

void FakeServer::addAuth(int64_t session, std::string scheme, std::string credential) {
  std::lock_guard lock(mu_);
  auto it = sessions_.find(session);
  if (it != sessions_.end())
    it->second.auths.emplace_back(std::move(scheme), std::move(credential));
}

Status FakeServer::checkAcl(int64_t session, const Acl& acl) const {
  for (const auto& entry : acl) {
    if ((entry.perms & ~AclEntry::kAll) != 0) return fail(Code::kInvalidAcl, "bad permissions");
    if (entry.scheme == "world") {
      if (entry.id != "anyone") return fail(Code::kInvalidAcl, "world scheme needs id 'anyone'");
    } else if (entry.scheme == "auth") {
      auto it = sessions_.find(session);
      if (it == sessions_.end() || it->second.auths.empty()) {
        return fail(Code::kInvalidAcl, "auth scheme without credentials");
      }
    } else if (entry.scheme == "digest") {
      if (entry.id.find(':') == std::string::npos) {
        return fail(Code::kInvalidAcl, "digest id must be user:hash");
      }
    } else if (entry.scheme != "ip" && entry.scheme != "sasl" && entry.scheme != "x509") {
      return fail(Code::kInvalidAcl, "unknown scheme '" + entry.scheme + "'");
    }
  }
  return {};
}

Result<OpResult> FakeServer::applyCreate(const CreateOp& op, Txn& txn) {
  const bool sequential = isSequential(op.mode);
  // A sequential create may end in a bare prefix ("/queue/" or "/queue/item-").
  const std::string checked = sequential ? op.path + "0" : op.path;
  if (!isValidPath(checked)) return badPath(op.path);
  if (checked == "/") return fail(Code::kNodeExists, "/");
  if (op.data.size() > kMaxDataBytes) return fail(Code::kBadArguments, "value over 1 MiB");
  if (auto st = checkAcl(txn.session, op.acl); !st) return tl::unexpected(st.error());
  const std::string parent = parentOf(checked);
  auto pit = nodes_.find(parent);
  if (pit == nodes_.end()) return fail(Code::kNoNode, parent);
  NodeRec& parent_rec = pit->second;
  std::string path = op.path;
  if (sequential) path += sequenceSuffix(parent_rec.sequence);
  if (nodes_.count(path) != 0) return fail(Code::kNodeExists, path);
  if (parent_rec.stat.ephemeral_owner != 0) return fail(Code::kNoChildrenForEphemerals, parent);

  NodeRec rec;
  rec.data = op.data;
  rec.acl = op.acl;
  rec.container = op.mode == CreateMode::kContainer;
  const int64_t now = base::wallMillis();
  rec.stat.czxid = rec.stat.mzxid = rec.stat.pzxid = txn.zxid;
  rec.stat.ctime_ms = rec.stat.mtime_ms = now;
  rec.stat.data_length = static_cast<int32_t>(op.data.size());
  if (isEphemeral(op.mode)) rec.stat.ephemeral_owner = txn.session;

  parent_rec.sequence++;
  parent_rec.stat.cversion++;
  parent_rec.stat.pzxid = txn.zxid;
  parent_rec.stat.num_children++;
  parent_rec.children.emplace(baseName(path));
  Stat stat = rec.stat;
  nodes_.emplace(path, std::move(rec));
  txn.triggers.emplace_back(path, EventType::kCreated);
  txn.triggers.emplace_back(parent, EventType::kChildrenChanged);
  return OpResult{Code::kOk, path, stat};
}

Result<OpResult> FakeServer::applyDelete(const DeleteOp& op, Txn& txn) {
  if (!isValidPath(op.path)) return badPath(op.path);
  if (op.path == "/") return fail(Code::kBadArguments, "cannot delete the root");
  auto it = nodes_.find(op.path);
  if (it == nodes_.end()) return fail(Code::kNoNode, op.path);
  if (op.version != kAnyVersion && op.version != it->second.stat.version) {
    return fail(Code::kBadVersion, op.path);
  }
  if (!it->second.children.empty()) return fail(Code::kNotEmpty, op.path);
  eraseNode(op.path, txn);
  return OpResult{Code::kOk, {}, {}};
}

Result<OpResult> FakeServer::applySet(const SetOp& op, Txn& txn) {
  if (!isValidPath(op.path)) return badPath(op.path);
  if (op.data.size() > kMaxDataBytes) return fail(Code::kBadArguments, "value over 1 MiB");
  auto it = nodes_.find(op.path);
  if (it == nodes_.end()) return fail(Code::kNoNode, op.path);
  Stat& stat = it->second.stat;
  if (op.version != kAnyVersion && op.version != stat.version) {
    return fail(Code::kBadVersion, op.path);
  }
  it->second.data = op.data;
  stat.version++;
  stat.mzxid = txn.zxid;
  stat.mtime_ms = base::wallMillis();
  stat.data_length = static_cast<int32_t>(op.data.size());
  txn.triggers.emplace_back(op.path, EventType::kDataChanged);
  return OpResult{Code::kOk, {}, stat};
}

Result<OpResult> FakeServer::applyCheck(const CheckOp& op) const {
  if (!isValidPath(op.path)) return badPath(op.path);
  auto it = nodes_.find(op.path);
  if (it == nodes_.end()) return fail(Code::kNoNode, op.path);
  if (op.version != kAnyVersion && op.version != it->second.stat.version) {
    return fail(Code::kBadVersion, op.path);
  }
  return OpResult{Code::kOk, {}, {}};
}

void FakeServer::eraseNode(const std::string& path, Txn& txn) {
  const std::string parent = parentOf(path);
  NodeRec& parent_rec = nodes_.at(parent);
  parent_rec.stat.cversion++;
  parent_rec.stat.pzxid = txn.zxid;
  parent_rec.stat.num_children--;
  parent_rec.children.erase(std::string(baseName(path)));
  nodes_.erase(path);
  txn.triggers.emplace_back(path, EventType::kDeleted);
  txn.triggers.emplace_back(parent, EventType::kChildrenChanged);
  txn.touched_parents.push_back(parent);
}

void FakeServer::commit(Txn& txn) {
  // Containers emptied by this transaction go now, each in a transaction of its own. The list
  // grows while we walk it, so a chain of containers empties bottom-up.
  for (size_t i = 0; i < txn.touched_parents.size(); ++i) {
    const std::string path = txn.touched_parents[i];
    auto it = nodes_.find(path);
    if (it == nodes_.end() || !it->second.container) continue;
    if (it->second.stat.num_children != 0 || it->second.stat.cversion == 0) continue;
    txn.zxid = ++zxid_;
    eraseNode(path, txn);
  }
  for (const auto& [path, type] : txn.triggers) fire(path, type);
}

void FakeServer::fire(const std::string& path, EventType type) {
  std::vector<WatchRec> fired;
  auto take = [&](std::multimap<std::string, WatchRec>& watches) {
    auto [first, last] = watches.equal_range(path);
    for (auto it = first; it != last; ++it) fired.push_back(std::move(it->second));
    watches.erase(first, last);
  };
  switch (type) {
    case EventType::kCreated:
    case EventType::kDataChanged:
      take(data_watches_);
      break;
    case EventType::kDeleted:
      take(data_watches_);
      take(child_watches_);
      break;
    case EventType::kChildrenChanged:
      take(child_watches_);
      break;
  }
  for (auto& watch : fired) {
    auto it = sessions_.find(watch.session);
    if (it != sessions_.end())
      it->second.sink(watch.session, WatchEvent{type, path}, watch.watcher);
  }
}

void FakeServer::addWatch(WatchKind kind, const std::string& path, int64_t session,
                          Watcher watcher) {
  if (!watcher) return;
  auto& watches = kind == WatchKind::kData ? data_watches_ : child_watches_;
  watches.emplace(path, WatchRec{session, std::move(watcher)});
}

Result<std::string> FakeServer::create(int64_t session, const CreateOp& op) {
  std::lock_guard lock(mu_);
  Txn txn{zxid_ + 1, session, {}, {}};
  auto result = applyCreate(op, txn);
  if (!result) return tl::unexpected(result.error());
  zxid_ = txn.zxid;
  commit(txn);
  return result->path;
}

Status FakeServer::remove(int64_t session, const std::string& path, int32_t version) {
  std::lock_guard lock(mu_);
  Txn txn{zxid_ + 1, session, {}, {}};
  auto result = applyDelete(DeleteOp{path, version}, txn);
  if (!result) return tl::unexpected(result.error());
  zxid_ = txn.zxid;
  commit(txn);
  return {};
}

Result<Stat> FakeServer::set(int64_t session, const std::string& path, std::string data,
                             int32_t version) {
  std::lock_guard lock(mu_);
  Txn txn{zxid_ + 1, session, {}, {}};
  auto result = applySet(SetOp{path, std::move(data), version}, txn);
  if (!result) return tl::unexpected(result.error());
  zxid_ = txn.zxid;
  commit(txn);
  return result->stat;
}

Result<Node> FakeServer::get(int64_t session, const std::string& path, Watcher watcher) {
  std::lock_guard lock(mu_);
  if (!isValidPath(path)) return badPath(path);
  auto it = nodes_.find(path);
  if (it == nodes_.end()) return fail(Code::kNoNode, path);  // and no watch, as in ZooKeeper
  addWatch(WatchKind::kData, path, session, std::move(watcher));
  return Node{it->second.data, it->second.stat};
}

Result<std::optional<Stat>> FakeServer::exists(int64_t session, const std::string& path,
                                               Watcher watcher) {
  std::lock_guard lock(mu_);
  if (!isValidPath(path)) return badPath(path);
  addWatch(WatchKind::kData, path, session, std::move(watcher));
  auto it = nodes_.find(path);
  if (it == nodes_.end()) return std::optional<Stat>();
  return std::optional<Stat>(it->second.stat);
}

Result<std::vector<std::string>> FakeServer::children(int64_t session, const std::string& path,
                                                      Watcher watcher) {
  std::lock_guard lock(mu_);
  if (!isValidPath(path)) return badPath(path);
  auto it = nodes_.find(path);
  if (it == nodes_.end()) return fail(Code::kNoNode, path);
  addWatch(WatchKind::kChild, path, session, std::move(watcher));
  return std::vector<std::string>(it->second.children.begin(), it->second.children.end());
}

Result<std::vector<OpResult>> FakeServer::multi(int64_t session, const std::vector<Op>& ops) {
  std::lock_guard lock(mu_);
  std::vector<OpResult> results;
  if (ops.empty()) return results;
  // All or nothing: work on the live tree and put the copy back if an op fails.
  auto saved = nodes_;
  Txn txn{zxid_ + 1, session, {}, {}};
  for (size_t i = 0; i < ops.size(); ++i) {
    Result<OpResult> result = std::visit(
        [&](const auto& op) -> Result<OpResult> {
          using T = std::decay_t<decltype(op)>;
          if constexpr (std::is_same_v<T, CreateOp>) return applyCreate(op, txn);
          if constexpr (std::is_same_v<T, DeleteOp>) return applyDelete(op, txn);
          if constexpr (std::is_same_v<T, SetOp>) return applySet(op, txn);
          if constexpr (std::is_same_v<T, CheckOp>) return applyCheck(op);
        },
        ops[i]);
    if (!result) {
      nodes_ = std::move(saved);
      const Error& error = result.error();
      return tl::unexpected(Error(error.code(), error.detail(), static_cast<int>(i)));
    }
    results.push_back(std::move(*result));
  }
  zxid_ = txn.zxid;
  commit(txn);
  return results;
}

Status FakeServer::sync(int64_t session, const std::string& path) {
  if (!isValidPath(path)) return badPath(path);
  return {};  // one copy of the tree: every read is already up to date
}

// ---------------------------------------------------------------------------------------------
// FakeCoordination::EventThread

FakeCoordination::EventThread::EventThread() : thread_([this] { run(); }) {}

FakeCoordination::EventThread::~EventThread() { drainAndStop(); }

void FakeCoordination::EventThread::post(std::function<void()> task) {
  {
    std::lock_guard lock(mu_);
    if (stopping_) return;
    queue_.push_back(std::move(task));
  }
  cv_.notify_one();
}

void FakeCoordination::EventThread::drainAndStop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_one();
  if (!thread_.joinable()) return;
  if (isCurrent()) {
    std::fprintf(stderr, "FakeCoordination destroyed from its own event thread\n");
    std::abort();
  }
  thread_.join();
}

void FakeCoordination::EventThread::run() {
  std::unique_lock lock(mu_);
  while (true) {
    cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
    if (queue_.empty()) return;  // stopping, and everything posted before has run
    auto task = std::move(queue_.front());
    queue_.pop_front();
    lock.unlock();
    task();
    lock.lock();
  }
}

// ---------------------------------------------------------------------------------------------
// FakeCoordination

FakeCoordination::FakeCoordination(std::shared_ptr<FakeServer> server,
                                   std::chrono::milliseconds session_timeout)
    : server_(std::move(server)), timeout_(session_timeout) {
  std::lock_guard lock(mu_);
  openSessionLocked();
  // No listener can exist yet, so there is nobody to tell; the event thread just starts there.
  delivered_state_ = SessionState::kConnected;
  delivered_session_ = session_id_;
}

FakeCoordination::~FakeCoordination() {
  close();
  events_.drainAndStop();
}

void FakeCoordination::openSessionLocked() {
  session_id_ = server_->openSession([this](int64_t session, WatchEvent event, Watcher watcher) {
    events_.post([this, session, event = std::move(event), watcher = std::move(watcher)] {
      deliverWatch(session, event, watcher);
    });
  });
  for (const auto& [scheme, credential] : auths_) server_->addAuth(session_id_, scheme, credential);
  generation_++;
  state_ = SessionState::kConnected;
}

void FakeCoordination::postSessionEvent(SessionState state) {
  SessionEvent event{state, session_id_, generation_, timeout_};
  events_.post([this, event] { deliverSessionEvent(event); });
}

void FakeCoordination::deliverSessionEvent(const SessionEvent& event) {
  delivered_state_ = event.state;
  delivered_session_ = event.session_id;
  if (event.state == SessionState::kExpired || event.state == SessionState::kClosed) {
    held_.clear();
  }
  std::vector<uint64_t> ids;
  {
    std::lock_guard lock(mu_);
    for (const auto& entry : listeners_) ids.push_back(entry.first);
  }
  for (uint64_t id : ids) {
    SessionListener listener;
    {
      std::lock_guard lock(mu_);
      auto it = listeners_.find(id);
      if (it == listeners_.end()) continue;
      listener = it->second;
    }
    listener(event);
  }
  if (event.state == SessionState::kConnected) {
    auto held = std::move(held_);
    held_.clear();
    for (const auto& [watch_event, watcher] : held) watcher(watch_event);
  }
}

void FakeCoordination::deliverWatch(int64_t session, const WatchEvent& event,
                                    const Watcher& watcher) {
  if (session != delivered_session_) return;  // an event of a session that is gone
  if (delivered_state_ == SessionState::kConnected) {
    watcher(event);
  } else if (delivered_state_ == SessionState::kDisconnected) {
    held_.emplace_back(event, watcher);
  }
}

std::optional<Error> FakeCoordination::admit(OpKind kind, const std::vector<std::string>& paths,
                                             std::optional<Error>& after) {
  calls_[kind]++;
  calls_[OpKind::kAny]++;
  switch (state_) {
    case SessionState::kConnected:
      break;
    case SessionState::kDisconnected:
      return Error(Code::kConnectionLoss, "fake: disconnected");
    case SessionState::kConnecting:
    case SessionState::kExpired:
      return Error(Code::kSessionExpired, "fake: session expired");
    case SessionState::kClosed:
      return Error(Code::kClosing, "fake: closed");
  }
  for (auto it = faults_.begin(); it != faults_.end(); ++it) {
    std::optional<int> matched = matchCall(it->kind, it->prefix, kind, paths);
    if (!matched) continue;
    const int failed_op = kind == OpKind::kMulti && isOpError(it->code) ? *matched : -1;
    Error error(it->code, "fake: injected fault", failed_op);
    FaultMode mode = it->mode;
    faults_.erase(it);
    if (mode == FaultMode::kBeforeApply) return error;
    after = error;
    break;
  }
  return std::nullopt;
}

std::function<void()> FakeCoordination::takeHook(OpKind kind,
                                                 const std::vector<std::string>& paths) {
  std::lock_guard lock(mu_);
  if (state_ != SessionState::kConnected) return {};
  for (auto it = hooks_.begin(); it != hooks_.end(); ++it) {
    if (!matchCall(it->kind, it->prefix, kind, paths)) continue;
    auto action = std::move(it->action);
    hooks_.erase(it);
    ++hooks_running_;  // still pending until it has run (see run())
    return action;
  }
  return {};
}

template <class T, class Fn>
Future<T> FakeCoordination::run(OpKind kind, std::vector<std::string> paths, Fn&& apply) {
  // Outside mu_: the action may call this session too.
  if (auto hook = takeHook(kind, paths)) {
    hook();
    std::lock_guard lock(mu_);
    --hooks_running_;
  }
  std::lock_guard lock(mu_);
  std::optional<Error> after;
  if (auto error = admit(kind, paths, after)) return Future<T>::ready(tl::unexpected(*error));
  Result<T> result = apply(session_id_);
  if (after) return Future<T>::ready(tl::unexpected(*after));
  return Future<T>::ready(std::move(result));
}

Future<std::string> FakeCoordination::create(CreateOp op) {
  return run<std::string>(OpKind::kCreate, {op.path},
                          [&](int64_t session) { return server_->create(session, op); });
}

Future<void> FakeCoordination::remove(const std::string& path, int32_t version) {
  return run<void>(OpKind::kRemove, {path},
                   [&](int64_t session) { return server_->remove(session, path, version); });
}

Future<Stat> FakeCoordination::set(const std::string& path, std::string data, int32_t version) {
  return run<Stat>(OpKind::kSet, {path}, [&](int64_t session) {
    return server_->set(session, path, std::move(data), version);
  });
}

Future<Node> FakeCoordination::get(const std::string& path, Watcher watcher) {
  return run<Node>(OpKind::kGet, {path}, [&](int64_t session) {
    return server_->get(session, path, std::move(watcher));
  });
}

Future<std::optional<Stat>> FakeCoordination::exists(const std::string& path, Watcher watcher) {
  return run<std::optional<Stat>>(OpKind::kExists, {path}, [&](int64_t session) {
    return server_->exists(session, path, std::move(watcher));
  });
}

Future<std::vector<std::string>> FakeCoordination::children(const std::string& path,
                                                            Watcher watcher) {
  return run<std::vector<std::string>>(OpKind::kChildren, {path}, [&](int64_t session) {
    return server_->children(session, path, std::move(watcher));
  });
}

Future<std::vector<OpResult>> FakeCoordination::multi(std::vector<Op> ops) {
  std::vector<std::string> paths;
  for (const auto& op : ops) paths.push_back(pathOf(op));
  return run<std::vector<OpResult>>(OpKind::kMulti, std::move(paths),
                                    [&](int64_t session) { return server_->multi(session, ops); });
}

Future<void> FakeCoordination::sync(const std::string& path) {
  return run<void>(OpKind::kSync, {path},
                   [&](int64_t session) { return server_->sync(session, path); });
}

Future<void> FakeCoordination::addAuth(const std::string& scheme, const std::string& credential) {
  std::lock_guard lock(mu_);
  calls_[OpKind::kAny]++;
  switch (state_) {
    case SessionState::kConnected:
    case SessionState::kDisconnected:  // kept and sent on reconnect, like the real client
      break;
    case SessionState::kConnecting:
    case SessionState::kExpired:
      return Future<void>::ready(fail(Code::kSessionExpired, "fake: session expired"));
    case SessionState::kClosed:
      return Future<void>::ready(fail(Code::kClosing, "fake: closed"));
  }
  auths_.emplace_back(scheme, credential);
  server_->addAuth(session_id_, scheme, credential);
  return Future<void>::ready({});
}

SessionEvent FakeCoordination::session() const {
  std::lock_guard lock(mu_);
  return SessionEvent{state_, session_id_, generation_, timeout_};
}

uint64_t FakeCoordination::addSessionListener(SessionListener listener) {
  std::lock_guard lock(mu_);
  uint64_t id = next_listener_++;
  listeners_.emplace(id, std::move(listener));
  return id;
}

void FakeCoordination::removeSessionListener(uint64_t id) {
  std::lock_guard lock(mu_);
  listeners_.erase(id);
}

void FakeCoordination::close() {
  std::lock_guard lock(mu_);
  if (state_ == SessionState::kClosed) return;
  server_->endSession(session_id_);  // a no-op when the session already expired
  state_ = SessionState::kClosed;
  postSessionEvent(SessionState::kClosed);
}

void FakeCoordination::failNext(OpKind kind, Code code, FaultMode mode) {
  failNextOn(kind, {}, code, mode);
}

void FakeCoordination::failNextOn(OpKind kind, std::string path_prefix, Code code, FaultMode mode) {
  std::lock_guard lock(mu_);
  faults_.push_back(Fault{kind, std::move(path_prefix), code, mode});
}

void FakeCoordination::beforeNextOn(OpKind kind, std::string path_prefix,
                                    std::function<void()> action) {
  std::lock_guard lock(mu_);
  hooks_.push_back(Hook{kind, std::move(path_prefix), std::move(action)});
}

size_t FakeCoordination::pendingFaults() const {
  std::lock_guard lock(mu_);
  return faults_.size() + hooks_.size() + hooks_running_;
}

void FakeCoordination::disconnect() {
  std::lock_guard lock(mu_);
  if (state_ != SessionState::kConnected) return;
  state_ = SessionState::kDisconnected;
  postSessionEvent(SessionState::kDisconnected);
}

void FakeCoordination::reconnect() {
  std::lock_guard lock(mu_);
  if (state_ != SessionState::kDisconnected) return;
  state_ = SessionState::kConnected;
  postSessionEvent(SessionState::kConnected);
}

void FakeCoordination::expireSession(bool rebuild) {
  std::lock_guard lock(mu_);
  if (state_ == SessionState::kClosed) return;
  if (state_ != SessionState::kExpired) {
    server_->endSession(session_id_);
    state_ = SessionState::kExpired;
    postSessionEvent(SessionState::kExpired);
  }
  if (rebuild) {
    openSessionLocked();
    postSessionEvent(SessionState::kConnected);
  }
}

void FakeCoordination::rebuildSession() {
  std::lock_guard lock(mu_);
  if (state_ != SessionState::kExpired) return;
  openSessionLocked();
  postSessionEvent(SessionState::kConnected);
}

size_t FakeCoordination::callCount(OpKind kind) const {
  std::lock_guard lock(mu_);
  auto it = calls_.find(kind);
  return it == calls_.end() ? 0 : it->second;
}

std::vector<std::pair<std::string, std::string>> FakeCoordination::auths() const {
  std::lock_guard lock(mu_);
  return auths_;
}

}  // namespace drover::coord
