#include "app/config.h"

#include <arpa/inet.h>
#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <charconv>
#include <cstdlib>
#include <fstream>
#include <limits>
#include <sstream>

#include "api/auth.h"

namespace drover::app {
namespace {

template <class Int>
std::optional<std::string> parseInt(std::string_view text, Int& out) {
  Int v{};
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (text.empty() || ec != std::errc() || end != text.data() + text.size()) {
    return fmt::format("'{}' is not a whole number{}", text,
                       std::is_signed_v<Int> ? "" : " of zero or more");
  }
  out = v;
  return std::nullopt;
}

std::optional<std::string> parseBool(std::string_view text, bool& out) {
  std::string t(text);
  std::transform(t.begin(), t.end(), t.begin(), [](unsigned char c) { return std::tolower(c); });
  if (t == "true" || t == "yes" || t == "on" || t == "1") {
    out = true;
  } else if (t == "false" || t == "no" || t == "off" || t == "0") {
    out = false;
  } else {
    return fmt::format("'{}' is not a boolean (true or false)", text);
  }
  return std::nullopt;
}

std::vector<std::string> splitList(std::string_view text) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= text.size()) {
    size_t comma = text.find(',', start);
    if (comma == std::string_view::npos) comma = text.size();
    std::string item(text.substr(start, comma - start));
    item.erase(0, item.find_first_not_of(" \t"));
    item.erase(item.find_last_not_of(" \t") + 1);
    if (!item.empty()) out.push_back(item);
    start = comma + 1;
  }
  return out;
}

bool isListKey(std::string_view key) {
  return key == "labels" || key == "queues" || key == "tokens" || key == "exec_allow";
}

std::optional<std::string> parseDouble(std::string_view text, double& out) {
  double v = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (text.empty() || ec != std::errc() || end != text.data() + text.size()) {
    return fmt::format("'{}' is not a number", text);
  }
  out = v;
  return std::nullopt;
}

const std::vector<std::string> kLevels = {"trace", "debug",    "info", "warn",
                                          "error", "critical", "off"};

}  // namespace

const std::vector<std::string>& configKeys() {
  static const std::vector<std::string> keys = {"zk",
                                                "zk_root",
                                                "http",
                                                "id",
                                                "slots",
                                                "prefetch",
                                                "session_timeout_ms",
                                                "worker",
                                                "leader",
                                                "strategy",
                                                "labels",
                                                "queues",
                                                "max_payload_bytes",
                                                "retention_count",
                                                "retention_age_s",
                                                "max_pending_tasks",
                                                "protocol",
                                                "log_level",
                                                "log_format",
                                                "tokens",
                                                "allow_insecure_bind",
                                                "tls_cert",
                                                "tls_key",
                                                "zk_auth",
                                                "zk_auth_file",
                                                "exec",
                                                "exec_allow",
                                                "exec_sandbox",
                                                "exec_uid",
                                                "exec_gid",
                                                "exec_work_dir",
                                                "task_memory_mb",
                                                "task_cpus",
                                                "task_pids",
                                                "container_engine",
                                                "webhook_secret",
                                                "webhook_secret_file",
                                                "webhook_max_in_flight",
                                                "webhook_max_attempts",
                                                "webhook_max_age_s",
                                                "webhook_timeout_ms",
                                                "webhook_backoff_base_ms",
                                                "webhook_backoff_cap_ms"};
  return keys;
}

std::string envNameOf(std::string_view key) {
  std::string out = "DROVER_";
  for (char c : key) out.push_back(static_cast<char>(std::toupper(static_cast<unsigned char>(c))));
  return out;
}

