// ZkCoordination's one-call requests (create, remove, set, get, exists, children, sync, addAuth,
// getAcl): each sent through `issue` and completed by `complete`.

#include <zookeeper/zookeeper.h>

#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "coord/zk/zk_coordination.h"
#include "coord/zk/zk_internal.h"
#include "coord/zk/zk_request_metrics.h"

namespace drover::coord {

using zk_detail::badPath;
using zk_detail::CAcl;
using zk_detail::dropWatch;
using zk_detail::nodeWatcher;
using zk_detail::pathError;
using zk_detail::registerWatch;
using zk_detail::toError;
using zk_detail::toMode;
using zk_detail::toStat;

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

}  // namespace drover::coord
