#include "worker/container.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <cmath>
#include <thread>

#include "worker/exec.h"

namespace drover::worker {
namespace {

using namespace std::chrono_literals;

// An engine call of our own (inspect, kill, rm): bounded, so a hung engine cannot hold a slot.
ExecOutcome engineCall(const ContainerConfig& config, std::vector<std::string> args,
                       base::Duration timeout = 30s) {
  ExecRequest req;
  req.argv = config.engine;
  req.argv.insert(req.argv.end(), args.begin(), args.end());
  CancelToken cancel, done;
  std::thread watchdog([&] {
    if (!done.waitFor(timeout)) cancel.cancel(CancelReason::kTimedOut);
  });
  ExecLimits limits;
  limits.max_output_bytes = 4096;
  ExecOutcome o = runExec(req, limits, cancel);
  done.cancel(CancelReason::kCancelled);
  watchdog.join();
  return o;
}

}  // namespace

std::string containerName(const std::string& task_id, int attempt) {
  return fmt::format("drover-{}-{}", task_id, attempt);
}

std::vector<std::string> containerRunArgv(const ContainerConfig& config,
                                          const tasks::ContainerRequest& req,
                                          const std::string& name, const std::string& task_id,
                                          int attempt, const std::string& worker) {
  std::vector<std::string> a = config.engine;
  a.insert(a.end(), {"run", "--name", name, "--label", "drover.task=" + task_id,
                     "--security-opt=no-new-privileges"});
  if (!req.network) a.push_back("--network=none");
  int64_t memory =
      req.resources.memory_mb > 0 ? req.resources.memory_mb : config.defaults.memory_mb;
  double cpus = req.resources.cpus > 0 ? req.resources.cpus : config.defaults.cpus;
  int64_t pids = req.resources.pids > 0 ? req.resources.pids : config.defaults.pids;
  if (memory > 0) {
    // Memory and memory + swap alike: no swapping past the limit.
    a.push_back(fmt::format("--memory={}m", memory));
    a.push_back(fmt::format("--memory-swap={}m", memory));
  }
  if (cpus > 0) a.push_back(fmt::format("--cpus={}", cpus));
  if (pids > 0) a.push_back(fmt::format("--pids-limit={}", pids));
  std::map<std::string, std::string> env = req.env;
  env["DROVER_TASK_ID"] = task_id;
  env["DROVER_ATTEMPT"] = std::to_string(attempt);
  env["DROVER_WORKER"] = worker;
  for (const auto& [k, v] : env) a.insert(a.end(), {"--env", k + "=" + v});
  a.push_back(req.image);
  a.insert(a.end(), req.argv.begin(), req.argv.end());
  return a;
}

HandlerResult containerHandler(TaskContext& ctx, const ExecLimits& limits,
                               const ContainerConfig& config) {
  auto req = tasks::parseContainerPayload(ctx.payload);
  if (!req) {
    return HandlerResult::failure(
        fmt::format("invalid container payload: {}: {}", req.error().field, req.error().detail));
  }
  std::string name = containerName(ctx.id, ctx.attempt);
  ExecRequest run;
  run.argv = containerRunArgv(config, *req, name, ctx.id, ctx.attempt, ctx.worker);
  ExecOutcome o = runExec(run, limits, ctx.cancel);

  // Cleanup whatever happened: a cancelled `run` client may leave its container running.
  if (o.cancelled != CancelReason::kNone) (void)engineCall(config, {"kill", name});
  ExecOutcome rm = engineCall(config, {"rm", "-f", name});
  if (!rm.started || rm.exit_code != 0) {
    spdlog::warn("task {}: cannot remove container {}: {}{}", ctx.id, name, rm.error, rm.err);
  }

  if (!o.started) return HandlerResult::failure(o.error);
  Json result = {{"exit_code", o.exit_code},
                 {"stdout", toValidUtf8(o.out)},
                 {"stderr", toValidUtf8(o.err)},
                 {"stdout_truncated", o.out_truncated},
                 {"stderr_truncated", o.err_truncated},
                 {"container", name}};
  if (o.cancelled != CancelReason::kNone) {
    return HandlerResult::failure(std::string(cancelReasonName(o.cancelled)), std::move(result));
  }
  int64_t memory =
      req->resources.memory_mb > 0 ? req->resources.memory_mb : config.defaults.memory_mb;
  // Engines report the container's exit status; 137 = SIGKILL. Under runc with cgroups v1 the
  // engine's own OOM flag stays false, so a SIGKILL nobody asked for, under a memory limit, is
  // reported as the limit.
  if (o.exit_code == 137 && memory > 0) {
    result["limit"] = "memory";
    return HandlerResult::failure(
        fmt::format("killed: memory limit {} (SIGKILL in the container)", mebibytes(memory)),
        std::move(result));
  }
  if (o.exit_code != 0) {
    return HandlerResult::failure(fmt::format("exited with code {}", o.exit_code),
                                  std::move(result));
  }
  return HandlerResult::success(std::move(result));
}

void registerContainerType(HandlerRegistry& registry, ExecLimits limits, ContainerConfig config) {
  registry.add(
      "container",
      [limits = std::move(limits), config = std::move(config)](TaskContext& ctx) {
        return containerHandler(ctx, limits, config);
      },
      tasks::validateContainerPayload);
}

}  // namespace drover::worker
