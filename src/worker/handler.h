#pragma once

// What a task handler sees and returns, and the registry of handlers by task type.

#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <vector>

#include "base/clock.h"
#include "tasks/payloads.h"

namespace drover::worker {

using Json = nlohmann::json;

// Why a run was asked to stop. The first cancel wins; later ones do not change the reason.
enum class CancelReason {
  kNone,       // not cancelled
  kCancelled,  // a client cancelled the task, or its assignment was taken away
  kTimedOut,   // the task's timeout passed
  kShutdown,   // the worker is stopping
};
std::string_view cancelReasonName(CancelReason reason);

// A cancellation flag shared by the runner (which sets it) and a handler (which polls or waits
// on it). Copies share one state. Thread-safe.
class CancelToken {
 public:
  CancelToken();

  bool cancelled() const { return reason() != CancelReason::kNone; }
  CancelReason reason() const;
  // Sets the reason unless already cancelled; returns true if this call cancelled the token.
  // kNone is ignored.
  bool cancel(CancelReason reason) const;
  // Waits up to `d`; returns early, with true, once the token is cancelled. False when the
  // whole duration passed without a cancel.
  bool waitFor(base::Duration d) const;

 private:
  struct State {
    mutable std::mutex mu;
    std::condition_variable cv;
    CancelReason reason = CancelReason::kNone;
  };
  std::shared_ptr<State> state_;
};

// One execution of a task, as given to its handler. A handler may read everything and must
// return promptly once `cancel` is cancelled (it is asked to stop; its result is then ignored
// or recorded as a failure by the runner).
struct TaskContext {
  std::string id;
  int attempt = 1;
  std::string worker;  // the id of the worker running it (its membership id)
  Json payload = Json::object();
  CancelToken cancel;
  // The task's timeout (zero: none). The runner sets `deadline` = start + timeout when the run
  // starts and cancels the token with kTimedOut once it passes.
  std::chrono::milliseconds timeout{0};
  std::optional<base::TimePoint> deadline;
};

// The outcome of one run. A failure may carry a detail (say the output of a command that exited
// non-zero) in `result`.
struct HandlerResult {
  bool ok = true;
  Json result;        // success: the task's result; failure: an optional detail (null if none)
  std::string error;  // failure: why (never empty for a failure)

  static HandlerResult success(Json result = nullptr) { return {true, std::move(result), {}}; }
  static HandlerResult failure(std::string error, Json detail = nullptr);
};

// Runs one task. May be called on any runner thread, concurrently with itself for other tasks.
// A handler that throws fails the task with the exception's message.
using Handler = std::function<HandlerResult(TaskContext&)>;

// Calls `handler`, turning any exception (and an empty handler) into a failure.
HandlerResult invokeHandler(const Handler& handler, TaskContext& ctx) noexcept;

// Task type name -> handler, and the type's payload validator. Thread-safe (a shared lock);
// normally filled once at startup and only read afterwards.
class HandlerRegistry {
 public:
  // Registers or replaces the handler of `type`, with the validator the API runs on every
  // payload of that type at submit (empty: any JSON is accepted). A payload the validator
  // refuses is a 400 naming the field, and nothing is written; a handler still gets only
  // payloads that passed it (tasks submitted through this node's API).
  void add(std::string type, Handler handler, tasks::PayloadValidator validate = {});
  // A copy of the handler of `type`; empty when there is none.
  Handler find(std::string_view type) const;
  bool has(std::string_view type) const;
  std::vector<std::string> types() const;
  // What the validator of `type` says of `payload`: nullopt when it passes, when the type has no
  // validator, or when the type is unknown (the API refuses unknown types before this). A
  // validator that throws refuses the payload with the exception's message.
  std::optional<tasks::ValidationError> validate(std::string_view type, const Json& payload) const;

 private:
  struct Entry {
    Handler handler;
    tasks::PayloadValidator validate;
  };
  mutable std::shared_mutex mu_;
  std::map<std::string, Entry, std::less<>> handlers_;
};

class ExecIsolation;  // worker/sandbox.h

// Limits of the built-in `exec` type.
struct ExecLimits {
  // Bytes of stdout and of stderr kept per run; more is read and discarded (and flagged).
  size_t max_output_bytes = 64 * 1024;
  // After a cancel or timeout: SIGTERM to the command's process group, SIGKILL after this.
  base::Duration kill_grace = std::chrono::seconds(2);
  // The node's exec policy, sandbox and cgroups (worker/sandbox.h). Null: the bare runner (the
  // command runs as this process, with its environment and no limits), for tests of the runner
  // itself; a node always sets it (app/node.cc).
  std::shared_ptr<const ExecIsolation> isolation;
};

// Registers the built-in types with their payload validators: noop, echo, sleep, fail, exec,
// container (the default engine; see
// builtin.cc and tasks/payloads.h for each contract).
void registerBuiltins(HandlerRegistry& registry, ExecLimits limits = {});

}  // namespace drover::worker
