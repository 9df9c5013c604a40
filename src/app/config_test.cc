#include "app/config.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <map>

namespace drover::app {
namespace {

EnvLookup fakeEnv(std::map<std::string, std::string> vars) {
  return [vars = std::move(vars)](const std::string& name) -> std::optional<std::string> {
    auto it = vars.find(name);
    if (it == vars.end()) return std::nullopt;
    return it->second;
  };
}

class TempFile {
 public:
  explicit TempFile(const std::string& text) {
    char name[] = "/tmp/drover-config-test-XXXXXX";
    int fd = mkstemp(name);
    EXPECT_GE(fd, 0);
    close(fd);
    path_ = name;
    std::ofstream(path_) << text;
  }
  ~TempFile() { std::remove(path_.c_str()); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

TEST(Config, DefaultsWhenNothingIsGiven) {
  auto r = loadConfig({}, fakeEnv({}));
  ASSERT_EQ(r.error, "");
  EXPECT_EQ(toYaml(r.config), toYaml(NodeConfig{}));
}

TEST(Config, FlagsBeatEnvironmentBeatFileBeatDefaults) {
  TempFile file(
      "zk: file:2181\n"
      "slots: 8\n"
      "strategy: random\n"
      "labels: [gpu, ssd]\n"
      "log_format: json\n");
  auto env = fakeEnv({{"DROVER_SLOTS", "16"}, {"DROVER_STRATEGY", "round-robin"}});
  CommandLine cl{file.path(), {{"strategy", "--strategy", "least-loaded"}}};
  auto r = loadConfig(cl, env);
  ASSERT_EQ(r.error, "");
  EXPECT_EQ(r.config.zk, "file:2181");           // file only
  EXPECT_EQ(r.config.slots, 16);                 // env over file
  EXPECT_EQ(r.config.strategy, "least-loaded");  // flag over env and file
  EXPECT_EQ(r.config.labels, (std::vector<std::string>{"gpu", "ssd"}));
  EXPECT_EQ(r.config.log_format, "json");
  EXPECT_EQ(r.config.http, NodeConfig{}.http);  // default
}

TEST(Config, ConfigFileFromEnvironmentUnlessFlagged) {
  TempFile a("slots: 3\n");
  TempFile b("slots: 5\n");
  auto env = fakeEnv({{"DROVER_CONFIG", a.path()}});
  EXPECT_EQ(loadConfig({}, env).config.slots, 3);
  EXPECT_EQ(loadConfig({b.path(), {}}, env).config.slots, 5);
}

TEST(Config, EnvironmentCoversEveryKey) {
  auto env = fakeEnv({{"DROVER_ZK", "z:1"},
                      {"DROVER_ZK_ROOT", "/r"},
                      {"DROVER_HTTP", "0.0.0.0:9"},
                      {"DROVER_ID", "n1"},
                      {"DROVER_SLOTS", "2"},
                      {"DROVER_PREFETCH", "0"},
                      {"DROVER_SESSION_TIMEOUT_MS", "5000"},
                      {"DROVER_WORKER", "false"},
                      {"DROVER_LEADER", "no"},
                      {"DROVER_STRATEGY", "random"},
                      {"DROVER_LABELS", "a, b,,c"},
                      {"DROVER_MAX_PAYLOAD_BYTES", "1024"},
                      {"DROVER_MAX_PENDING_TASKS", "500"},
                      {"DROVER_LOG_LEVEL", "debug"},
                      {"DROVER_LOG_FORMAT", "json"}});
  auto r = loadConfig({}, env);
  ASSERT_EQ(r.error, "");
  const auto& c = r.config;
  EXPECT_EQ(c.zk, "z:1");
  EXPECT_EQ(c.zk_root, "/r");
  EXPECT_EQ(c.http, "0.0.0.0:9");
  EXPECT_EQ(c.id, "n1");
  EXPECT_EQ(c.slots, 2);
  EXPECT_EQ(c.prefetch, 0);
  EXPECT_EQ(c.session_timeout_ms, 5000);
  EXPECT_FALSE(c.worker);
  EXPECT_FALSE(c.leader);
  EXPECT_EQ(c.strategy, "random");
  EXPECT_EQ(c.labels, (std::vector<std::string>{"a", "b", "c"}));
  EXPECT_EQ(c.max_payload_bytes, 1024u);
  EXPECT_EQ(c.max_pending_tasks, 500);
  EXPECT_EQ(c.log_level, "debug");
  EXPECT_EQ(c.log_format, "json");
}

TEST(Config, UnknownKeyIsAnErrorNamingKeyAndLine) {
  NodeConfig c;
  auto err = applyYaml(c, "zk: a:1\n\nslotz: 4\n", "drover.yaml");
  ASSERT_TRUE(err.has_value());
  EXPECT_NE(err->find("drover.yaml:3:"), std::string::npos) << *err;
  EXPECT_NE(err->find("unknown key 'slotz'"), std::string::npos) << *err;
  EXPECT_EQ(c.zk, NodeConfig{}.zk) << "nothing may change on error";
}

TEST(Config, WrongTypesAreErrors) {
  struct Case {
    std::string yaml;
    std::string expect;
  };
  for (const auto& [yaml, expect] : std::vector<Case>{
           {"slots: many\n", "slots: 'many' is not a whole number"},
           {"slots: 4.5\n", "not a whole number"},
           {"slots: [1]\n", "must be a single value"},
           {"worker: perhaps\n", "not a boolean"},
           {"labels: gpu\n", "must be a list"},
           {"labels: [[a]]\n", "plain value"},
           {"max_payload_bytes: -1\n", "zero or more"},
           {"log_format: xml\n", "not text or json"},
           {"log_level: loud\n", "not one of"},
           {"zk: {host: a}\n", "not a mapping"},
           {"- zk\n", "expected a mapping"},
           {"zk: [unclosed\n", "not valid YAML"},
       }) {
    NodeConfig c;
    auto err = applyYaml(c, yaml, "f.yaml");
    ASSERT_TRUE(err.has_value()) << yaml;
    EXPECT_NE(err->find(expect), std::string::npos) << yaml << " gave " << *err;
    EXPECT_EQ(err->rfind("f.yaml:", 0), 0u) << *err;
  }
}

TEST(Config, BadEnvironmentAndFlagValuesNameTheirSource) {
  auto r = loadConfig({}, fakeEnv({{"DROVER_SLOTS", "x"}}));
  EXPECT_EQ(r.error.rfind("DROVER_SLOTS: ", 0), 0u) << r.error;
  r = loadConfig({"", {{"session_timeout_ms", "--session-timeout-ms", "soon"}}}, fakeEnv({}));
  EXPECT_EQ(r.error.rfind("--session-timeout-ms: ", 0), 0u) << r.error;
  r = loadConfig({"/nonexistent/drover.yaml", {}}, fakeEnv({}));
  EXPECT_NE(r.error.find("cannot read the config file /nonexistent/drover.yaml"),
            std::string::npos);
}

TEST(Config, EmptyFileChangesNothing) {
  NodeConfig c;
  EXPECT_FALSE(applyYaml(c, "", "f").has_value());
  EXPECT_FALSE(applyYaml(c, "# only a comment\n", "f").has_value());
  EXPECT_EQ(toYaml(c), toYaml(NodeConfig{}));
}

TEST(Config, PrintedConfigReadsBackTheSame) {
  NodeConfig c;
  c.zk = "a:1,b:2";
  c.zk_root = "/x";
  c.id = "";
  c.slots = 7;
  c.worker = false;
  c.labels = {"gpu", "with space", "yes"};
  c.max_payload_bytes = 123;
  c.log_level = "warn";
  c.tokens = {"read:" + std::string(64, 'a'), "admin:" + std::string(64, 'b')};
  c.allow_insecure_bind = true;
  c.tls_cert = "/etc/drover/api.crt";
  c.tls_key = "/etc/drover/api.key";
  c.zk_auth = "drover:s3cret";
  std::string yaml = toYaml(c);
  for (const auto& key : configKeys()) {
    EXPECT_NE(yaml.find(key + ":"), std::string::npos) << "missing " << key << " in\n" << yaml;
  }
  NodeConfig back;
  back.slots = 1;
  auto err = applyYaml(back, yaml, "printed");
  ASSERT_FALSE(err.has_value()) << *err << "\n" << yaml;
  EXPECT_EQ(toYaml(back), yaml);
  EXPECT_EQ(back.labels, c.labels);
  EXPECT_FALSE(back.worker);
  EXPECT_EQ(back.id, "");
  EXPECT_EQ(back.tokens, c.tokens);
  EXPECT_EQ(back.zk_auth, c.zk_auth);
}

TEST(Config, ValueTextReadsBackThroughSetConfigKey) {
  NodeConfig c;
  c.labels = {"a", "b"};
  c.leader = false;
  c.slots = 9;
  for (const auto& key : configKeys()) {
    NodeConfig back;
    ASSERT_FALSE(setConfigKey(back, key, configValueText(c, key)).has_value()) << key;
    EXPECT_EQ(configValueText(back, key), configValueText(c, key)) << key;
  }
}

TEST(Config, PrefetchIsValidatedLikeSlots) {
  NodeConfig c;
  EXPECT_EQ(c.prefetch, 16);  // the documented default
  EXPECT_EQ(validate(c), "");
  c.prefetch = -1;
  EXPECT_EQ(validate(c), "--prefetch must be from 0 to 4096");
  c.prefetch = 4097;
  EXPECT_EQ(validate(c), "--prefetch must be from 0 to 4096");
  c.prefetch = 0;
  EXPECT_EQ(validate(c), "");
}

// The flag and the config key stay for one release; only 2 is accepted.
TEST(Config, ProtocolOneIsRefusedWithWhatToDo) {
  NodeConfig c;
  EXPECT_EQ(c.protocol, 2);
  EXPECT_EQ(validate(c), "");
  EXPECT_FALSE(setConfigKey(c, "protocol", "1").has_value());
  EXPECT_EQ(validate(c), "protocol 1 was removed; use a fresh --zk-root");
  c.protocol = 3;
  EXPECT_EQ(validate(c), "--protocol must be 2");
}

TEST(Config, MaxPendingTasks) {
  NodeConfig c;
  EXPECT_EQ(c.max_pending_tasks, 1000000);  // the documented default
  EXPECT_EQ(validate(c), "");
  c.max_pending_tasks = 0;  // no cap
  EXPECT_EQ(validate(c), "");
  c.max_pending_tasks = -1;
  EXPECT_EQ(validate(c), "--max-pending-tasks must be 0 (no cap) or more");
  EXPECT_TRUE(setConfigKey(c, "max_pending_tasks", "many").has_value());
  EXPECT_FALSE(setConfigKey(c, "max_pending_tasks", "25").has_value());
  EXPECT_EQ(c.max_pending_tasks, 25);
}

TEST(Config, IsolationKeys) {
  NodeConfig c;
  // The documented defaults: exec on, sandboxed, as nobody, with memory and process limits.
  EXPECT_TRUE(c.exec);
  EXPECT_TRUE(c.exec_sandbox);
  EXPECT_TRUE(c.exec_allow.empty());
  EXPECT_EQ(c.exec_uid, 65534);
  EXPECT_EQ(c.task_memory_mb, 1024);
  EXPECT_EQ(c.task_pids, 1024);
  EXPECT_EQ(c.task_cpus, 0);
  EXPECT_EQ(validate(c), "");
  auto err = applyYaml(c,
                       "exec_allow: [/usr/bin/python3, /usr/bin/env]\n"
                       "exec_sandbox: false\n"
                       "task_cpus: 0.5\n"
                       "task_memory_mb: 64\n"
                       "container_engine: docker\n",
                       "f");
  ASSERT_FALSE(err.has_value()) << *err;
  EXPECT_EQ(c.exec_allow, (std::vector<std::string>{"/usr/bin/python3", "/usr/bin/env"}));
  EXPECT_FALSE(c.exec_sandbox);
  EXPECT_EQ(c.task_cpus, 0.5);
  EXPECT_EQ(c.container_engine, "docker");
  EXPECT_EQ(validate(c), "");
  EXPECT_TRUE(setConfigKey(c, "task_cpus", "half").has_value());
  EXPECT_TRUE(setConfigKey(c, "exec", "perhaps").has_value());
  c.exec_allow = {"python3"};
  EXPECT_EQ(validate(c), "exec_allow must list absolute program paths");
  c.exec_allow = {};
  c.task_memory_mb = 2;
  EXPECT_NE(validate(c), "");
  c.task_memory_mb = 0;  // no limit
  c.exec_work_dir = "relative";
  EXPECT_NE(validate(c), "");
  c.exec_work_dir = "/tmp/w";
  c.container_engine = " ";
  EXPECT_NE(validate(c), "");
}

TEST(Config, EnvNames) {
  EXPECT_EQ(envNameOf("session_timeout_ms"), "DROVER_SESSION_TIMEOUT_MS");
  EXPECT_EQ(envNameOf("zk"), "DROVER_ZK");
}

}  // namespace
}  // namespace drover::app

namespace drover::app {
namespace {

const std::string kHash(64, 'c');

TEST(SecurityConfig, TokensFromFileEnvironmentAndTheirErrors) {
  TempFile f("tokens:\n  - read:" + kHash + "\n  - submit:" + kHash + "\n");
  CommandLine cl;
  cl.config_path = f.path();
  auto r = loadConfig(cl, fakeEnv({}));
  ASSERT_EQ(r.error, "");
  EXPECT_EQ(r.config.tokens, (std::vector<std::string>{"read:" + kHash, "submit:" + kHash}));
  // The environment replaces the file's list.
  r = loadConfig(cl, fakeEnv({{"DROVER_TOKENS", "admin:" + kHash}}));
  ASSERT_EQ(r.error, "");
  EXPECT_EQ(r.config.tokens, (std::vector<std::string>{"admin:" + kHash}));
  // A token pasted where its hash belongs: refused, and not echoed.
  r = loadConfig({}, fakeEnv({{"DROVER_TOKENS", "read:drv_secretsecretsecret"}}));
  EXPECT_NE(r.error.find("DROVER_TOKENS"), std::string::npos) << r.error;
  EXPECT_EQ(r.error.find("drv_secret"), std::string::npos) << r.error;
  r = loadConfig({}, fakeEnv({{"DROVER_TOKENS", "root:" + kHash}}));
  EXPECT_NE(r.error.find("not read, submit or admin"), std::string::npos) << r.error;
  TempFile bad("tokens: read:" + kHash + "\n");
  cl.config_path = bad.path();
  EXPECT_NE(loadConfig(cl, fakeEnv({})).error.find("must be a list"), std::string::npos);
}

TEST(SecurityConfig, AnOpenApiBindsLoopbackOnlyUnlessToldItIsOnPurpose) {
  NodeConfig c;
  EXPECT_EQ(validate(c), "");  // 127.0.0.1, no tokens: today's behaviour
  for (const char* http : {"0.0.0.0:8080", "10.1.2.3:8080", "[::]:8080", "example.org:80"}) {
    c.http = http;
    SCOPED_TRACE(http);
    EXPECT_NE(validate(c).find("no tokens are configured"), std::string::npos) << validate(c);
  }
  c.http = "0.0.0.0:8080";
  c.allow_insecure_bind = true;
  EXPECT_EQ(validate(c), "");
  c.allow_insecure_bind = false;
  c.tokens = {"read:" + kHash};
  EXPECT_EQ(validate(c), "");
  for (const char* host : {"127.0.0.1", "127.8.9.10", "localhost", "::1"}) {
    EXPECT_TRUE(isLoopbackHost(host)) << host;
  }
  for (const char* host : {"", "0.0.0.0", "128.0.0.1", "::", "10.0.0.1", "localhost.evil"}) {
    EXPECT_FALSE(isLoopbackHost(host)) << host;
  }
}

TEST(SecurityConfig, TlsFilesComeInPairs) {
  NodeConfig c;
  c.tls_cert = "/a.crt";
  EXPECT_NE(validate(c).find("tls_cert and tls_key"), std::string::npos);
  c.tls_key = "/a.key";
  EXPECT_EQ(validate(c), "");
}

TEST(SecurityConfig, ZooKeeperCredentialFromKeyOrFileNeverEchoed) {
  NodeConfig c;
  EXPECT_EQ(zkCredential(c).value(), "");
  NodeConfig bad;
  auto err = setConfigKey(bad, "zk_auth", "justapassword");
  ASSERT_TRUE(err);
  EXPECT_EQ(err->find("justapassword"), std::string::npos);
  c.zk_auth = "drover:pw";
  EXPECT_EQ(zkCredential(c).value(), "drover:pw");
  TempFile f("drover:from-file\n");
  c.zk_auth_file = f.path();
  EXPECT_FALSE(zkCredential(c));  // both: which one is meant?
  c.zk_auth = "";
  EXPECT_EQ(zkCredential(c).value(), "drover:from-file");
  TempFile nocolon("from-file\n");
  c.zk_auth_file = nocolon.path();
  ASSERT_FALSE(zkCredential(c));
  EXPECT_EQ(zkCredential(c).error().find("from-file"), std::string::npos);
  EXPECT_NE(validate(c), "");
  c.zk_auth_file = "/nonexistent/drover-zk-auth";
  EXPECT_NE(zkCredential(c).error().find("cannot read zk_auth_file"), std::string::npos);
}

TEST(WebhookConfig, FlatKeysAndTheWebhooksMappingMeanTheSame) {
  NodeConfig flat;
  ASSERT_FALSE(applyYaml(flat,
                         "webhook_max_in_flight: 4\nwebhook_max_attempts: 3\n"
                         "webhook_backoff_base_ms: 50\nwebhook_secret: s\n",
                         "flat.yaml"));
  NodeConfig nested;
  ASSERT_FALSE(applyYaml(nested,
                         "webhooks:\n  max_in_flight: 4\n  max_attempts: 3\n"
                         "  backoff_base_ms: 50\n  secret: s\n",
                         "nested.yaml"));
  for (const char* key : {"webhook_max_in_flight", "webhook_max_attempts",
                          "webhook_backoff_base_ms", "webhook_secret"}) {
    EXPECT_EQ(configValueText(flat, key), configValueText(nested, key)) << key;
  }
  EXPECT_EQ(nested.webhook_max_in_flight, 4);
  EXPECT_EQ(nested.webhook_backoff_base_ms, 50);
  // Errors name the file and line, and the prefixed key.
  NodeConfig c;
  auto err = applyYaml(c, "slots: 2\nwebhooks:\n  bogus: 1\n", "w.yaml");
  ASSERT_TRUE(err);
  EXPECT_NE(err->find("w.yaml:3"), std::string::npos) << *err;
  EXPECT_NE(err->find("webhook_bogus"), std::string::npos) << *err;
  err = applyYaml(c, "webhooks:\n  max_in_flight: many\n", "w.yaml");
  ASSERT_TRUE(err);
  EXPECT_NE(err->find("w.yaml:2"), std::string::npos) << *err;
  err = applyYaml(c, "webhooks: 3\n", "w.yaml");
  ASSERT_TRUE(err);
  EXPECT_NE(err->find("mapping"), std::string::npos) << *err;
  EXPECT_EQ(c.slots, NodeConfig{}.slots) << "a failed file changes nothing";
}

TEST(WebhookConfig, RangesAndTheSecretNeverEchoed) {
  NodeConfig c;
  EXPECT_EQ(validateWebhooks(c), "");
  EXPECT_EQ(webhookSecret(c).value(), "");
  auto bad = [](auto change) {
    NodeConfig c;
    change(c);
    return validateWebhooks(c);
  };
  EXPECT_NE(bad([](NodeConfig& c) { c.webhook_max_in_flight = 0; }), "");
  EXPECT_NE(bad([](NodeConfig& c) { c.webhook_max_in_flight = 1025; }), "");
  EXPECT_NE(bad([](NodeConfig& c) { c.webhook_max_attempts = 0; }), "");
  EXPECT_NE(bad([](NodeConfig& c) { c.webhook_max_age_s = 0; }), "");
  EXPECT_NE(bad([](NodeConfig& c) { c.webhook_timeout_ms = 10; }), "");
  EXPECT_NE(bad([](NodeConfig& c) { c.webhook_backoff_base_ms = 0; }), "");
  EXPECT_NE(bad([](NodeConfig& c) { c.webhook_backoff_cap_ms = 10; }), "");  // below the base
  EXPECT_NE(validate([] {
              NodeConfig c;
              c.webhook_max_attempts = 0;
              return c;
            }()),
            "");
  c.webhook_secret = "top-secret-value";
  EXPECT_EQ(webhookSecret(c).value(), "top-secret-value");
  TempFile f("from-file-secret\n");
  c.webhook_secret_file = f.path();
  ASSERT_FALSE(webhookSecret(c));  // both: which one is meant?
  EXPECT_EQ(webhookSecret(c).error().find("top-secret-value"), std::string::npos);
  c.webhook_secret = "";
  EXPECT_EQ(webhookSecret(c).value(), "from-file-secret");
  TempFile empty("\n");
  c.webhook_secret_file = empty.path();
  EXPECT_FALSE(webhookSecret(c));
  c.webhook_secret_file = "/nonexistent/drover-webhook-secret";
  EXPECT_NE(webhookSecret(c).error().find("cannot read webhook_secret_file"), std::string::npos);
  EXPECT_NE(validate(c), "");
}

}  // namespace
}  // namespace drover::app
