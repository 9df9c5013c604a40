#pragma once

#include <atomic>
#include <string>
#include <vector>

#include "base/stop_flag.h"

namespace drover::worker {
class HandlerRegistry;
}

namespace drover::app {

// Everything `drover node` can be told. Defaults are the documented ones.
struct NodeConfig {
  std::string zk = "127.0.0.1:2181";
  std::string zk_root = "/drover";
  std::string http = "127.0.0.1:8080";  // host:port of the REST API; port 0 = any free port
  std::string id;                       // worker id; default {host}-{pid}-{random}
  int slots = 4;
  int prefetch = 16;  // tasks the leader may assign beyond slots, queued on this worker
  int session_timeout_ms = 4000;
  bool worker = true;
  bool leader = true;
  std::string strategy = "least-loaded";  // round-robin | random | least-loaded
  std::vector<std::string> labels;
  std::vector<std::string> queues{"default"};  // the queues this worker serves (docs/ROUTING.md)
  size_t max_payload_bytes = 256 * 1024;
  // Terminal task statuses the leader keeps: at most this many, none older than this.
  int64_t retention_count = 100000;
  int64_t retention_age_s = 24 * 3600;
  // Pending tasks (waiting for a worker) past which submits are refused with 429; 0 = no cap.
  int64_t max_pending_tasks = 1000000;
  // The task protocol of the znode tree (docs/ZNODES.md): 2, batch records, the only one (protocol
  // 1, a znode per task, was removed: 1 is refused at start). A node refuses a tree of another.
  int protocol = 2;
  std::string log_level = "info";
  std::string log_format = "text";
  // Security (docs/SECURITY.md). API tokens as "ROLE:SHA256HEX"; none: the API is open, and the
  // node then binds a loopback address only, unless allow_insecure_bind says that is on purpose.
  std::vector<std::string> tokens;
  bool allow_insecure_bind = false;
  std::string tls_cert;  // PEM certificate (chain) and key: both set, the API speaks HTTPS only
  std::string tls_key;
  // ZooKeeper digest credentials "user:password", given directly or in a file (one line): every
  // session authenticates with them and every znode is created readable and writable by them only.
  std::string zk_auth;
  std::string zk_auth_file;
  // Task isolation (docs/ISOLATION.md). exec: run `exec` tasks at all; exec_allow: absolute paths
  // of the only programs they may run (empty: any); exec_sandbox: bubblewrap namespaces, a
  // read-only system, a private work dir and an unprivileged uid (false is unsafe).
  bool exec = true;
  std::vector<std::string> exec_allow;
  bool exec_sandbox = true;
  int64_t exec_uid = 65534;  // the uid and gid sandboxed tasks run as when the node is root
  int64_t exec_gid = 65534;
  std::string exec_work_dir;  // "" = /tmp/drover-exec-{uid}
  // Limits of exec and container tasks whose payload `resources` leave them out; 0 = no limit.
  int64_t task_memory_mb = 1024;
  double task_cpus = 0;
  int64_t task_pids = 1024;
  // The container engine's command line (words split on spaces), before `run`.
  std::string container_engine = "podman --runtime /usr/sbin/runc --cgroup-manager=cgroupfs";
  // Completion webhooks (docs/CONFIG.md; the YAML file may group them as `webhooks:` without the
  // prefix). The HMAC secret is given directly or in a file (first line); it is never logged.
  std::string webhook_secret;
  std::string webhook_secret_file;
  int64_t webhook_max_in_flight = 16;
  int64_t webhook_max_attempts = 10;
  int64_t webhook_max_age_s = 3600;
  int64_t webhook_timeout_ms = 5000;
  int64_t webhook_backoff_base_ms = 1000;
  int64_t webhook_backoff_cap_ms = 60000;
};

// The task types this process's node runs: the built-ins (noop, echo, sleep, fail, exec) and
// whatever an embedding program adds before runNode(). Submissions of other types are refused by
// this node's API with 400. Thread-safe. See examples/embedded_node.cc.
worker::HandlerRegistry& handlerRegistry();

// Validates a config; "" when it is fine, else what is wrong (for a clear exit at startup).
std::string validate(const NodeConfig& config);

// Runs a node until `stop` turns true (SIGINT/SIGTERM), then shuts down gracefully: stops
// serving, resigns leadership, stops running tasks and closes the ZooKeeper session so its
// tasks move to other workers at once. Returns the process exit code.
int runNode(const NodeConfig& config, const base::StopFlag& stop);

}  // namespace drover::app
