#include "app/node.h"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <cstdlib>
#include <sstream>

#include "api/batch_store.h"
#include "api/dashboard.h"
#include "api/event_feed.h"
#include "api/http.h"
#include "api/schedule_store.h"
#include "api/stats_history.h"
#include "api/webhook_dispatcher.h"
#include "app/config.h"
#include "app/roles.h"
#include "app/tree.h"
#include "app/zk_security.h"
#include "base/backoff.h"
#include "base/ids.h"
#include "base/metrics.h"
#include "coord/paths.h"
#include "coord/zk/zk_coordination.h"
#include "scheduler/strategy.h"
#include "tasks/layout.h"
#include "worker/container.h"
#include "worker/handler.h"
#include "worker/runner.h"
#include "worker/sandbox.h"

namespace drover::app {

worker::HandlerRegistry& handlerRegistry() {
  // Process-wide because the API's type check is a plain function; never destroyed.
  static worker::HandlerRegistry* r = [] {
    auto* reg = new worker::HandlerRegistry();
    worker::registerBuiltins(*reg);
    return reg;
  }();
  return *r;
}

namespace {

using namespace std::chrono_literals;

worker::HandlerRegistry& registry() { return handlerRegistry(); }
bool knownType(std::string_view type) { return registry().has(type); }

bool splitHostPort(const std::string& s, std::string& host, int& port) {
  auto colon = s.rfind(':');
  if (colon == std::string::npos) return false;
  host = s.substr(0, colon);
  try {
    size_t used = 0;
    port = std::stoi(s.substr(colon + 1), &used);
    if (used != s.size() - colon - 1) return false;
  } catch (const std::exception&) {
    return false;
  }
  return !host.empty() && port >= 0 && port <= 65535;
}

// Errors a node outlives by trying again: the ensemble is slow, unreachable or electing, or the
// session ended and a new one is being built. Everything else (an ACL or authentication refusal,
// a bad argument) is a fault of the configuration or of the tree, which retrying cannot fix.
bool transient(const coord::Error& e) {
  return e.retryable() || e.code() == coord::Code::kSessionExpired ||
         e.code() == coord::Code::kSessionMoved || e.code() == coord::Code::kNodeExists;
}

// Runs `step` until it succeeds, a permanent error or `stop`, sleeping a backoff between tries
// and logging each retry with what is retried and why. Returns the last error when not done
// (`stop` gives kClosing).
coord::Status retryAtStart(const std::string& what, const base::StopFlag& stop,
                           const std::function<coord::Status()>& step) {
  for (uint32_t attempt = 1;; ++attempt) {
    auto st = step();
    if (st) return st;
    if (!transient(st.error())) return st;
    auto delay =
        std::chrono::duration_cast<std::chrono::milliseconds>(kStartBackoff.delay(attempt));
    spdlog::warn("{} failed ({}); retrying in {} ms (attempt {})", what, st.error().toString(),
                 delay.count(), attempt + 1);
    if (stop.waitFor(delay)) return coord::fail(coord::Code::kClosing, "stopped");
  }
}

// The exec policy and the container engine from the config, replacing the built-in exec and
// container handlers (docs/ISOLATION.md). Probes the machine's sandbox and cgroups once.
void configureIsolation(const NodeConfig& c) {
  worker::ExecPolicy policy;
  policy.enabled = c.exec;
  policy.allow = c.exec_allow;
  policy.sandbox = c.exec_sandbox;
  policy.uid = static_cast<uid_t>(c.exec_uid);
  policy.gid = static_cast<gid_t>(c.exec_gid);
  policy.work_root = c.exec_work_dir;
  policy.defaults = {c.task_memory_mb, c.task_cpus, c.task_pids};
  worker::ExecLimits limits;
  limits.isolation = worker::ExecIsolation::forThisMachine(std::move(policy));
  worker::registerBuiltins(registry(), limits);
  worker::ContainerConfig container;
  container.engine.clear();
  std::istringstream words(c.container_engine);
  for (std::string w; words >> w;) container.engine.push_back(w);
  container.defaults = {c.task_memory_mb, c.task_cpus, c.task_pids};
  worker::registerContainerType(registry(), limits, std::move(container));
}

}  // namespace

std::string validate(const NodeConfig& c) {
  std::string host;
  int port = 0;
  if (!splitHostPort(c.http, host, port)) return "--http must be HOST:PORT, e.g. 127.0.0.1:8080";
  if (c.zk.empty()) return "--zk must name at least one ZooKeeper server (host:port)";
  if (!coord::isValidPath(c.zk_root) || c.zk_root == "/") {
    return "--zk-root must be an absolute znode path such as /drover";
  }
  if (!c.id.empty() && (!base::isValidName(c.id) || c.id.size() > 100)) {
    return "--id must be 1-100 characters of A-Z a-z 0-9 . _ -";
  }
  if (c.slots < 1 || c.slots > 1024) return "--slots must be from 1 to 1024";
  if (c.queues.empty()) return "--queues must name at least one queue";
  for (const auto& q : c.queues) {
    if (q.size() > 64 || !base::isValidName(q)) {
      return fmt::format("queue '{}' must be 1-64 characters of A-Z a-z 0-9 . _ -", q);
    }
  }
  if (c.prefetch < 0 || c.prefetch > 4096) return "--prefetch must be from 0 to 4096";
  if (c.max_pending_tasks < 0) return "--max-pending-tasks must be 0 (no cap) or more";
  if (c.protocol == 1) return "protocol 1 was removed; use a fresh --zk-root";
  if (c.protocol != 2) return "--protocol must be 2";
  if (c.retention_count < 0 || c.retention_count > 10000000) {
    return "--retention-count must be from 0 to 10000000";
  }
  if (c.retention_age_s < 1) return "--retention-age-s must be at least 1";
  if (c.session_timeout_ms < 1000 || c.session_timeout_ms > 60000) {
    return "--session-timeout-ms must be from 1000 to 60000";
  }
  if (!scheduler::makePicker(c.strategy)) {
    return "strategy must be round-robin, random or least-loaded";
  }
  if (!c.worker && !c.leader && c.http.empty()) return "a node must have at least one role";
  for (const auto& a : c.exec_allow) {
    if (a.empty() || a[0] != '/') return "exec_allow must list absolute program paths";
  }
  if (c.exec_uid < 0 || c.exec_uid > 2147483647 || c.exec_gid < 0 || c.exec_gid > 2147483647) {
    return "exec_uid and exec_gid must be from 0 to 2147483647";
  }
  if (!c.exec_work_dir.empty() && (c.exec_work_dir[0] != '/' || c.exec_work_dir == "/")) {
    return "exec_work_dir must be empty (the default) or an absolute path other than /";
  }
  if (c.task_memory_mb != 0 && (c.task_memory_mb < 4 || c.task_memory_mb > tasks::kMaxMemoryMb)) {
    return "task_memory_mb must be 0 (no limit) or from 4";
  }
  if (!(c.task_cpus >= 0) || c.task_cpus > 1024) return "task_cpus must be from 0 to 1024";
  if (c.task_pids < 0 || c.task_pids > tasks::kMaxPids)
    return "task_pids must be 0 (no limit) or more";
  if (c.container_engine.find_first_not_of(' ') == std::string::npos) {
    return "container_engine must name the engine's command, e.g. podman";
  }
  if (auto bad = validateWebhooks(c); !bad.empty()) return bad;
  return validateSecurity(c, host);
}

static api::WebhookOptions webhookOptions(const NodeConfig& c, std::string secret) {
  api::WebhookOptions o;
  o.secret = std::move(secret);
  o.max_in_flight = static_cast<size_t>(c.webhook_max_in_flight);
  o.max_attempts = static_cast<uint32_t>(c.webhook_max_attempts);
  o.max_age = std::chrono::seconds(c.webhook_max_age_s);
  o.timeout = std::chrono::milliseconds(c.webhook_timeout_ms);
  o.backoff_base = std::chrono::milliseconds(c.webhook_backoff_base_ms);
  o.backoff_cap = std::chrono::milliseconds(c.webhook_backoff_cap_ms);
  return o;
}

int runNode(const NodeConfig& config, const base::StopFlag& stop) {
  tasks::Layout layout(config.zk_root);
  auto credential = zkCredential(config);
  if (!credential) {
    spdlog::error("{}", credential.error());
    return 2;
  }
  coord::ZkOptions zk_options{config.zk, std::chrono::milliseconds(config.session_timeout_ms)};
  zk_options.digest_auth = *credential;
  auto conn = coord::ZkCoordination::connect(std::move(zk_options));
  if (!conn) {
    spdlog::error("{}", conn.error().toString());
    return 2;
  }
  auto& c = **conn;
  spdlog::info("connecting to ZooKeeper at {}", config.zk);
  while (!c.waitConnected(1s)) {
    if (stop) return 0;
    spdlog::info("waiting for ZooKeeper at {} ...", config.zk);
  }
  std::string refusal;
  if (auto st = retryAtStart(fmt::format("creating the znode tree under {}", config.zk_root), stop,
                             [&]() -> coord::Status {
                               auto r = prepareTree(c, layout);
                               if (!r) return tl::make_unexpected(r.error());
                               refusal = *r;
                               return {};
                             });
      !st) {
    if (stop) return 0;
    spdlog::error("cannot create the znode tree under {}: {}", config.zk_root,
                  st.error().toString());
    return 3;
  }
  if (!refusal.empty()) {
    spdlog::error("{}", refusal);
    return 3;
  }
  std::vector<std::string> tree_paths = {config.zk_root};
  for (const auto& d : layout.directories()) tree_paths.push_back(d);
  if (auto bad = checkTreeAcl(c, tree_paths, *credential); !bad.empty()) {
    spdlog::error("cannot use the znode tree under {}: {}", config.zk_root, bad);
    return 3;
  }

  api::StoreOptions store_options;
  store_options.max_pending = static_cast<size_t>(config.max_pending_tasks);
  auto store = std::make_unique<api::BatchStore>(c, layout, store_options);
  api::EventFeed events(c, layout);
  events.start();
  std::unique_ptr<WorkerRole> worker;
  std::unique_ptr<LeaderRole> leader;

  std::string host;
  int port = 0;
  splitHostPort(config.http, host, port);
  api::HttpOptions ho;
  ho.host = host;
  ho.port = port;
  ho.limits.max_payload_bytes = config.max_payload_bytes;
  ho.known_type = &knownType;
  ho.validate_payload = [](std::string_view type, const tasks::Json& payload) {
    return registry().validate(type, payload);
  };
  ho.metrics = [] { return base::metrics().render(); };
  std::vector<api::TokenHash> tokens;
  for (const auto& t : config.tokens) tokens.push_back(*api::parseTokenHash(t));  // validated
  ho.auth = std::make_shared<api::Authenticator>(std::move(tokens));
  ho.tls_cert = config.tls_cert;
  ho.tls_key = config.tls_key;
  // The throughput history the dashboard draws on load (GET /v1/stats/history): one hour of this
  // node's counters at 10 s resolution, sampled from the metrics registry.
  api::StatsRing stats;
  api::StatsSampler sampler(base::metrics(), stats);
  ho.stats = &stats;
  api::ScheduleStore schedules(c, layout);
  ho.schedules = &schedules;
  api::HttpServer http(*store, &events, ho);
  api::addDashboard(http);
  auto bound = http.start();
  if (!bound) {
    spdlog::error("cannot serve HTTP on {}: {}", config.http, bound.error());
    return 4;
  }
  std::string http_addr = fmt::format("{}:{}", host, *bound);
  spdlog::info("serving the API on {}://{} ({})", config.tls_cert.empty() ? "http" : "https",
               http_addr,
               config.tokens.empty() ? "open: no tokens configured"
                                     : fmt::format("{} tokens configured", config.tokens.size()));

  if (config.worker) {
    configureIsolation(config);
    worker = std::make_unique<WorkerRole>(c, layout, config, http_addr);
    if (auto st = retryAtStart("registering the worker", stop, [&] { return worker->start(); });
        !st) {
      if (stop) return 0;
      spdlog::error("cannot register the worker: {}", st.error().toString());
      return 5;
    }
  }
  if (config.leader) {
    std::string candidate = worker
                                ? worker->baseId()
                                : fmt::format("{}-{}-{}", hostName(), getpid(), base::randomHex(3));
    auto secret = webhookSecret(config);
    if (!secret) {
      spdlog::error("{}", secret.error());
      return 2;
    }
    leader = std::make_unique<LeaderRole>(c, layout, config, candidate, http_addr, events,
                                          webhookOptions(config, std::move(*secret)), *store);
    leader->start();
  }

  auto metric_handles = registerNodeMetrics(c, worker, leader);
  exposeEventCounters();
  uint64_t session_counter = countSessionEvents(c);

  // Supervision: re-register a worker whose session expired. Wakes a few times a second, and at
  // once on SIGTERM/SIGINT, so a graceful stop hands the work off without waiting for a poll.
  while (!stop.waitFor(100ms)) {
    if (worker) worker->superviseOnce();
  }

  spdlog::info("shutting down");
  c.removeSessionListener(session_counter);
  metric_handles.clear();  // no gauge reads the roles from here on
  // The worker hands off first: its runs are cancelled and it leaves /workers, so the leader
  // moves its tasks while the rest of the node stops. Stopping the API (its keep-alive polls:
  // ~10 ms) and the election first held the handover back by 15-35 ms.
  if (worker) worker->stop();
  http.stop();
  if (leader) leader->stop();
  events.stop();
  // Our other ephemerals go now: the election candidate, /leader if leading, and /workers/{id}
  // if the worker could not remove it.
  c.close();
  return 0;
}

}  // namespace drover::app
