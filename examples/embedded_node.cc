// A C++ program that embeds a Drover node and adds a task type of its own, "reverse", which
// returns payload.text reversed. Run it like `drover node`:
//   embedded_node --zk 127.0.0.1:2181 --http 127.0.0.1:8090
// then: drover submit --server http://127.0.0.1:8090 --type reverse --payload '{"text":"abc"}'
#include <CLI/CLI.hpp>
#include <csignal>
#include <iostream>
#include <optional>
#include <string>

#include "app/node.h"
#include "base/log.h"
#include "worker/handler.h"

namespace {
drover::base::StopFlag g_stop;  // a signal handler may request it
}

int main(int argc, char** argv) {
  using namespace drover;
  app::NodeConfig config;
  CLI::App cli{"a Drover node with a custom task type"};
  cli.add_option("--zk", config.zk);
  cli.add_option("--zk-root", config.zk_root);
  cli.add_option("--http", config.http);
  cli.add_option("--id", config.id);
  cli.add_option("--slots", config.slots);
  cli.add_option("--session-timeout-ms", config.session_timeout_ms);
  cli.add_option("--protocol", config.protocol);
  CLI11_PARSE(cli, argc, argv);
  base::initLogging("info");

  // Handlers get the task's id and attempt, so they can make their side effects idempotent. The
  // validator runs at submit: a payload it refuses is a 400 naming the field, and nothing is
  // written (the handler still checks what it reads).
  app::handlerRegistry().add(
      "reverse",
      [](worker::TaskContext& task) {
        if (!task.payload.is_object() || !task.payload.contains("text") ||
            !task.payload["text"].is_string()) {
          return worker::HandlerResult::failure("payload.text must be a string");
        }
        std::string text = task.payload["text"];
        return worker::HandlerResult::success(
            {{"text", std::string(text.rbegin(), text.rend())}, {"attempt", task.attempt}});
      },
      [](const tasks::Json& payload) -> std::optional<tasks::ValidationError> {
        if (payload.is_object() && payload.contains("text") && payload["text"].is_string()) {
          return std::nullopt;
        }
        return tasks::ValidationError{"payload.text", "is required (a string)"};
      });

  if (auto problem = app::validate(config); !problem.empty()) {
    std::cerr << problem << "\n";
    return 2;
  }
  std::signal(SIGINT, [](int) { g_stop.request(); });
  std::signal(SIGTERM, [](int) { g_stop.request(); });
  return app::runNode(config, g_stop);
}
