#pragma once

// Isolation of the `exec` task type (docs/ISOLATION.md): the node's policy (exec on or off, an
// allow-list of programs, the sandbox, default limits), the bubblewrap command line that puts a
// task in namespaces of its own, and the cgroups that hold its memory, CPU and process limits.
// exec.cc runs what this prepares; this file knows nothing of pipes or outcomes.

#include <sys/resource.h>
#include <sys/types.h>

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <tl/expected.hpp>
#include <utility>
#include <vector>

#include "tasks/payloads.h"

namespace drover::worker {

using tasks::Resources;

// How a node runs `exec` tasks. Defaults are the documented ones (docs/CONFIG.md).
struct ExecPolicy {
  bool enabled = true;             // false: every exec task fails without running
  std::vector<std::string> allow;  // absolute program paths; empty = any program
  bool sandbox = true;             // false: no namespaces, no uid switch (unsafe)
  std::string bwrap = "/usr/bin/bwrap";
  // The uid and gid a sandboxed task runs as when the node runs as root. A node that is not root
  // runs tasks under its own (already unprivileged) uid.
  uid_t uid = 65534;
  gid_t gid = 65534;
  // Each task's private work dir is made here ("": /tmp/drover-exec-{the node's uid}). Must be
  // (or become) a folder of the node's uid that only it may write.
  std::string work_root;
  // What of the host a sandboxed task sees, read-only: each path that exists (a symlink is kept
  // as a symlink). Everything else is absent; /tmp is empty and private.
  std::vector<std::string> system_paths = {"/usr",   "/bin",   "/sbin",   "/lib",
                                           "/lib32", "/lib64", "/libx32", "/etc"};
  // Limits of a task whose payload does not set them. Zero: no limit of that kind.
  Resources defaults{1024, 0, 1024};
};

// Which cgroup hierarchy holds task limits on this machine.
enum class CgroupMode { kNone, kV1, kV2 };

// One task's cgroup (one directory per v1 controller, one in v2). Removed, after killing
// whatever still runs in it, when destroyed. Not thread-safe; owned by the run it limits.
class TaskCgroup {
 public:
  TaskCgroup(CgroupMode mode, std::vector<std::string> dirs);
  ~TaskCgroup();
  TaskCgroup(const TaskCgroup&) = delete;
  TaskCgroup& operator=(const TaskCgroup&) = delete;

  // The cgroup.procs files, open for writing (close-on-exec): a child writes its pid to each
  // before it runs the task (see SpawnSetup). Owned by this object.
  const std::vector<int>& procFds() const { return proc_fds_; }
  // The kernel's OOM killer killed a process of this cgroup (its memory limit was hit).
  bool oomKilled() const;
  // A fork or clone failed because the process limit was reached.
  bool pidsLimitHit() const;
  // Processes still in the cgroup.
  std::vector<pid_t> pids() const;
  // SIGKILLs every process in the cgroup until it is empty or ~2 s passed; true when empty.
  bool killAll();
  const std::vector<std::string>& dirs() const { return dirs_; }

 private:
  CgroupMode mode_;
  std::vector<std::string> dirs_;
  std::vector<int> proc_fds_;
};

// The cgroup hierarchy where task cgroups go: below the node's own cgroup, in a `drover`
// folder, so that limits set on the node (by systemd or a container) still bound its tasks.
// Thread-safe after construction (create only makes new folders).
class CgroupSystem {
 public:
  // Looks at /sys/fs/cgroup and /proc/self/cgroup: v2 when /sys/fs/cgroup is a cgroup2 mount,
  // v1 when the memory and pids controllers are mounted under it and writable; else kNone with
  // the reason in whyNot(). In v2 it enables the memory, pids and cpu controllers below the
  // node's cgroup, first moving the node into a leaf `node` cgroup when its own holds processes.
  static CgroupSystem detect();
  // For tests: task cgroups go below these parent folders (v1: controller -> folder; v2: the
  // key "" -> folder).
  CgroupSystem(CgroupMode mode, std::map<std::string, std::string> parents,
               std::string why_not = "");

