#include "bench_nodes.h"

#include <fmt/format.h>
#include <httplib.h>

#include <chrono>
#include <iostream>
#include <nlohmann/json.hpp>

#include "base/eventually.h"
#include "local/ports.h"

namespace drover::bench {

using namespace std::chrono_literals;

std::optional<BenchNodes> startBenchNodes(const std::string& drover, const std::string& zk,
                                          const std::string& root, const std::string& prefix,
                                          int count, int slots) {
  BenchNodes out;
  for (int i = 0; i < count; ++i) {
    const int port = local::freePort();
    const std::string id = fmt::format("{}-{}", prefix, i);
    out.processes.push_back(std::make_unique<local::Process>(
        local::ProcessOptions{.argv = {drover, "node", "--zk", zk, "--zk-root", root, "--http",
                                       fmt::format("127.0.0.1:{}", port), "--id", id, "--slots",
                                       std::to_string(slots), "--protocol", "2"}}));
    local::Process& node = *out.processes.back();
    // The node logs to stderr.
    if (!base::eventually(
            [&] {
              return node.readStderr().find("worker " + id + " registered") != std::string::npos;
            },
            60s)) {
      std::cerr << "node " << id << " did not start:\n" << node.readStderr();
      return std::nullopt;
    }
    out.ports.push_back(port);
  }
  httplib::Client api("127.0.0.1", out.ports.at(0));
  api.set_read_timeout(60);
  if (!base::eventually(
          [&] {
            auto r = api.Get("/v1/cluster");
            return r && r->status == 200 &&
                   nlohmann::json::parse(r->body, nullptr, false)["leader"].is_string();
          },
          30s)) {
    std::cerr << "no leader\n";
    return std::nullopt;
  }
  return out;
}

}  // namespace drover::bench
