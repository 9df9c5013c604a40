#pragma once

// What the client command files (client.cc, client_schedules.cc, client_control.cc) share: one HTTP
// call to the API with the connection flags, and how an answer is reported.

#include <CLI/CLI.hpp>
#include <array>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>

#include "app/client.h"

namespace drover::app {
namespace client_detail {

struct Answer {
  int status = 0;  // 0: no answer
  nlohmann::json body;
  std::string error;
  bool usage = false;  // the request was never sent: a bad --server (exit 2, not 3)
};

// One call; `body` (may be null) is sent as JSON for POST and PUT.
Answer call(const ClientOptions& o, const std::string& method, const std::string& path,
            const nlohmann::json* body, int read_timeout_s);
// Reports a non-2xx answer on stderr and maps it to an exit code.
int failure(const Answer& a);
// A field for a table: "-" when missing or null.
std::string str(const nlohmann::json& j, const char* key);
// A state, coloured on a terminal (NO_COLOR: plain).
std::string paint(const std::string& state);
// The task's per-attempt history (protocol 2), when it has one.
void printHistory(const nlohmann::json& task);
// GETs `path`: prints the body with --json, else hands it to `human`.
int show(const ClientOptions& o, const std::string& path,
         const std::function<void(const nlohmann::json&)>& human);

}  // namespace client_detail

// schedule create|list|show|delete (docs/CLI.md); returns the commands that take the
// connection flags.
std::array<CLI::App*, 4> addScheduleCommands(CLI::App& app, ClientOptions& o, int& exit_code);
// cancel ID, retry ID (client_control.cc).
std::array<CLI::App*, 2> addControlCommands(CLI::App& app, ClientOptions& o, int& exit_code);

}  // namespace drover::app
