#include "app/up.h"

#include <spdlog/spdlog.h>

#include <filesystem>
#include <iostream>
#include <thread>

#include "local/process.h"
#include "local/zk_cluster.h"

namespace drover::app {

using namespace std::chrono_literals;

int runUp(const UpConfig& config, const std::string& self_exe, const base::StopFlag& stop) {
  std::unique_ptr<local::ZkCluster> zk;
  try {
    local::ZkClusterOptions zo;
    // Sessions expire on tick boundaries, so a dead node is noticed within its session timeout
    // plus one tick; 250 ms keeps that slack small. Sessions of 1-20 s are allowed.
    zo.tick_time_ms = 250;
    zo.min_session_timeout_ms = 1000;
    zo.max_session_timeout_ms = 20000;
    zo.log_level = "warn";
    zo.force_sync = true;  // a local cluster keeps what it acknowledged
    zk = local::ZkCluster::standalone(zo);
  } catch (const std::exception& e) {
    std::cerr << "drover up: cannot start ZooKeeper: " << e.what() << "\n"
              << "  (it needs Debian's 'zookeeper' package and Java: scripts/install-deps.sh)\n";
    return 3;
  }
  spdlog::info("ZooKeeper serving on {} (data in {})", zk->connectString(), zk->dir(0));

  std::string logs = local::makeTempDir("drover-up-logs");
  std::vector<std::unique_ptr<local::Process>> nodes;
  for (int i = 0; i < config.nodes; ++i) {
    local::ProcessOptions po;
    po.argv = {self_exe,
               "node",
               "--zk",
               zk->connectString(),
               "--http",
               fmt::format("127.0.0.1:{}", config.http_port + i),
               "--id",
               fmt::format("node-{}", i + 1),
               "--slots",
               std::to_string(config.slots),
               "--session-timeout-ms",
               std::to_string(config.session_timeout_ms)};
    po.stdout_path = fmt::format("{}/node-{}.log", logs, i + 1);
    po.stderr_path = po.stdout_path;
    nodes.push_back(std::make_unique<local::Process>(po));
  }
  for (int i = 0; i < config.nodes; ++i) {
    if (!nodes[i]->waitForOutput("serving the API", 30s)) {
      std::cerr << "drover up: node " << i + 1 << " did not start:\n"
                << nodes[i]->readStdout() << "\n";
      return 4;
    }
  }
  std::cout << "\nDrover is up: " << config.nodes << " nodes, ZooKeeper at " << zk->connectString()
            << "\n"
            << "  API:        http://127.0.0.1:" << config.http_port << "\n"
            << "  try:        " << self_exe << " submit --wait -- echo hello\n"
            << "  node logs:  " << logs << "\n"
            << "Ctrl-C stops everything.\n"
            << std::flush;

  // Stay up until told to stop; report a node that died on its own.
  std::vector<bool> reported(nodes.size(), false);
  while (!stop.waitFor(200ms)) {
    for (size_t i = 0; i < nodes.size(); ++i) {
      if (!reported[i] && !nodes[i]->alive()) {
        reported[i] = true;
        spdlog::warn("node-{} exited; its log: {}", i + 1, nodes[i]->stdoutPath());
      }
    }
  }
  std::cout << "\nstopping " << nodes.size() << " nodes and ZooKeeper ...\n" << std::flush;
  for (auto& n : nodes) n->terminate();
  for (auto& n : nodes) {
    if (!n->wait(15s)) n->kill9();
    n->wait(5s);
  }
  nodes.clear();
  zk.reset();  // stops the server and removes its folder
  std::error_code ec;
  std::filesystem::remove_all(logs, ec);
  std::cout << "stopped\n";
  return 0;
}

}  // namespace drover::app