  CgroupMode mode() const { return mode_; }
  const std::string& whyNot() const { return why_not_; }
  // Where task cgroups go: v1 controller (v2: "") -> folder.
  const std::map<std::string, std::string>& parents() const { return parents_; }
  std::string describe() const;

  // Makes the cgroup `name` (one path component) with `limits` (zero fields: no limit of that
  // kind). On error removes what it made and says why.
  tl::expected<std::unique_ptr<TaskCgroup>, std::string> create(const std::string& name,
                                                                const Resources& limits) const;

 private:
  CgroupMode mode_;
  std::map<std::string, std::string> parents_;
  std::string why_not_;
};

// How runExec sets the child up before it runs the command, beyond its defaults. Any of
// cgroup_procs, rlimits, user or no_new_privs makes runExec fork and exec (posix_spawn cannot
// run these steps in the child).
struct SpawnSetup {
  std::optional<std::vector<std::string>> env;  // the whole environment ("NAME=value")
  std::vector<int> cgroup_procs;                // the child writes its pid to each, first
  std::vector<std::pair<int, rlimit>> rlimits;
  std::optional<std::pair<uid_t, gid_t>> user;  // switched to, supplementary groups dropped
  bool no_new_privs = false;
  bool forks() const { return !cgroup_procs.empty() || !rlimits.empty() || user || no_new_privs; }
};

// A task ready to run: the command line (bwrap's when sandboxed), its setup, and what must
// outlive the run (the work dir and the cgroup, cleaned up when this is destroyed).
struct PreparedExec {
  std::vector<std::string> argv;
  std::string cwd;  // for runExec ("" when bwrap changes directory itself)
  SpawnSetup setup;
  Resources limits;                    // the limits in force
  std::unique_ptr<TaskCgroup> cgroup;  // null when limits come from rlimits (or none)
  std::string work_dir;                // "" when not sandboxed
  ~PreparedExec();
  PreparedExec() = default;
  PreparedExec(PreparedExec&& o) noexcept;
  PreparedExec& operator=(PreparedExec&&) = delete;
};

// Who a task is, for its environment and its names.
struct TaskIdentity {
  std::string id;
  int attempt = 1;
  std::string worker;
};

// The node's isolation: its policy and its machine's cgroups, probed once. Thread-safe.
class ExecIsolation {
 public:
  ExecIsolation(ExecPolicy policy, CgroupSystem cgroups);
  // With the machine's cgroups (CgroupSystem::detect); logs what a task will get, and warns
  // when the sandbox or cgroups are unavailable.
  static std::shared_ptr<ExecIsolation> forThisMachine(ExecPolicy policy);

  const ExecPolicy& policy() const { return policy_; }
  const CgroupSystem& cgroups() const { return cgroups_; }

  // Checks `req` against the policy and prepares its run: a refusal (exec disabled, a program
  // not allowed, the sandbox missing, a cgroup that cannot be made) is the error, and then
  // nothing is left behind.
  tl::expected<PreparedExec, std::string> prepare(const tasks::ExecRequest& req,
                                                  const TaskIdentity& who) const;

 private:
  ExecPolicy policy_;
  CgroupSystem cgroups_;
};

// The minimal environment of a task: PATH, LANG, HOME, TMPDIR, then the payload's `env`, then
// DROVER_TASK_ID, DROVER_ATTEMPT and DROVER_WORKER (last, so a payload cannot spoof them).
std::vector<std::string> taskEnvironment(const std::map<std::string, std::string>& payload_env,
                                         const TaskIdentity& who, const std::string& home);

// `name` found in the colon-separated `path` list as an executable file; `name` itself when it
// holds a '/'; "" when not found.
std::string findProgram(const std::string& name, const std::string& path);

// "64 MiB", "2 GiB": a size for an error message.
std::string mebibytes(int64_t mb);

}  // namespace drover::worker
