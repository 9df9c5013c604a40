// drover: one binary for the node, the local cluster and the client commands.
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <csignal>
#include <iostream>
#include <map>
#include <vector>

#include "app/client.h"
#include "app/config.h"
#include "app/node.h"
#include "app/token.h"
#include "app/up.h"
#include "base/log.h"
#include "base/stop_flag.h"

namespace {

drover::base::StopFlag g_stop;

void onSignal(int) { g_stop.request(); }

std::string selfExe() {
  char buf[4096];
  ssize_t n = readlink("/proc/self/exe", buf, sizeof(buf) - 1);
  return n > 0 ? std::string(buf, static_cast<size_t>(n)) : "drover";
}

// A clearer message than CLI11's for the usual mistakes: no command, an unknown command, an
// unknown option of a command (CLI11 lists every unexpected word, a "--" included, and does not
// say which command it was parsing). Empty when CLI11's own message should stand.
std::string explainParseError(const CLI::App& app, int argc, char** argv,
                              const CLI::ParseError& e) {
  std::vector<std::string> commands;
  for (const auto* sub : app.get_subcommands([](const CLI::App*) { return true; })) {
    commands.push_back(sub->get_name());
  }
  std::string list = fmt::format("{}", fmt::join(commands, ", "));
  int first = 1;
  while (first < argc && argv[first][0] == '-' && std::string_view(argv[first]) != "--") ++first;
  if (first >= argc) {
    if (dynamic_cast<const CLI::CallForHelp*>(&e) != nullptr) return "";
    return fmt::format("drover: a command is required: {}\n(drover --help describes them)\n", list);
  }
  const std::string name = argv[first];
  const CLI::App* sub = nullptr;
  for (const auto* s : app.get_subcommands([](const CLI::App*) { return true; })) {
    if (s->get_name() == name) sub = s;
  }
  if (sub == nullptr) {
    return fmt::format("drover: unknown command '{}'; the commands are: {}\n", name, list);
  }
  if (e.get_exit_code() == 0) return "";  // --help
  for (int i = first + 1; i < argc && dynamic_cast<const CLI::ExtrasError*>(&e) != nullptr; ++i) {
    std::string word = argv[i];
    if (word == "--") break;  // what follows is a command's own arguments
    if (word.size() < 2 || word[0] != '-' || word == "-h" || word == "--help") continue;
    std::string flag = word.substr(0, word.find('='));
    if (sub->get_option_no_throw(flag) == nullptr) {
      return fmt::format("drover {}: unknown option '{}' (drover {} --help lists the options)\n",
                         name, flag, name);
    }
  }
  return fmt::format("drover {}: {}\n(drover {} --help describes the arguments)\n", name, e.what(),
                     name);
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

  // Node flags are kept as text and applied last, over the file and the environment, by
  // app::loadConfig: one code path for the precedence flags > DROVER_* > file > defaults.
  const app::NodeConfig defaults;
  app::CommandLine node_cli;
  bool print_config = false;
  struct NodeFlag {
    const char* key;
    const char* flag;
    CLI::Option* option = nullptr;
    std::string value;
  };
  std::vector<NodeFlag> node_flags = {
      {"zk", "--zk", nullptr, ""},
      {"zk_root", "--zk-root", nullptr, ""},
      {"http", "--http", nullptr, ""},
      {"id", "--id", nullptr, ""},
      {"slots", "--slots", nullptr, ""},
      {"prefetch", "--prefetch", nullptr, ""},
      {"queues", "--queues", nullptr, ""},
      {"session_timeout_ms", "--session-timeout-ms", nullptr, ""},
      {"strategy", "--strategy", nullptr, ""},
      {"max_payload_bytes", "--max-payload-bytes", nullptr, ""},
      {"retention_count", "--retention-count", nullptr, ""},
      {"retention_age_s", "--retention-age-s", nullptr, ""},
      {"max_pending_tasks", "--max-pending-tasks", nullptr, ""},
      {"protocol", "--protocol", nullptr, ""},
      {"log_level", "--log-level", nullptr, ""},
      {"log_format", "--log-format", nullptr, ""},
      {"allow_insecure_bind", "--allow-insecure-bind", nullptr, ""},
      {"tls_cert", "--tls-cert", nullptr, ""},
      {"tls_key", "--tls-key", nullptr, ""},
      {"zk_auth_file", "--zk-auth-file", nullptr, ""},
  };
  const std::map<std::string, std::string> node_help = {
      {"zk", "ZooKeeper connect string host:port[,host:port...]"},
      {"zk_root", "Root znode of this cluster"},
      {"http", "Address the REST API listens on (port 0: any free port)"},
      {"id", "Worker id (default: host-pid-random)"},
      {"slots", "Tasks run at once"},
      {"prefetch", "Tasks queued on this worker beyond its slots (0 for long tasks)"},
      {"queues", "Queues this worker serves, comma-separated (default: default)"},
      {"session_timeout_ms", "ZooKeeper session timeout in milliseconds"},
      {"strategy", "round-robin | random | least-loaded"},
      {"max_payload_bytes", "Largest accepted task payload in bytes"},
      {"retention_count", "Finished task statuses kept at most (the leader deletes the oldest)"},
      {"retention_age_s", "Finished task statuses are deleted after this many seconds"},
      {"max_pending_tasks", "Pending tasks past which submits get 429 (0: no cap)"},
      {"protocol", "Task protocol of the znode tree: 2 (batch records; protocol 1 was removed)"},
      {"log_level", "trace|debug|info|warn|error|critical|off"},
      {"log_format", "text | json"},
      {"allow_insecure_bind", "true: serve an API without tokens on a non-loopback address"},
      {"tls_cert", "PEM certificate (chain) of the API's HTTPS"},
      {"tls_key", "PEM private key of --tls-cert"},
      {"zk_auth_file", "File whose first line is the ZooKeeper digest USER:PASSWORD"},
  };
  auto* node_cmd = app.add_subcommand(
      "node", "Run a node: REST API, worker and leader candidate (see docs/CONFIG.md)");
  node_cmd->footer(
      "Every setting also comes from the environment (DROVER_<KEY>, e.g. DROVER_SLOTS) and from\n"
      "the YAML file of --config (or DROVER_CONFIG). Precedence: flags > environment > file >\n"
      "defaults.");
  node_cmd->add_option("--config", node_cli.config_path, "YAML configuration file")
      ->envname("DROVER_CONFIG");
  node_cmd->add_flag("--print-config", print_config,
                     "Print the effective configuration as YAML and exit");
  for (auto& f : node_flags) {
    std::string help = node_help.at(f.key) + " [env " + app::envNameOf(f.key) + "]";
    f.option = node_cmd->add_option(f.flag, f.value, help);
    if (std::string(f.key) != "id") f.option->default_str(app::configValueText(defaults, f.key));
  }
  std::vector<std::string> label_values;
  auto* label_opt = node_cmd->add_option("--label", label_values,
                                         "Worker label (repeatable) [env DROVER_LABELS, a,b]");
  bool worker_flag = true, leader_flag = true;
  auto* worker_opt = node_cmd->add_flag("--worker,!--no-worker", worker_flag,
                                        "Run tasks on this node (default) [env DROVER_WORKER]");
  auto* leader_opt = node_cmd->add_flag("--leader,!--no-leader", leader_flag,
                                        "Stand for leader (default) [env DROVER_LEADER]");
  node_cmd->callback([&] {
    for (const auto& f : node_flags) {
      if (f.option->count() > 0) node_cli.flags.push_back({f.key, f.flag, f.value});
    }
    if (label_opt->count() > 0) {
      std::string joined;
      for (const auto& l : label_values) {
        if (l.find(',') != std::string::npos) {
          std::cerr << "drover: --label: a label may not contain a comma\n";
          exit_code = app::kExitUsage;
          return;
        }
        joined += (joined.empty() ? "" : ",") + l;
      }
      node_cli.flags.push_back({"labels", "--label", joined});
    }
    if (worker_opt->count() > 0) {
      node_cli.flags.push_back({"worker", "--worker", worker_flag ? "true" : "false"});
    }
    if (leader_opt->count() > 0) {
      node_cli.flags.push_back({"leader", "--leader", leader_flag ? "true" : "false"});
    }
    auto loaded = app::loadConfig(node_cli, app::processEnv());
    if (!loaded.error.empty()) {
      std::cerr << "drover: " << loaded.error << "\n";
      exit_code = app::kExitUsage;
      return;
    }
    const app::NodeConfig& node = loaded.config;
    if (auto problem = app::validate(node); !problem.empty()) {
      std::cerr << "drover: " << problem << "\n";
      exit_code = app::kExitUsage;
      return;
    }
    if (print_config) {
      std::cout << app::toYaml(node);
      exit_code = app::kExitOk;
      return;
    }
    if (!base::initLogging(node.log_level, node.log_format)) {
      std::cerr << "drover: log_level or log_format is not one of the documented values\n";
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
  app::addTokenCommands(app, exit_code);

  std::signal(SIGINT, onSignal);
  std::signal(SIGTERM, onSignal);
  std::signal(SIGPIPE, SIG_IGN);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (std::string why = explainParseError(app, argc, argv, e); !why.empty()) {
      std::cerr << why;
      return app::kExitUsage;
    }
    int code = app.exit(e);
    return code == 0 ? 0 : app::kExitUsage;
  }
  return exit_code;
}
