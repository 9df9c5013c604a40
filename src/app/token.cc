#include "app/token.h"

#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "api/auth.h"
#include "app/client.h"

namespace drover::app {

void addTokenCommands(CLI::App& app, int& exit_code) {
  auto* token = app.add_subcommand("token", "Make API tokens and their config lines");
  token->require_subcommand(1);
  struct Args {
    std::string role = "read";
    bool json = false;
  };
  auto args = std::make_shared<Args>();
  auto check_role = [args, &exit_code]() -> bool {
    if (api::parseTokenRole(args->role)) return true;
    std::cerr << "drover: --role must be read, submit or admin\n";
    exit_code = kExitUsage;
    return false;
  };

  auto* make = token->add_subcommand("new", "Make a random token and print it once");
  make->add_option("--role", args->role, "read, submit or admin")->capture_default_str();
  make->add_flag("--json", args->json, "Machine-readable output");
  make->footer(
      "The token is shown once and stored nowhere: the node keeps only its hash. Add the config\n"
      "line to the node's `tokens:` list; give the token to the client (DROVER_TOKEN or --token).");
  make->callback([args, check_role, &exit_code] {
    if (!check_role()) return;
    std::string t = api::newToken();
    api::TokenHash h{*api::parseTokenRole(args->role), api::sha256Hex(t)};
    if (args->json) {
      std::cout << nlohmann::json{{"token", t}, {"role", args->role}, {"config", api::toText(h)}}
                << "\n";
    } else {
      std::cout << "token:  " << t << "\n"
                << "config: " << api::toText(h) << "\n";
    }
    exit_code = kExitOk;
  });

  auto* hash = token->add_subcommand("hash", "Print the config line of a token read from stdin");
  hash->add_option("--role", args->role, "read, submit or admin")->capture_default_str();
  hash->callback([args, check_role, &exit_code] {
    if (!check_role()) return;
    std::string t;
    std::getline(std::cin, t);
    while (!t.empty() && (t.back() == '\r' || t.back() == ' ')) t.pop_back();
    if (t.empty()) {
      std::cerr << "drover: token hash reads the token from stdin; got an empty line\n";
      exit_code = kExitUsage;
      return;
    }
    std::cout << api::toText({*api::parseTokenRole(args->role), api::sha256Hex(t)}) << "\n";
    exit_code = kExitOk;
  });
}

}  // namespace drover::app
