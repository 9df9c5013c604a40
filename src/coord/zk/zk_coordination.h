#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include "coord/coordination.h"

struct _zhandle;  // the C client's handle (zhandle_t)

namespace drover::coord {

struct ZkOptions {
  // "host:port,host:port,..." (no chroot: Drover roots its paths itself).
  std::string connect = "127.0.0.1:2181";
  // Requested session timeout; the server clamps it to [2, 20] x its tickTime.
  std::chrono::milliseconds session_timeout{4000};
  // Largest request we send. ZooKeeper drops the connection on a packet over its jute.maxbuffer
  // (1 MiB by default) instead of answering with an error, so oversized requests are refused
  // here with kBadArguments before they are sent.
  size_t max_request_bytes = 1024 * 1024 - 16 * 1024;
  // ZooKeeper digest credentials "user:password" (docs/SECURITY.md). When set, every session,
  // the first and each one built after an expiry, adds them with zoo_add_auth before it sends
  // any request, and a create whose ACL is empty gets ZOO_CREATOR_ALL_ACL (all rights to this
  // digest identity only) instead of the open ACL. Empty: no credentials, open znodes.
  std::string digest_auth = "";
  // Test hooks: the first runs right after the C client handle is created, before it is
  // published as the current session's, so a test can hold that window open; the second runs on
  // the client's thread for every session event, before the event takes any lock.
  std::function<void(_zhandle*)> after_handle_created_for_testing = nullptr;
  std::function<void(int state)> on_session_event_for_testing = nullptr;
};

// Coordination over the ZooKeeper C client (multi-threaded flavour). Callbacks, watches and
// session listeners run on the client's completion thread. On session expiry the handle is
// closed and a new one is built on a thread of this object's own (see Coordination).
class ZkCoordination final : public Coordination {
 public:
  // Starts connecting and returns at once (state kConnecting). Fails only for a connect string
  // the client cannot parse.
  static Result<std::unique_ptr<ZkCoordination>> connect(ZkOptions options);
  ~ZkCoordination() override;

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
  void removeSessionListener(uint64_t id) override;
  void close() override;

  // The ACL of `path` (kNoNode if it is missing). Not part of Coordination: only the node's
  // startup check of a protected tree needs it (docs/SECURITY.md).
  Future<Acl> getAcl(const std::string& path);

  // Blocks until the session is connected or `timeout` passes.
  bool waitConnected(std::chrono::milliseconds timeout) const;

  // Test hook for the fault "forced session expiry": opens a second handle with this session's
  // id and password and closes it, which makes the server end the session; this handle then sees
  // kExpired and rebuilds. Repeats until this handle has seen the expiry (the handle's own
  // reconnect can race the second handle and keep the session alive). Blocking.
  Status expireSessionForTesting(std::chrono::milliseconds timeout);

  struct Impl;

 private:
  explicit ZkCoordination(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace drover::coord
