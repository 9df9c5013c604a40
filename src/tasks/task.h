#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <tl/expected.hpp>
#include <utility>
#include <vector>

namespace drover::tasks {

using Json = nlohmann::json;

// The task life cycle (contract): [waiting ->] pending -> assigned -> running -> succeeded |
// failed | cancelled; a retry goes back to pending with attempts + 1. `waiting` (last, so the
// older states keep their numbers) is a task not due yet: its `run_at` is ahead (protocol 2).
enum class State { kPending, kAssigned, kRunning, kSucceeded, kFailed, kCancelled, kWaiting };

std::string_view stateName(State state);
std::optional<State> parseState(std::string_view name);
inline bool isTerminal(State s) {
  return s == State::kSucceeded || s == State::kFailed || s == State::kCancelled;
}

// What a client asked for. Immutable once accepted; two submissions with one id are the same
// task only if their specs are equal.
// A task's own retry delays (protocol 2): attempt n waits min(base * 2^(n-1), cap) seconds,
// less up to `jitter` of it at random. Unset: the worker's retry_backoff.
struct RetryPolicy {
  double backoff_base_s = 1;  // (0, 86400]
  double backoff_cap_s = 60;  // [backoff_base_s, 86400]
  double jitter = 0;          // [0, 1]
  bool operator==(const RetryPolicy&) const = default;
};

struct TaskSpec {
  std::string id;
  std::string type;
  Json payload = Json::object();
  int priority = 5;      // 0..9, higher runs first
  int max_attempts = 3;  // 1..100
  double timeout_s = 0;  // 0 = no timeout; else (0, 86400]
  // Routing (docs/ROUTING.md): only a worker that serves `queue`, has every one of `labels`
  // (sorted, no duplicates) and runs `type` may take the task.
  std::string queue = "default";
  std::vector<std::string> labels{};
  std::string callback_url{};  // "" = none; else POSTed the task once terminal (callback_url.h)
  std::optional<RetryPolicy> retry{};  // "retry" on submit (protocol 2 only)
  // Wall-clock ms before which the task must not start (0 = none): `run_at`, or `delay_s` added
  // to the submit time. Protocol 2 only; the first submission's time stands (sameTask()).
  int64_t run_at = 0;
  // Ids of tasks that must succeed first (tasks/dag.h: "#N" names the N-th task of the same batch).
  std::vector<std::string> depends_on{};

  bool operator==(const TaskSpec&) const = default;
};

// One attempt's end as a task's history shows it (protocol 2: an outcome in a result record).
// `state` is the attempt's outcome: pending = it was put back for another attempt (or a retry
// re-opened the task), else the terminal state it ended in.
struct AttemptRecord {
  int attempt = 0;
  std::string worker;
  int64_t started_at = 0;
  int64_t finished_at = 0;
  State state = State::kPending;
  std::string error;
  bool operator==(const AttemptRecord&) const = default;
};
// GET shows at most this many attempts, the latest last.
inline constexpr size_t kHistoryShown = 10;
// Whether two submissions with one id are the same task: equal specs but for `run_at` (a client
// retrying a `delay_s` submit asks for a later time; the first submission's time stands).
bool sameTask(const TaskSpec& a, const TaskSpec& b);

// The most entries one task's depends_on may hold (tasks::kMaxDependencies in tasks/dag.h).
inline constexpr size_t kMaxDependsOn = 100;

// The most a task may be delayed: a year.
inline constexpr int64_t kMaxDelayMs = int64_t{366} * 24 * 3600 * 1000;

// The recorded state of a task: /status/{id}.
struct TaskStatus {
  TaskSpec spec;
  State state = State::kPending;
  int attempts = 0;          // the attempt number of the current or last execution (0: never ran)
  std::string worker;        // the worker that holds or held it
  Json result;               // succeeded: the result; failed: the handler's detail (exec output)
  std::string error;         // why the last attempt failed ("" if none)
  int64_t submitted_at = 0;  // wall-clock ms, for display only
  int64_t started_at = 0;
  int64_t finished_at = 0;
  std::vector<AttemptRecord> history{};  // protocol 2: the last kHistoryShown attempts' ends
  // Protocol 2, a task with depends_on not yet released: the ids of its dependencies that have
  // not succeeded yet (GET shows it `waiting`).
  std::vector<std::string> waiting_for{};
};

// Limits on what a client may submit.
struct SubmitLimits {
  size_t max_payload_bytes = 256 * 1024;  // serialised payload; well under ZooKeeper's 1 MiB
  size_t max_batch = 1000;
};

struct ValidationError {
  std::string field;
  std::string detail;
};

// The most labels a task may require.
inline constexpr size_t kMaxTaskLabels = 16;

// Reads a submission ({"id"?, "type", "payload"?, "priority"?, "max_attempts"?, "timeout_s"?,
// "queue"?, "labels"?, "callback_url"?, "run_at"? | "delay_s"?}). `now_ms` (wall clock) turns
// delay_s into run_at and bounds both to kMaxDelayMs ahead.
// A missing id gets a generated one. Unknown fields are an error. `known_type` says which types
// the cluster runs (nullptr: any non-empty name of valid characters).
tl::expected<TaskSpec, ValidationError> parseSpec(const Json& body, const SubmitLimits& limits,
                                                  bool (*known_type)(std::string_view) = nullptr,
                                                  int64_t now_ms = 0);

// Reads a submission's "retry" object (unknown fields and out-of-range values are an error).
tl::expected<RetryPolicy, ValidationError> parseRetryPolicy(const Json& j);

Json toJson(const TaskSpec& spec);
Json toJson(const TaskStatus& status);
Json toJson(const RetryPolicy& policy);
Json toJson(const AttemptRecord& attempt);

// Decoders for data read back from ZooKeeper; nullopt for data this version cannot read.
std::optional<TaskSpec> specFromJson(const Json& j);
std::optional<TaskStatus> statusFromJson(const Json& j);

// Parses `data` as JSON without throwing; nullopt when it is not JSON.
std::optional<Json> parseJson(std::string_view data);

}  // namespace drover::tasks