std::optional<std::string> setConfigKey(NodeConfig& config, std::string_view key,
                                        std::string_view value) {
  NodeConfig c = config;
  std::optional<std::string> err;
  if (key == "zk") {
    c.zk = value;
  } else if (key == "zk_root") {
    c.zk_root = value;
  } else if (key == "http") {
    c.http = value;
  } else if (key == "id") {
    c.id = value;
  } else if (key == "slots") {
    err = parseInt(value, c.slots);
  } else if (key == "prefetch") {
    err = parseInt(value, c.prefetch);
  } else if (key == "session_timeout_ms") {
    err = parseInt(value, c.session_timeout_ms);
  } else if (key == "worker") {
    err = parseBool(value, c.worker);
  } else if (key == "leader") {
    err = parseBool(value, c.leader);
  } else if (key == "strategy") {
    c.strategy = value;
  } else if (key == "labels") {
    c.labels = splitList(value);
  } else if (key == "queues") {
    c.queues = splitList(value);
  } else if (key == "max_payload_bytes") {
    err = parseInt(value, c.max_payload_bytes);
  } else if (key == "retention_count") {
    err = parseInt(value, c.retention_count);
  } else if (key == "retention_age_s") {
    err = parseInt(value, c.retention_age_s);
  } else if (key == "max_pending_tasks") {
    err = parseInt(value, c.max_pending_tasks);
  } else if (key == "protocol") {
    err = parseInt(value, c.protocol);
  } else if (key == "log_level") {
    if (std::find(kLevels.begin(), kLevels.end(), value) == kLevels.end()) {
      err = fmt::format("'{}' is not one of trace, debug, info, warn, error, critical, off", value);
    }
    c.log_level = value;
  } else if (key == "log_format") {
    if (value != "text" && value != "json") err = fmt::format("'{}' is not text or json", value);
    c.log_format = value;
  } else if (key == "tokens") {
    c.tokens = splitList(value);
    for (const auto& t : c.tokens) {
      if (auto parsed = api::parseTokenHash(t); !parsed) {
        err = parsed.error();
        break;
      }
    }
  } else if (key == "allow_insecure_bind") {
    err = parseBool(value, c.allow_insecure_bind);
  } else if (key == "tls_cert") {
    c.tls_cert = value;
  } else if (key == "tls_key") {
    c.tls_key = value;
  } else if (key == "zk_auth") {
    c.zk_auth = value;
    if (!value.empty() && (value.find(':') == std::string_view::npos || value.front() == ':')) {
      err = "must be USER:PASSWORD";  // the value is not echoed: it is a secret
    }
  } else if (key == "zk_auth_file") {
    c.zk_auth_file = value;
  } else if (key == "exec") {
    err = parseBool(value, c.exec);
  } else if (key == "exec_allow") {
    c.exec_allow = splitList(value);
  } else if (key == "exec_sandbox") {
    err = parseBool(value, c.exec_sandbox);
  } else if (key == "exec_uid") {
    err = parseInt(value, c.exec_uid);
  } else if (key == "exec_gid") {
    err = parseInt(value, c.exec_gid);
  } else if (key == "exec_work_dir") {
    c.exec_work_dir = value;
  } else if (key == "task_memory_mb") {
    err = parseInt(value, c.task_memory_mb);
  } else if (key == "task_cpus") {
    err = parseDouble(value, c.task_cpus);
  } else if (key == "task_pids") {
    err = parseInt(value, c.task_pids);
  } else if (key == "container_engine") {
    c.container_engine = value;
  } else if (key == "webhook_secret") {
    c.webhook_secret = value;
  } else if (key == "webhook_secret_file") {
    c.webhook_secret_file = value;
  } else if (key == "webhook_max_in_flight") {
    err = parseInt(value, c.webhook_max_in_flight);
  } else if (key == "webhook_max_attempts") {
    err = parseInt(value, c.webhook_max_attempts);
  } else if (key == "webhook_max_age_s") {
    err = parseInt(value, c.webhook_max_age_s);
  } else if (key == "webhook_timeout_ms") {
    err = parseInt(value, c.webhook_timeout_ms);
  } else if (key == "webhook_backoff_base_ms") {
    err = parseInt(value, c.webhook_backoff_base_ms);
  } else if (key == "webhook_backoff_cap_ms") {
    err = parseInt(value, c.webhook_backoff_cap_ms);
  } else {
    err = fmt::format("unknown key '{}'", key);
  }
  if (!err) config = std::move(c);
  return err;
}

