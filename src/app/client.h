#pragma once

#include <CLI/CLI.hpp>
#include <string>
#include <vector>

namespace drover::app {

// Exit codes of the client commands (documented in docs/CLI.md).
enum ExitCode : int {
  kExitOk = 0,
  kExitTaskFailed = 1,   // wait/submit --wait: a task ended failed or cancelled
  kExitUsage = 2,        // bad flags or arguments
  kExitUnreachable = 3,  // no answer from the server
  kExitNotFound = 4,     // no such task
  kExitRejected = 5,     // the server refused the request (4xx other than 404)
  kExitServerError = 6,  // 5xx (e.g. 503: ZooKeeper has no quorum)
  kExitTimeout = 7,      // wait --timeout passed before the tasks finished
};

inline constexpr const char* kDefaultServer = "http://127.0.0.1:8080";

struct ClientOptions {
  // --server; when empty, DROVER_SERVER, else kDefaultServer (the flag wins over the variable).
  // http:// or https://.
  std::string server;
  bool json = false;
  // Sent as "Authorization: Bearer TOKEN" when set (--token, else DROVER_TOKEN).
  std::string token;
  // PEM file of the CA (or the self-signed certificate) an https server must be signed by
  // (--ca-file, else DROVER_CA_FILE); empty: the system's trusted CAs.
  std::string ca_file;
};

// The API base URL the client commands use: `flag` if given, else `env` (DROVER_SERVER) if set,
// else kDefaultServer; trailing slashes dropped. An error (empty result with `error` set) when the
// URL is not http://HOST[:PORT] or https://HOST[:PORT].
struct ServerUrl {
  std::string url;
  std::string error;
};
ServerUrl resolveServer(const std::string& flag, const char* env);

// Adds submit, status, wait, cancel, tasks, workers and cluster to `app`. Each subcommand stores
// its exit code in `exit_code` when it runs.
void addClientCommands(CLI::App& app, ClientOptions& options, int& exit_code);

}  // namespace drover::app
