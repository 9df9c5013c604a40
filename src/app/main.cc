// drover: one binary for the node, the local cluster and the client commands.
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <csignal>
#include <iostream>

#include "app/client.h"
#include "app/node.h"
#include "app/up.h"
#include "base/log.h"

namespace {

std::atomic<bool> g_stop{false};

void onSignal(int) { g_stop = true; }

std::string selfExe() {
  char buf[4096];
  ssize_t n = readlink("/proc/self/exe", buf, sizeof(buf) - 1);
  return n > 0 ? std::string(buf, static_cast<size_t>(n)) : "drover";
}

}  // namespace

int main(int argc, char** argv) {
  using namespace drover;
  CLI::App app{"Drover: a distributed task scheduler coordinated by ZooKeeper"};
  app.require_subcommand(1);
  app.footer(
      "Examples:\n"
      "  drover up                                  # local ZooKeeper + 3 nodes\n"
      "  drover node --zk 10.0.0.1:2181,10.0.0.2:2181 --http 0.0.0.0:8080 --slots 8\n"
      "  drover submit --wait -- echo hello\n"
      "  drover tasks --state failed --json");
  int exit_code = 0;

  app::NodeConfig node;
  auto* node_cmd = app.add_subcommand("node", "Run a node: REST API, worker and leader candidate");
  node_cmd->add_option("--zk", node.zk, "ZooKeeper connect string host:port[,host:port...]")
      ->envname("DROVER_ZK")
      ->capture_default_str();
  node_cmd->add_option("--zk-root", node.zk_root, "Root znode of this cluster")
      ->envname("DROVER_ZK_ROOT")
      ->capture_default_str();
  node_cmd->add_option("--http", node.http, "Address the REST API listens on")
      ->envname("DROVER_HTTP")
      ->capture_default_str();
  node_cmd->add_option("--id", node.id, "Worker id (default: host-pid-random)");
  node_cmd->add_option("--slots", node.slots, "Tasks run at once")
      ->envname("DROVER_SLOTS")
      ->capture_default_str();
  node_cmd->add_option("--session-timeout-ms", node.session_timeout_ms, "ZooKeeper session timeout")
      ->envname("DROVER_SESSION_TIMEOUT_MS")
      ->capture_default_str();
  node_cmd->add_option("--strategy", node.strategy, "round-robin | random | least-loaded")
      ->envname("DROVER_STRATEGY")
      ->capture_default_str();
  node_cmd->add_option("--label", node.labels, "Worker label (repeatable)");
  node_cmd->add_option("--log-level", node.log_level, "trace|debug|info|warn|error")
      ->envname("DROVER_LOG_LEVEL")
      ->capture_default_str();
  node_cmd->add_option("--log-format", node.log_format, "text | json")
      ->envname("DROVER_LOG_FORMAT")
      ->capture_default_str();
  bool no_worker = false, no_leader = false;
  node_cmd->add_flag("--no-worker", no_worker, "Do not run tasks on this node");
  node_cmd->add_flag("--no-leader", no_leader, "Never lead");
  node_cmd->callback([&] {
    node.worker = !no_worker;
    node.leader = !no_leader;
    if (!base::initLogging(node.log_level, node.log_format)) {
      std::cerr << "drover: --log-level or --log-format is not one of the documented values\n";
      exit_code = app::kExitUsage;
      return;
    }
    if (auto problem = app::validate(node); !problem.empty()) {
      std::cerr << "drover: " << problem << "\n";
      exit_code = app::kExitUsage;
      return;
    }
    exit_code = app::runNode(node, g_stop);
  });

  app::UpConfig up;
  auto* up_cmd = app.add_subcommand("up", "Start a local cluster: ZooKeeper and N nodes");
  up_cmd->add_option("--nodes", up.nodes, "How many nodes")->capture_default_str();
  up_cmd->add_option("--http-port", up.http_port, "First node's API port (node i: port + i)")
      ->capture_default_str();
  up_cmd->add_option("--slots", up.slots, "Slots per node")->capture_default_str();
  up_cmd->callback([&] {
    base::initLogging("info");
    if (up.nodes < 1 || up.nodes > 64 || up.http_port < 1 || up.http_port + up.nodes > 65535) {
      std::cerr << "drover: --nodes must be 1-64 and the ports must fit below 65536\n";
      exit_code = app::kExitUsage;
      return;
    }
    exit_code = app::runUp(up, selfExe(), g_stop);
  });

  app::ClientOptions client;
  app::addClientCommands(app, client, exit_code);

  std::signal(SIGINT, onSignal);
  std::signal(SIGTERM, onSignal);
  std::signal(SIGPIPE, SIG_IGN);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int code = app.exit(e);
    return code == 0 ? 0 : app::kExitUsage;
  }
  return exit_code;
}