std::optional<std::string> applyYaml(NodeConfig& config, const std::string& text,
                                     const std::string& source) {
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    return fmt::format("{}:{}: not valid YAML: {}", source, e.mark.line + 1, e.msg);
  }
  if (root.IsNull()) return std::nullopt;  // an empty file: nothing to set
  if (!root.IsMap()) {
    return fmt::format("{}:{}: expected a mapping of keys to values", source, root.Mark().line + 1);
  }
  NodeConfig c = config;
  // `webhooks:` groups the webhook_* keys: its entries count as webhook_{entry}.
  struct Entry {
    YAML::Node key;
    YAML::Node value;
    std::string prefix;
  };
  std::vector<Entry> entries;
  for (const auto& entry : root) {
    if (entry.first.IsScalar() && entry.first.Scalar() == "webhooks") {
      if (!entry.second.IsMap()) {
        return fmt::format("{}:{}: 'webhooks' must be a mapping, e.g. {{max_in_flight: 16}}",
                           source, entry.first.Mark().line + 1);
      }
      for (const auto& sub : entry.second) entries.push_back({sub.first, sub.second, "webhook_"});
      continue;
    }
    entries.push_back({entry.first, entry.second, ""});
  }
  for (const auto& entry : entries) {
    int line = entry.key.Mark().line + 1;
    if (!entry.key.IsScalar()) return fmt::format("{}:{}: keys must be plain words", source, line);
    std::string key = entry.prefix + entry.key.Scalar();
    const auto& keys = configKeys();
    if (std::find(keys.begin(), keys.end(), key) == keys.end()) {
      return fmt::format("{}:{}: unknown key '{}' (known keys: {})", source, line, key,
                         fmt::join(keys, ", "));
    }
    const YAML::Node& value = entry.value;
    std::string text_value;
    if (isListKey(key)) {
      if (value.IsNull()) {
        text_value = "";
      } else if (!value.IsSequence()) {
        return fmt::format("{}:{}: '{}' must be a list, e.g. [gpu, ssd]", source, line, key);
      } else {
        std::vector<std::string> items;
        for (const auto& item : value) {
          if (!item.IsScalar()) {
            return fmt::format("{}:{}: every item of '{}' must be a plain value", source,
                               item.Mark().line + 1, key);
          }
          if (item.Scalar().find(',') != std::string::npos) {
            return fmt::format("{}:{}: an item of '{}' may not contain a comma", source,
                               item.Mark().line + 1, key);
          }
          items.push_back(item.Scalar());
        }
        text_value = fmt::format("{}", fmt::join(items, ","));
      }
    } else {
      if (!value.IsScalar()) {
        return fmt::format("{}:{}: '{}' must be a single value, not a {}", source, line, key,
                           value.IsSequence() ? "list"
                           : value.IsMap()    ? "mapping"
                                              : "null");
      }
      text_value = value.Scalar();
    }
    if (auto err = setConfigKey(c, key, text_value)) {
      return fmt::format("{}:{}: {}: {}", source, line, key, *err);
    }
  }
  config = std::move(c);
  return std::nullopt;
}

std::optional<std::string> applyYamlFile(NodeConfig& config, const std::string& path) {
  std::ifstream in(path);
  if (!in) return fmt::format("cannot read the config file {}", path);
  std::stringstream ss;
  ss << in.rdbuf();
  if (in.bad()) return fmt::format("cannot read the config file {}", path);
  return applyYaml(config, ss.str(), path);
}

EnvLookup processEnv() {
  return [](const std::string& name) -> std::optional<std::string> {
    const char* v = std::getenv(name.c_str());
    if (v == nullptr || *v == '\0') return std::nullopt;
    return std::string(v);
  };
}

std::optional<std::string> applyEnv(NodeConfig& config, const EnvLookup& env) {
  NodeConfig c = config;
  for (const auto& key : configKeys()) {
    std::string name = envNameOf(key);
    auto value = env(name);
    if (!value || value->empty()) continue;
    if (auto err = setConfigKey(c, key, *value)) return fmt::format("{}: {}", name, *err);
  }
  config = std::move(c);
  return std::nullopt;
}

