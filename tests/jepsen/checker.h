#pragma once

// The fault suite's checker: given what the clients saw (the history), what the tasks left in
// the execution log outside ZooKeeper, the tree dumped after the drain, how every node process
// ended and the faults injected, it verifies the properties of RELIABILITY.md (P1-P9) as far as
// they are observable from outside, and names each violation with the task and the evidence.
//
// It is plain data in, plain data out: no I/O, no clock, no ZooKeeper, so the unit test feeds it
// synthetic histories and trees with planted violations. The driver (drover_jepsen.cc) gathers
// the inputs from a real run. Thread safety: plain functions over values.

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "tasks/records.h"
#include "tasks/task.h"

namespace drover::jepsen {

using Json = nlohmann::json;

// One submit request of a client and its answer. Times are monotonic ms since the run started.
struct Request {
  int client = 0;
  std::string kind = {};  // "first" (a new id), "retry" / "repeat" (same id and spec), "conflict"
  std::string id = {};
  Json body = {};         // the submitted JSON (id, type, payload, max_attempts)
  std::string node = {};  // which node it was sent to
  int64_t start_ms = 0;
  int64_t end_ms = 0;
  int status = 0;  // HTTP status; 0 when no answer came (timeout, connection error)

  bool acknowledged() const { return status >= 200 && status < 300; }
  // The outcome is unknown: no answer or a 5xx (the write may or may not have landed).
  bool unknown() const { return status == 0 || status >= 500; }
  bool rejected() const { return status >= 400 && status < 500; }
};
Json toJson(const Request& r);
std::optional<Request> requestFromJson(const Json& j);

// One line of the execution log: "ID ATTEMPT WORKER TOKEN", appended by every run of a task
// (ATTEMPT and WORKER are "?" when the node does not export them). TOKEN identifies the run (the
// shell's pid); the task also prints the same line, so a recorded result names its run.
struct Execution {
  std::string id = {};
  std::string attempt = {};
  std::string worker = {};
  std::string token = {};
  std::string line = {};  // the whole line as written
};
std::optional<Execution> parseExecution(std::string_view line);

// A task as found in the tree. Protocol 1: its status node. Protocol 2: a task of a batch record
// with its outcomes from the batch's result records (docs/ZNODES.md "Retry and history on batch
// records"): `status` holds the spec from the batch record and the latest outcome (state
// `pending` when none is recorded yet, or when the latest is an attempt's end before another),
// and status->history every outcome recorded, in record order (all of them, not GET's last 10),
// so the checker sees a second terminal outcome.
struct StatusEntry {
  std::string bucket = {};  // where it was found: protocol 1 the bucket folder ("3f"), protocol 2
                            // the batch record below /batches ("1a22ee6/1a22ee6b0000f3a1")
  std::string id = {};
  std::optional<tasks::TaskStatus> status = {};  // nullopt: undecodable data
};

// One /events record: the changes of one multi, in commit order (by sequence number).
struct EventRecord {
  int64_t seq = 0;
  std::vector<tasks::TaskEvent> events = {};
};

// The tree as dumped after a `sync`, by a fresh session. The tokens (docs/ZNODES.md "The token
// rule"): protocol 1 a job or an assignment per task; protocol 2 a task waiting in its batch's
// pending state (`jobs`, the bucket being "{t}/{batch}") or listed in a chunk (`assignments`).
struct Tree {
  int protocol = 1;  // which protocol's tree it is: where tokens and statuses live
  std::vector<StatusEntry> statuses;
  std::vector<std::pair<std::string, std::string>> jobs;        // (bucket, id): waiting tasks
  std::map<std::string, std::vector<std::string>> assignments;  // worker -> task ids it holds
  std::map<std::string, tasks::WorkerInfo> workers;             // /workers children
  std::vector<std::string> election = {};                       // /election children
  std::vector<EventRecord> events;                              // sorted by seq
  int64_t epoch = -1;                                           // /epoch data version
  std::map<std::string, int> bucket_sizes;                      // folder path -> children
};
Json toJson(const Tree& tree);

// One incarnation of a drover node process.
struct NodeRun {
  std::string name = {};  // "n2#3": the node's slot and incarnation
  int pid = 0;
  bool ended_by_suite = false;  // killed by the nemesis, or stopped by the suite at the end
  std::string exit = {};        // how it ended ("exit 0", "signal 6 (Aborted)"); "" if running
  std::string log_path = {};
  std::vector<std::string> log_findings = {};  // lines of its log that report a crash (scanLog)
};

// Lines of a node log that report memory errors or aborts: sanitizer reports ("ERROR:
// AddressSanitizer", "runtime error:", "WARNING: ThreadSanitizer"), glibc ("double free",
// "Aborted"). At most `max` lines.
std::vector<std::string> scanLog(std::string_view text, size_t max = 10);

// One injected fault. Times are monotonic ms since the run started; heal_ms = -1 if never healed.
struct Fault {
  std::string kind = {};
  std::string target = {};
  int64_t start_ms = 0;
  int64_t heal_ms = -1;
  std::string skipped = {};  // non-empty: not injected, and why
};
Json toJson(const Fault& f);

struct CheckInput {
  std::vector<Request> requests;
  std::vector<Execution> executions;
  Tree tree;
  std::vector<NodeRun> nodes;
  std::vector<Fault> faults;
  int live_nodes = 0;             // drover nodes running when the tree was dumped
  int64_t last_heal_ms = 0;       // when the nemesis healed the last fault
  int64_t drained_ms = -1;        // when every task was terminal (-1: not within the deadline)
  int64_t recovery_bound_ms = 0;  // P6: drained_ms - last_heal_ms must stay below
  int64_t max_epoch_seen = -1;    // the highest epoch /v1/cluster showed during the run
  size_t events_keep = 1000;      // the leader's /events bound
  size_t bucket_cap = 10000;      // a /jobs or /status bucket's bound
};

struct Violation {
  std::string property = {};  // "P1 lost", "P2 phantom", ...
  std::string task = {};      // the task id, the node or "" when it concerns the whole cluster
  std::string evidence = {};
};

struct CheckReport {
  std::vector<Violation> violations;
  std::map<std::string, int> faults_by_kind;  // injected (skipped ones under "<kind> (skipped)")
  int64_t requests = 0;
  int64_t acknowledged = 0;  // distinct task ids with a 2xx answer
  int64_t unknown = 0;       // requests without a known outcome
  int64_t rejected = 0;      // 4xx answers (expected 409s included)
  int64_t conflicts_409 = 0;
  int64_t tasks_in_tree = 0;
  int64_t succeeded = 0, failed = 0, cancelled = 0;
  int64_t lost = 0;
  int64_t phantom = 0;
  int64_t executions = 0;
  int64_t duplicate_executions = 0;  // tasks that ran more than once (allowed: at least once)
  int64_t duplicate_records = 0;     // tasks with more than one recorded outcome (a failure)
  int64_t worst_recovery_ms = -1;    // last heal -> everything terminal
  int64_t worst_first_ack_after_heal_ms = -1;  // per fault: heal -> next acknowledged submit

  bool ok() const { return violations.empty(); }
};

CheckReport check(const CheckInput& input);

// The summary lines ("[ figure ] ...") and one "VIOLATION ..." line per violation.
std::string summarize(const CheckReport& report);

}  // namespace drover::jepsen
