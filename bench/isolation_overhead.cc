// Start overhead of task isolation (docs/ISOLATION.md "Overhead"): runs `true` N times through
// the exec handler with the bare runner, with limits only (exec_sandbox: false), and with the
// full sandbox, then a busybox container M times, and prints p50/p99 of each, in milliseconds.
//   isolation_overhead [N=200] [M=20] [IMAGE] [ENGINE words...]
// Without IMAGE the container row is skipped.
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <string>
#include <vector>

#include "worker/container.h"
#include "worker/exec.h"
#include "worker/sandbox.h"

using namespace drover;
using Clock = std::chrono::steady_clock;

namespace {

void report(const std::string& what, std::vector<double> ms) {
  std::sort(ms.begin(), ms.end());
  auto at = [&](double q) {
    return ms[std::min(ms.size() - 1, static_cast<size_t>(q * ms.size()))];
  };
  fmt::print("{:<28} n={:<4} p50={:7.2f} ms  p99={:7.2f} ms\n", what, ms.size(), at(0.5), at(0.99));
}

std::vector<double> timeRuns(int n, const std::function<bool()>& run) {
  std::vector<double> ms;
  for (int i = 0; i < n; ++i) {
    auto t0 = Clock::now();
    if (!run()) {
      fmt::print(stderr, "run {} failed\n", i);
      std::exit(1);
    }
    ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
  }
  return ms;
}

}  // namespace

int main(int argc, char** argv) {
  int n = argc > 1 ? std::stoi(argv[1]) : 200;
  int m = argc > 2 ? std::stoi(argv[2]) : 20;
  std::string image = argc > 3 ? argv[3] : "";
  std::vector<std::string> engine;
  for (int i = 4; i < argc; ++i) engine.push_back(argv[i]);

  auto execWith = [&](std::shared_ptr<const worker::ExecIsolation> iso) {
    worker::ExecLimits limits;
    limits.isolation = std::move(iso);
    int i = 0;
    return timeRuns(n, [&, limits] {
      worker::TaskContext ctx;
      ctx.id = fmt::format("bench{}", i++);
      ctx.payload = {{"argv", {"true"}}};
      return worker::execHandler(ctx, limits).ok;
    });
  };
  report("exec, bare runner", execWith(nullptr));
  worker::ExecPolicy off;
  off.sandbox = false;
  report("exec, limits, no sandbox", execWith(worker::ExecIsolation::forThisMachine(off)));
  report("exec, sandbox + limits", execWith(worker::ExecIsolation::forThisMachine({})));
  worker::ExecPolicy sandbox_only;
  sandbox_only.defaults = {};
  report("exec, sandbox, no limits", execWith(worker::ExecIsolation::forThisMachine(sandbox_only)));

  if (!image.empty()) {
    worker::ContainerConfig config;
    if (!engine.empty()) config.engine = engine;
    int i = 0;
    report("container (run + rm)", timeRuns(m, [&] {
             worker::TaskContext ctx;
             ctx.id = fmt::format("bench{}", i++);
             ctx.payload = {{"image", image}, {"argv", {"/bin/sh", "-c", "true"}}};
             return worker::containerHandler(ctx, {}, config).ok;
           }));
  }
}