LoadResult loadConfig(const CommandLine& command_line, const EnvLookup& env) {
  LoadResult r;
  std::string path = command_line.config_path;
  if (path.empty()) path = env("DROVER_CONFIG").value_or("");
  if (!path.empty()) {
    if (auto err = applyYamlFile(r.config, path)) {
      r.error = *err;
      return r;
    }
  }
  if (auto err = applyEnv(r.config, env)) {
    r.error = *err;
    return r;
  }
  for (const auto& f : command_line.flags) {
    if (auto err = setConfigKey(r.config, f.key, f.value)) {
      r.error = fmt::format("{}: {}", f.flag, *err);
      return r;
    }
  }
  return r;
}

std::string configValueText(const NodeConfig& c, std::string_view key) {
  if (key == "zk") return c.zk;
  if (key == "zk_root") return c.zk_root;
  if (key == "http") return c.http;
  if (key == "id") return c.id;
  if (key == "slots") return std::to_string(c.slots);
  if (key == "prefetch") return std::to_string(c.prefetch);
  if (key == "session_timeout_ms") return std::to_string(c.session_timeout_ms);
  if (key == "worker") return c.worker ? "true" : "false";
  if (key == "leader") return c.leader ? "true" : "false";
  if (key == "strategy") return c.strategy;
  if (key == "labels") return fmt::format("{}", fmt::join(c.labels, ","));
  if (key == "queues") return fmt::format("{}", fmt::join(c.queues, ","));
  if (key == "max_payload_bytes") return std::to_string(c.max_payload_bytes);
  if (key == "retention_count") return std::to_string(c.retention_count);
  if (key == "retention_age_s") return std::to_string(c.retention_age_s);
  if (key == "max_pending_tasks") return std::to_string(c.max_pending_tasks);
  if (key == "protocol") return std::to_string(c.protocol);
  if (key == "log_level") return c.log_level;
  if (key == "log_format") return c.log_format;
  if (key == "tokens") return fmt::format("{}", fmt::join(c.tokens, ","));
  if (key == "allow_insecure_bind") return c.allow_insecure_bind ? "true" : "false";
  if (key == "tls_cert") return c.tls_cert;
  if (key == "tls_key") return c.tls_key;
  if (key == "zk_auth") return c.zk_auth;
  if (key == "zk_auth_file") return c.zk_auth_file;
  if (key == "exec") return c.exec ? "true" : "false";
  if (key == "exec_allow") return fmt::format("{}", fmt::join(c.exec_allow, ","));
  if (key == "exec_sandbox") return c.exec_sandbox ? "true" : "false";
  if (key == "exec_uid") return std::to_string(c.exec_uid);
  if (key == "exec_gid") return std::to_string(c.exec_gid);
  if (key == "exec_work_dir") return c.exec_work_dir;
  if (key == "task_memory_mb") return std::to_string(c.task_memory_mb);
  if (key == "task_cpus") return fmt::format("{}", c.task_cpus);
  if (key == "task_pids") return std::to_string(c.task_pids);
  if (key == "container_engine") return c.container_engine;
  if (key == "webhook_secret") return c.webhook_secret;
  if (key == "webhook_secret_file") return c.webhook_secret_file;
  if (key == "webhook_max_in_flight") return std::to_string(c.webhook_max_in_flight);
  if (key == "webhook_max_attempts") return std::to_string(c.webhook_max_attempts);
  if (key == "webhook_max_age_s") return std::to_string(c.webhook_max_age_s);
  if (key == "webhook_timeout_ms") return std::to_string(c.webhook_timeout_ms);
  if (key == "webhook_backoff_base_ms") return std::to_string(c.webhook_backoff_base_ms);
  if (key == "webhook_backoff_cap_ms") return std::to_string(c.webhook_backoff_cap_ms);
  return "";
}

