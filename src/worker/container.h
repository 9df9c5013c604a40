#pragma once

// The built-in `container` task type (docs/ISOLATION.md): runs an OCI image through a container
// engine (podman or docker; its command line comes from the node's config), with the task's
// limits, its env, no network unless asked, and a container named after the task and attempt
// so that it is always removed: after the run, and on cancel, timeout and node stop.

#include <string>
#include <vector>

#include "tasks/payloads.h"
#include "worker/handler.h"

namespace drover::worker {

struct ContainerConfig {
  // The engine's command line, before its subcommand: `podman run ...` is engine + {"run", ...}.
  // The default suits Debian 12 with cgroups v1 (docs/ISOLATION.md).
  std::vector<std::string> engine = {"podman", "--runtime", "/usr/sbin/runc",
                                     "--cgroup-manager=cgroupfs"};
  // Limits of a task whose payload does not set them. Zero: no limit of that kind.
  tasks::Resources defaults{1024, 0, 1024};
};

// "drover-{id}-{attempt}": unique per attempt, so a retry never meets its predecessor's
// container, and the name a cleanup (or an operator) finds it by.
std::string containerName(const std::string& task_id, int attempt);

// The engine command line that runs `req` as the container `name`: engine run --name ...
// [--network=none] --memory= --memory-swap= --cpus= --pids-limit= --security-opt
// no-new-privileges --env ... IMAGE ARGV... Limits absent from `req` come from `config`.
std::vector<std::string> containerRunArgv(const ContainerConfig& config,
                                          const tasks::ContainerRequest& req,
                                          const std::string& name, const std::string& task_id,
                                          int attempt, const std::string& worker);

// The `container` handler: runs, then removes the container whatever happened (on cancel or
// timeout it is killed first). Success when the command exits 0, with {"exit_code", "stdout",
// "stderr"} like exec; a failure otherwise, saying the exit code (or the memory limit when the
// container was killed by SIGKILL with a memory limit set and no cancel).
HandlerResult containerHandler(TaskContext& ctx, const ExecLimits& limits,
                               const ContainerConfig& config);

// Registers (or replaces) the `container` type with its payload validator.
void registerContainerType(HandlerRegistry& registry, ExecLimits limits, ContainerConfig config);

}  // namespace drover::worker
