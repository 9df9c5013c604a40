#pragma once

// The built-in `exec` task type: runs a command as a child process.

#include <sys/types.h>

#include <functional>
#include <map>
#include <string>
#include <tl/expected.hpp>
#include <vector>

#include "tasks/payloads.h"
#include "worker/handler.h"
#include "worker/sandbox.h"

namespace drover::worker {

// The `exec` payload (its contract and its reading live with the task model, so that the API
// can check it at submit): see tasks/payloads.h.
using tasks::ExecRequest;

// tasks::parseExecPayload, with the error as one string ("payload.argv: must be ...").
tl::expected<ExecRequest, std::string> parseExecPayload(const Json& payload);

// What happened to one command.
struct ExecOutcome {
  bool started = false;  // false: it could not be started (see error)
  std::string error;     // why it could not start ("" when started)
  int exit_code = -1;    // exit status; 128 + signal when killed by a signal; 127 not found
  int signal = 0;        // the signal that killed it (0: it exited)
  std::string out, err;  // captured output, at most ExecLimits::max_output_bytes each
  bool out_truncated = false, err_truncated = false;
  CancelReason cancelled = CancelReason::kNone;  // set when the run was stopped by `cancel`
};

// Runs `req` and waits for it. The child runs in a process group of its own, with stdin, stdout
// and stderr on pipes and every other descriptor closed; its environment is this process's
// environment plus `req.env`. Both outputs are read as they come (no deadlock on full pipes).
// When `cancel` is cancelled: SIGTERM to the group, SIGKILL after `limits.kill_grace`. When the
// command exits, whatever it left running in its group is killed. The child is always reaped
// and every descriptor closed before this returns. `on_start` (optional) is called with the
// child's pid once it runs (tests use it). `setup` changes the child's environment, and may ask
// for steps (joining cgroups, rlimits, another uid, no new privileges) that the child takes
// before it runs the command; a step that fails is an error like a command that cannot start.
// Blocking; thread-safe.
ExecOutcome runExec(const ExecRequest& req, const ExecLimits& limits, const CancelToken& cancel,
                    const std::function<void(pid_t)>& on_start = {}, const SpawnSetup& setup = {});

// The `exec` handler: validates, runs (through limits.isolation when set: the node's policy,
// sandbox and limits), and maps the outcome: exit 0 -> success with {"exit_code", "stdout",
// "stderr"} (+ "stdout_truncated"/"stderr_truncated" when set, "signal" when killed); any other
// exit -> a failure saying the code, with the same JSON as detail. A task its memory limit
// killed fails with "killed: memory limit 64 MiB"; one that reached its process limit says so.
HandlerResult execHandler(TaskContext& ctx, const ExecLimits& limits);

// `s` with every invalid UTF-8 sequence replaced by U+FFFD, so it can go into JSON.
std::string toValidUtf8(std::string_view s);

}  // namespace drover::worker