std::string toYaml(const NodeConfig& c) {
  YAML::Emitter out;
  out << YAML::BeginMap;
  out << YAML::Key << "zk" << YAML::Value << c.zk;
  out << YAML::Key << "zk_root" << YAML::Value << c.zk_root;
  out << YAML::Key << "http" << YAML::Value << c.http;
  out << YAML::Key << "id" << YAML::Value << YAML::DoubleQuoted << c.id;
  out << YAML::Key << "slots" << YAML::Value << c.slots;
  out << YAML::Key << "prefetch" << YAML::Value << c.prefetch;
  out << YAML::Key << "session_timeout_ms" << YAML::Value << c.session_timeout_ms;
  out << YAML::Key << "worker" << YAML::Value << c.worker;
  out << YAML::Key << "leader" << YAML::Value << c.leader;
  out << YAML::Key << "strategy" << YAML::Value << c.strategy;
  out << YAML::Key << "labels" << YAML::Value << YAML::Flow << c.labels;
  out << YAML::Key << "queues" << YAML::Value << YAML::Flow << c.queues;
  out << YAML::Key << "max_payload_bytes" << YAML::Value << c.max_payload_bytes;
  out << YAML::Key << "retention_count" << YAML::Value << c.retention_count;
  out << YAML::Key << "retention_age_s" << YAML::Value << c.retention_age_s;
  out << YAML::Key << "max_pending_tasks" << YAML::Value << c.max_pending_tasks;
  out << YAML::Key << "protocol" << YAML::Value << c.protocol;
  out << YAML::Key << "log_level" << YAML::Value << c.log_level;
  out << YAML::Key << "log_format" << YAML::Value << c.log_format;
  out << YAML::Key << "tokens" << YAML::Value << YAML::Flow << c.tokens;
  out << YAML::Key << "allow_insecure_bind" << YAML::Value << c.allow_insecure_bind;
  out << YAML::Key << "tls_cert" << YAML::Value << YAML::DoubleQuoted << c.tls_cert;
  out << YAML::Key << "tls_key" << YAML::Value << YAML::DoubleQuoted << c.tls_key;
  out << YAML::Key << "zk_auth" << YAML::Value << YAML::DoubleQuoted << c.zk_auth;
  out << YAML::Key << "zk_auth_file" << YAML::Value << YAML::DoubleQuoted << c.zk_auth_file;
  out << YAML::Key << "exec" << YAML::Value << c.exec;
  out << YAML::Key << "exec_allow" << YAML::Value << YAML::Flow << c.exec_allow;
  out << YAML::Key << "exec_sandbox" << YAML::Value << c.exec_sandbox;
  out << YAML::Key << "exec_uid" << YAML::Value << c.exec_uid;
  out << YAML::Key << "exec_gid" << YAML::Value << c.exec_gid;
  out << YAML::Key << "exec_work_dir" << YAML::Value << c.exec_work_dir;
  out << YAML::Key << "task_memory_mb" << YAML::Value << c.task_memory_mb;
  out << YAML::Key << "task_cpus" << YAML::Value << configValueText(c, "task_cpus");
  out << YAML::Key << "task_pids" << YAML::Value << c.task_pids;
  out << YAML::Key << "container_engine" << YAML::Value << c.container_engine;
  out << YAML::Key << "webhook_secret" << YAML::Value << YAML::DoubleQuoted << c.webhook_secret;
  out << YAML::Key << "webhook_secret_file" << YAML::Value << YAML::DoubleQuoted
      << c.webhook_secret_file;
  out << YAML::Key << "webhook_max_in_flight" << YAML::Value << c.webhook_max_in_flight;
  out << YAML::Key << "webhook_max_attempts" << YAML::Value << c.webhook_max_attempts;
  out << YAML::Key << "webhook_max_age_s" << YAML::Value << c.webhook_max_age_s;
  out << YAML::Key << "webhook_timeout_ms" << YAML::Value << c.webhook_timeout_ms;
  out << YAML::Key << "webhook_backoff_base_ms" << YAML::Value << c.webhook_backoff_base_ms;
  out << YAML::Key << "webhook_backoff_cap_ms" << YAML::Value << c.webhook_backoff_cap_ms;
  out << YAML::EndMap;
  return std::string(out.c_str()) + "\n";
}

