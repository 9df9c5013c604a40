// The built-in task types (contract, see ARCHITECTURE.md "Task model"):
//   noop  -> success, result null.
//   echo  -> success, result = the payload.
//   sleep -> {"ms": N} (0 <= N <= 86,400,000); success (null) after N ms; fails with
//            "cancelled" (or the cancel reason) when cancelled first.
//   fail  -> fails with payload.message (a string) or "failed".
//   exec  -> see exec.h (and sandbox.h for its isolation).
//   container -> see container.h.
// The payloads of sleep, fail and exec are checked at submit by the validators of
// tasks/payloads.h, registered here with the handlers; the handlers still check what they read
// (a task written by another writer, or before validation existed, fails rather than misruns).
#include <fmt/format.h>

#include "worker/container.h"
#include "worker/exec.h"
#include "worker/handler.h"

namespace drover::worker {
namespace {

using tasks::kMaxSleepMs;

HandlerResult sleepHandler(TaskContext& ctx) {
  const Json& p = ctx.payload;
  int64_t ms = 0;
  if (p.is_object() && p.contains("ms")) {
    const Json& v = p["ms"];
    if (!v.is_number() || v.get<double>() < 0 || v.get<double>() > kMaxSleepMs) {
      return HandlerResult::failure(
          fmt::format("invalid sleep payload: ms must be a number from 0 to {}", kMaxSleepMs));
    }
    ms = static_cast<int64_t>(v.get<double>());
  } else if (!p.is_null() && !p.is_object()) {
    return HandlerResult::failure("invalid sleep payload: must be an object {\"ms\": N}");
  }
  if (ctx.cancel.waitFor(std::chrono::milliseconds(ms))) {
    CancelReason why = ctx.cancel.reason();
    return HandlerResult::failure(why == CancelReason::kCancelled
                                      ? std::string("cancelled")
                                      : std::string(cancelReasonName(why)));
  }
  return HandlerResult::success();
}

HandlerResult failHandler(TaskContext& ctx) {
  const Json& p = ctx.payload;
  if (p.is_object()) {
    auto it = p.find("message");
    if (it != p.end() && it->is_string() && !it->get<std::string>().empty()) {
      return HandlerResult::failure(it->get<std::string>());
    }
  }
  return HandlerResult::failure("failed");
}

}  // namespace

void registerBuiltins(HandlerRegistry& registry, ExecLimits limits) {
  registry.add("noop", [](TaskContext&) { return HandlerResult::success(); });
  registry.add("echo", [](TaskContext& ctx) { return HandlerResult::success(ctx.payload); });
  registry.add("sleep", sleepHandler, tasks::validateSleepPayload);
  registry.add("fail", failHandler, tasks::validateFailPayload);
  registry.add(
      "exec", [limits](TaskContext& ctx) { return execHandler(ctx, limits); },
      tasks::validateExecPayload);
  registerContainerType(registry, limits, ContainerConfig{});
}

}  // namespace drover::worker
