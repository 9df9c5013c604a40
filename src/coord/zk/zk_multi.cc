// ZkCoordination::multi: the ops in the C client's layout, the copies of their paths (CPaths) and
// the completion. It reaches the client through Impl::sendMulti (zk_session.cc).

#include <fmt/format.h>
#include <zookeeper/zookeeper.h>

#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "coord/zk/zk_coordination.h"
#include "coord/zk/zk_errors.h"
#include "coord/zk/zk_internal.h"
#include "coord/zk/zk_request_metrics.h"

namespace drover::coord {

using zk_detail::badPath;
using zk_detail::CAcl;
using zk_detail::opPath;
using zk_detail::pathError;
using zk_detail::toError;
using zk_detail::toMode;
using zk_detail::toStat;

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

}  // namespace drover::coord