bool isLoopbackHost(std::string_view host) {
  if (host == "localhost" || host == "::1" || host == "[::1]") return true;
  in_addr v4{};
  std::string h(host);
  return ::inet_pton(AF_INET, h.c_str(), &v4) == 1 && (ntohl(v4.s_addr) >> 24) == 127;
}

tl::expected<std::string, std::string> zkCredential(const NodeConfig& c) {
  if (!c.zk_auth.empty() && !c.zk_auth_file.empty()) {
    return tl::unexpected(std::string("set zk_auth or zk_auth_file, not both"));
  }
  std::string cred = c.zk_auth;
  if (!c.zk_auth_file.empty()) {
    std::ifstream in(c.zk_auth_file);
    if (!in) return tl::unexpected(fmt::format("cannot read zk_auth_file {}", c.zk_auth_file));
    std::getline(in, cred);
    while (!cred.empty() && (cred.back() == '\r' || cred.back() == ' ')) cred.pop_back();
    if (cred.find(':') == std::string::npos || cred.front() == ':') {
      return tl::unexpected(
          fmt::format("zk_auth_file {}: its first line must be USER:PASSWORD", c.zk_auth_file));
    }
  }
  return cred;
}

tl::expected<std::string, std::string> webhookSecret(const NodeConfig& c) {
  if (!c.webhook_secret.empty() && !c.webhook_secret_file.empty()) {
    return tl::unexpected(std::string("set webhook_secret or webhook_secret_file, not both"));
  }
  std::string secret = c.webhook_secret;
  if (!c.webhook_secret_file.empty()) {
    std::ifstream in(c.webhook_secret_file);
    if (!in) {
      return tl::unexpected(
          fmt::format("cannot read webhook_secret_file {}", c.webhook_secret_file));
    }
    std::getline(in, secret);
    while (!secret.empty() && (secret.back() == '\r' || secret.back() == ' ')) secret.pop_back();
    if (secret.empty()) {
      return tl::unexpected(
          fmt::format("webhook_secret_file {}: its first line is empty", c.webhook_secret_file));
    }
  }
  return secret;
}

std::string validateWebhooks(const NodeConfig& c) {
  if (auto secret = webhookSecret(c); !secret) return secret.error();
  if (c.webhook_max_in_flight < 1 || c.webhook_max_in_flight > 1024) {
    return "webhook_max_in_flight must be from 1 to 1024";
  }
  if (c.webhook_max_attempts < 1 || c.webhook_max_attempts > 100) {
    return "webhook_max_attempts must be from 1 to 100";
  }
  if (c.webhook_max_age_s < 1) return "webhook_max_age_s must be at least 1";
  if (c.webhook_timeout_ms < 100 || c.webhook_timeout_ms > 600000) {
    return "webhook_timeout_ms must be from 100 to 600000";
  }
  if (c.webhook_backoff_base_ms < 1 || c.webhook_backoff_base_ms > 3600000) {
    return "webhook_backoff_base_ms must be from 1 to 3600000";
  }
  if (c.webhook_backoff_cap_ms < c.webhook_backoff_base_ms || c.webhook_backoff_cap_ms > 86400000) {
    return "webhook_backoff_cap_ms must be from webhook_backoff_base_ms to 86400000";
  }
  return "";
}

std::string validateSecurity(const NodeConfig& c, std::string_view host) {
  for (const auto& t : c.tokens) {
    if (auto parsed = api::parseTokenHash(t); !parsed) return "tokens: " + parsed.error();
  }
  if (c.tls_cert.empty() != c.tls_key.empty()) {
    return "tls_cert and tls_key must be given together (or neither, for plain HTTP)";
  }
  if (auto cred = zkCredential(c); !cred) return cred.error();
  if (c.tokens.empty() && !c.allow_insecure_bind && !isLoopbackHost(host)) {
    return fmt::format(
        "--http {}: no tokens are configured, so anyone who can reach this address could submit "
        "and run commands; bind a loopback address, configure tokens (docs/SECURITY.md), or set "
        "allow_insecure_bind: true if an open API there is on purpose",
        host.empty() ? std::string("(all addresses)") : std::string(host));
  }
  return "";
}

}  // namespace drover::app
