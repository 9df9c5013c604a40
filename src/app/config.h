#pragma once

// The node's configuration from its three sources, with one precedence rule:
//   command-line flags > DROVER_* environment variables > the YAML file > built-in defaults.
// Every source goes through the same per-key parser (setConfigKey), so a value means the same
// thing wherever it comes from. The keys, variables and flags are documented in docs/CONFIG.md;
// the key names are a contract (packaged /etc/drover/drover.yaml files use them).
//
// Thread safety: plain functions over values; no shared state.

#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <tl/expected.hpp>
#include <utility>
#include <vector>

#include "app/node.h"

namespace drover::app {

// The configuration keys, in the order --print-config writes them.
const std::vector<std::string>& configKeys();

// The environment variable of a key: "slots" -> "DROVER_SLOTS".
std::string envNameOf(std::string_view key);

// Sets `key` from its text form: integers in decimal, booleans true/false (also yes/no, on/off,
// 1/0), labels as a comma-separated list. On error returns what is wrong (naming neither key nor
// source: the caller adds where the value came from) and leaves `config` unchanged.
std::optional<std::string> setConfigKey(NodeConfig& config, std::string_view key,
                                        std::string_view value);

// Applies a YAML document (a flat mapping of the keys above) to `config`. `source` names the
// document in errors ("FILE:LINE: ..."). Unknown keys, values of the wrong type (a list where a
// scalar belongs, a word where a number belongs) and a document that is not a mapping are errors.
// On error returns the message and leaves `config` unchanged.
std::optional<std::string> applyYaml(NodeConfig& config, const std::string& text,
                                     const std::string& source);

// Reads the file at `path` and applies it like applyYaml; a missing or unreadable file is an
// error.
std::optional<std::string> applyYamlFile(NodeConfig& config, const std::string& path);

// Looks up an environment variable; nullopt when unset. Empty values count as unset.
using EnvLookup = std::function<std::optional<std::string>(const std::string& name)>;
EnvLookup processEnv();

// Applies every DROVER_<KEY> variable that `env` has. On error leaves `config` unchanged.
std::optional<std::string> applyEnv(NodeConfig& config, const EnvLookup& env);

// What the command line said: the --config path (may be empty) and the keys given as flags, each
// with its flag name (for errors) and value text (labels joined with commas).
struct FlagValue {
  std::string key;
  std::string flag;
  std::string value;
};
struct CommandLine {
  std::string config_path;
  std::vector<FlagValue> flags;
};

// The effective configuration: defaults, then the file (--config, else DROVER_CONFIG, else none),
// then the environment, then the flags. Returns the error of the first source that fails.
struct LoadResult {
  NodeConfig config;
  std::string error;  // empty on success
};
LoadResult loadConfig(const CommandLine& command_line, const EnvLookup& env);

// The text form of one key's value, as setConfigKey reads it (labels comma-separated); "" for an
// unknown key.
std::string configValueText(const NodeConfig& config, std::string_view key);

// The configuration as a YAML document of every key, readable by applyYaml.
std::string toYaml(const NodeConfig& config);

// True for an address only this machine can reach: 127.0.0.0/8, ::1, localhost.
bool isLoopbackHost(std::string_view host);

// The ZooKeeper digest credential "user:password" from zk_auth or zk_auth_file ("" for none), or
// what is wrong (never quoting the credential).
tl::expected<std::string, std::string> zkCredential(const NodeConfig& config);

// The webhook HMAC secret from webhook_secret or webhook_secret_file ("" for none: POSTs go
// unsigned), or what is wrong (never quoting the secret).
tl::expected<std::string, std::string> webhookSecret(const NodeConfig& config);

// The webhook settings' own checks ("" when fine): ranges, and a readable secret file.
std::string validateWebhooks(const NodeConfig& config);

// The security settings' own checks ("" when fine): token lines, TLS files given in pairs, the ZK
// credential, and the refusal to serve an open API (no tokens) on `host` unless it is loopback
// or allow_insecure_bind is set.
std::string validateSecurity(const NodeConfig& config, std::string_view host);

}  // namespace drover::app
