// drover cancel ID, drover retry ID: a task's life changed over the REST API (docs/CLI.md), and
// how the client shows states and a task's per-attempt history.

#include <fmt/format.h>
#include <unistd.h>

#include <cstdlib>
#include <iostream>
#include <memory>

#include "app/client_http.h"

namespace drover::app {

using Json = nlohmann::json;

namespace client_detail {

std::string paint(const std::string& state) {
  if (!::isatty(STDOUT_FILENO) || std::getenv("NO_COLOR") != nullptr) return state;
  const char* code = "0";
  if (state == "succeeded") code = "32";
  if (state == "failed") code = "31";
  if (state == "cancelled") code = "33";
  if (state == "running" || state == "assigned") code = "36";
  return fmt::format("\033[{}m{}\033[0m", code, state);
}

void printHistory(const Json& task) {
  auto it = task.find("history");
  if (it == task.end() || !it->is_array() || it->empty()) return;
  std::cout << "history:\n";
  for (const auto& a : *it) {
    // A `pending` end: the attempt was put back (or a retry re-opened the task).
    std::string state = str(a, "state");
    std::cout << fmt::format("  #{:<3} {:<10} {:<14} {}\n", str(a, "attempt"),
                             state == "pending" ? "retried" : state, str(a, "worker"),
                             str(a, "error"));
  }
}

}  // namespace client_detail

using namespace client_detail;

namespace {

// One POST or DELETE on a task; prints "ID STATE" (or the body with --json).
int change(const ClientOptions& o, const std::string& method, const std::string& path,
           const std::string& id) {
  auto a = call(o, method, path, nullptr, 30);
  if (a.status != 200 && a.status != 202) return failure(a);
  std::cout << (o.json ? a.body.dump() : id + " " + paint(str(a.body, "state"))) << "\n";
  return kExitOk;
}

}  // namespace

std::array<CLI::App*, 2> addControlCommands(CLI::App& app, ClientOptions& o, int& exit_code) {
  auto* cancel = app.add_subcommand("cancel", "Cancel a task (pending: at once; running: killed)");
  auto cancel_id = std::make_shared<std::string>();
  cancel->add_option("id", *cancel_id, "Task id")->required();
  cancel->callback([&o, &exit_code, cancel_id] {
    exit_code = change(o, "DELETE", "/v1/tasks/" + *cancel_id, *cancel_id);
  });

  auto* retry = app.add_subcommand(
      "retry", "Put a failed or cancelled task back under its id (protocol 2; history kept)");
  retry->footer(
      "Examples:\n  drover retry ID\n"
      "  drover tasks --state failed      # the dead letters, newest first");
  auto retry_id = std::make_shared<std::string>();
  retry->add_option("id", *retry_id, "Task id")->required();
  retry->callback([&o, &exit_code, retry_id] {
    exit_code = change(o, "POST", "/v1/tasks/" + *retry_id + "/retry", *retry_id);
  });
  return {cancel, retry};
}

}  // namespace drover::app
