#pragma once

#include <CLI/CLI.hpp>

namespace drover::app {

// `drover token new --role R` makes a random token and prints it once, with the line that goes
// into a node's `tokens:` configuration (its role and SHA-256); `drover token hash --role R` reads
// a token from stdin (never from argv, which other users can see in ps) and prints that line.
// See docs/SECURITY.md. Each subcommand stores its exit code in `exit_code`.
void addTokenCommands(CLI::App& app, int& exit_code);

}  // namespace drover::app
