#include "app/node.h"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <mutex>
#include <sstream>
#include <thread>

#include "api/dashboard.h"
#include "api/event_feed.h"
#include "api/http.h"
#include "api/schedule_store.h"
#include "api/stats_history.h"
#include "api/store.h"
#include "api/webhook_dispatcher.h"
#include "app/config.h"
#include "app/zk_security.h"
#include "base/backoff.h"
#include "base/clock.h"
#include "base/ids.h"
#include "base/metrics.h"
#include "coord/paths.h"
#include "coord/zk/zk_coordination.h"
#include "recipes/election.h"
#include "recipes/membership.h"
#include "scheduler/schedule_firer.h"
#include "scheduler/scheduler.h"
#include "scheduler/strategy.h"
#include "tasks/layout.h"
#include "tasks/records.h"
#include "worker/agent.h"
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

// Whether the container engine's program (the first word of its command) can be run.
bool engineInstalled(const std::string& engine) {
  std::istringstream words(engine);
  std::string program;
  words >> program;
  if (program.empty()) return false;
  if (program.find('/') != std::string::npos) return access(program.c_str(), X_OK) == 0;
  const char* path = std::getenv("PATH");
  std::istringstream dirs(path ? path : "/usr/bin:/bin");
  for (std::string dir; std::getline(dirs, dir, ':');) {
    if (!dir.empty() && access((dir + "/" + program).c_str(), X_OK) == 0) return true;
  }
  return false;
}

// The task types this worker publishes for routing (docs/ROUTING.md): what its registry runs,
// less `exec` when the config turns it off and `container` when the engine is not installed, so
// the leader never gives it a task it would only fail.
std::vector<std::string> servedTypes(const NodeConfig& c) {
  std::vector<std::string> out;
  for (auto& t : registry().types()) {
    if (t == "exec" && !c.exec) continue;
    if (t == "container" && !engineInstalled(c.container_engine)) continue;
    out.push_back(std::move(t));
  }
  return out;
}

std::string hostName() {
  char buf[256] = {};
  if (gethostname(buf, sizeof(buf) - 1) != 0) return "host";
  std::string out;
  for (char c : std::string(buf)) out.push_back(base::isValidName(std::string(1, c)) ? c : '-');
  return out.empty() ? "host" : out;
}

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

// A worker id is unique per session: the first session registers under the base id, each later
// one (after an expiry) under "{base}-s{generation}". The election uses the same id, so that
// /leader always names a worker listed in /workers.
std::string idForGeneration(const std::string& base_id, uint64_t generation) {
  return generation <= 1 ? base_id : fmt::format("{}-s{}", base_id, generation);
}

// Errors a node outlives by trying again: the ensemble is slow, unreachable or electing, or the
// session ended and a new one is being built. Everything else (an ACL or authentication refusal,
// a bad argument) is a fault of the configuration or of the tree, which retrying cannot fix.
bool transient(const coord::Error& e) {
  return e.retryable() || e.code() == coord::Code::kSessionExpired ||
         e.code() == coord::Code::kSessionMoved || e.code() == coord::Code::kNodeExists;
}

constexpr base::Backoff kStartBackoff{std::chrono::milliseconds(200), std::chrono::seconds(5), 2.0,
                                      0.5};

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

// Creates the persistent directories of the tree once (cheap when they exist: one read).
coord::Status ensureTree(coord::Coordination& c, const tasks::Layout& layout) {
  // The last directory created (the last status bucket) tells that all of them exist.
  auto last = c.exists(layout.directories().back(), nullptr).get();
  if (last && last->has_value()) return {};
  for (const auto& dir : layout.directories()) {
    if (auto st = coord::ensurePath(c, dir); !st) return st;
  }
  auto epoch = coord::ensurePath(c, layout.epoch());
  return epoch;
}

// The worker role: registration in /workers plus the agent that runs its assignments. A worker
// whose session expired is dead for good; it is rebuilt under a new id.
class WorkerRole {
 public:
  WorkerRole(coord::Coordination& c, const tasks::Layout& layout, const NodeConfig& config,
             std::string http)
      : coord_(c), layout_(layout), config_(config), http_(std::move(http)), runner_(config.slots) {
    base_id_ = config.id.empty() ? fmt::format("{}-{}-{}", hostName(), getpid(), base::randomHex(3))
                                 : config.id;
  }

  ~WorkerRole() { stop(); }

  // Registers (a new incarnation if needed) and starts the agent. Blocking.
  coord::Status start() {
    std::string id = idForGeneration(base_id_, coord_.session().generation);
    tasks::WorkerInfo info;
    info.id = id;
    info.host = hostName();
    info.pid = getpid();
    info.slots = config_.slots;
    info.prefetch = config_.prefetch;
    info.labels = config_.labels;
    info.queues = config_.queues;
    info.types = servedTypes(config_);
    info.http = http_;
    info.started_at = base::wallMillis();
    membership_ = std::make_unique<recipes::Membership>(coord_, layout_.workers(), executor_);
    auto joined = membership_->join(
        id, tasks::toJson(info).dump(),
        {coord::CreateOp{layout_.assignmentsOf(id), "", coord::CreateMode::kPersistent, {}}});
    if (!joined) return joined;
    agent_ = std::make_unique<worker::WorkerAgent>(coord_, layout_, id, runner_, registry());
    agent_->start();
    {
      std::lock_guard lock(drain_mu_);
      id_ = id;
    }
    watchDrain(id);
    spdlog::info("worker {} registered with {} slots and prefetch {}", id, config_.slots,
                 config_.prefetch);
    return {};
  }

  // Rebuilds after the agent died with its session, and retries a registration that failed
  // (with backoff) until it succeeds: a worker never stays unregistered while the node runs.
  void superviseOnce() {
    if (agent_ && agent_->dead()) {
      spdlog::warn("worker {} lost its session; registering again under a new id", id_);
      agent_->stop();
      agent_.reset();
      membership_.reset();
      retry_attempt_ = 0;
      retry_at_ = {};
    }
    if (agent_ && drain_requested_) finishDrain();
    if (agent_ || drained_) return;
    if (coord_.session().state != coord::SessionState::kConnected) return;
    if (std::chrono::steady_clock::now() < retry_at_) return;
    auto st = start();
    if (st) return;
    agent_.reset();
    membership_.reset();
    auto delay = kStartBackoff.delay(++retry_attempt_);
    retry_at_ = std::chrono::steady_clock::now() + delay;
    spdlog::warn("registering worker {} failed ({}); retrying in {} ms",
                 idForGeneration(base_id_, coord_.session().generation), st.error().toString(),
                 std::chrono::duration_cast<std::chrono::milliseconds>(delay).count());
  }
  const std::string& baseId() const { return base_id_; }

  void stop() {
    drain_requested_ = false;
    if (agent_) agent_->stop();
    agent_.reset();
    if (membership_) (void)membership_->leave();
    membership_.reset();
    runner_.stop();
  }

  const std::string& id() const { return id_; }
  worker::AgentStats stats() const { return agent_ ? agent_->stats() : worker::AgentStats{}; }

  // Draining (docs/ROUTING.md): /draining/{id} appeared, so the leader gives this worker nothing
  // new. Once it runs nothing and holds no assignment it leaves /workers for good (this process
  // keeps its other roles; a restart rejoins as a new worker).
  void watchDrain(const std::string& id) {
    coord_
        .exists(layout_.drain(id),
                [this, id](const coord::WatchEvent&) {
                  if (current(id)) watchDrain(id);  // re-arm, and read whether it is there now
                })
        .then([this, id](const coord::Result<std::optional<coord::Stat>>& r) {
          if (r && r->has_value() && current(id)) drain_requested_ = true;
        });
  }

  // Whether `id` is this worker's registration now (watch callbacks run on the client's thread).
  bool current(const std::string& id) {
    std::lock_guard lock(drain_mu_);
    return id == id_;
  }

  void finishDrain() {
    if (agent_->stats().running > 0) return;
    auto held = coord_.children(layout_.assignmentsOf(id_), nullptr).get();
    if (!held || !held->empty()) return;
    spdlog::info("worker {} drained: it runs and holds nothing; leaving /workers", id_);
    agent_->stop();
    agent_.reset();
    if (membership_) (void)membership_->leave();
    membership_.reset();
    (void)coord_.remove(layout_.drain(id_), coord::kAnyVersion).get();
    drained_ = true;
  }
  int slots() const { return config_.slots; }

 private:
  coord::Coordination& coord_;
  const tasks::Layout& layout_;
  const NodeConfig& config_;
  std::string http_;
  std::string base_id_;
  std::string id_;  // written under drain_mu_ (read by drain watch callbacks)
  std::mutex drain_mu_;
  std::atomic<bool> drain_requested_{false};
  bool drained_ = false;
  base::ThreadExecutor executor_{"membership"};
  worker::Runner runner_;
  std::unique_ptr<recipes::Membership> membership_;
  std::unique_ptr<worker::WorkerAgent> agent_;
  uint32_t retry_attempt_ = 0;
  std::chrono::steady_clock::time_point retry_at_{};
};

// The leader role: standing for election; while elected, a Scheduler fenced by the epoch.
// The leader's schedule firer on its own thread (its submits block). Stopping it first makes a
// pass that is running stop at its next step; the executor then joins it.
struct ScheduleFiring {
  std::unique_ptr<base::ThreadExecutor> executor;
  std::unique_ptr<scheduler::ScheduleFirer> firer;
  ~ScheduleFiring() {
    if (firer) firer->stop();
    executor.reset();
    firer.reset();
  }
};

// How the firer submits and looks up tasks: through the API's store, like any client.
scheduler::ScheduleFirer::Callbacks firerCallbacks(api::TaskStore& store) {
  using Firer = scheduler::ScheduleFirer;
  Firer::Callbacks cb;
  cb.submit = [&store](const tasks::TaskSpec& spec) {
    auto r = store.submit(spec);
    if (r) return r->created ? Firer::Submitted::kSubmitted : Firer::Submitted::kRepeat;
    switch (r.error().failure) {
      case api::Failure::kConflict:
      case api::Failure::kBadRequest:
      case api::Failure::kTooLarge:
        spdlog::warn("schedules: submit of {} refused: {}", spec.id, r.error().detail);
        return Firer::Submitted::kRefused;
      default:
        return Firer::Submitted::kRetry;  // unavailable, past the pending cap: later
    }
  };
  cb.progress = [&store](const std::string& id) {
    auto r = store.get(id);
    if (r) return tasks::isTerminal(r->state) ? Firer::Progress::kDone : Firer::Progress::kActive;
    if (r.error().failure == api::Failure::kNotFound) return Firer::Progress::kDone;
    return Firer::Progress::kUnknown;
  };
  cb.now_ms = [] { return base::wallMillis(); };
  // A refused state write means another node leads: the firer has stopped, and the election
  // tells this node it lost (stepping down from here would join the firer's own thread).
  cb.fenced = [](const std::string& reason) { spdlog::warn("schedules: fenced ({})", reason); };
  return cb;
}

class LeaderRole {
 public:
  // `candidate_base`: the id to stand under, per session generation as the worker registers
  // (idForGeneration), so that /leader names this node's current worker id.
  LeaderRole(coord::Coordination& c, const tasks::Layout& layout, const NodeConfig& config,
             const std::string& candidate_base, const std::string& http, api::EventFeed& events,
             api::WebhookOptions webhooks, api::TaskStore& store)
      : coord_(c),
        layout_(layout),
        config_(config),
        events_(events),
        webhooks_(webhooks),
        store_(store) {
    recipes::ElectionOptions eo{
        layout.election(),
        layout.epoch(),
        layout.leader(),
        candidate_base,
        fmt::format(R"({{"id":"{{id}}","epoch":{{epoch}},"http":"{}"}})", http),
        std::chrono::milliseconds(config.session_timeout_ms * 2 / 3),
        [candidate_base](uint64_t generation) {
          return idForGeneration(candidate_base, generation);
        }};
    election_ = std::make_unique<recipes::LeaderElection>(
        c, eo,
        recipes::LeaderElection::Listener{[this](int32_t epoch) { onElected(epoch); },
                                          [this](const std::string& reason) { onLost(reason); },
                                          nullptr});
  }
  ~LeaderRole() { stop(); }

  void start() { election_->start(); }
  void stop() {
    if (election_) election_->stop();  // on_lost stops the scheduler
    std::lock_guard lock(mu_);
    if (scheduler_) scheduler_->stop();
    scheduler_.reset();
    if (dispatcher_) dispatcher_->stop();
    dispatcher_.reset();
    firing_.reset();
  }
  bool leading() const { return election_ && election_->isLeader(); }
  int32_t epoch() const { return election_ ? election_->epoch() : -1; }
  std::optional<scheduler::Scheduler::Stats> stats() const {
    std::lock_guard lock(mu_);
    if (!scheduler_) return std::nullopt;
    return scheduler_->snapshot();
  }
  uint64_t changes() const { return changes_.load(); }

 private:
  void onElected(int32_t epoch) {
    scheduler::Scheduler::Options so;
    so.strategy = config_.strategy;
    so.retention_count = static_cast<size_t>(config_.retention_count);
    so.retention_age = std::chrono::seconds(config_.retention_age_s);
    auto s = std::make_unique<scheduler::Scheduler>(
        coord_, layout_, so, epoch, [this, epoch](const std::string& reason) {
          static auto& fenced = base::metrics().counter(
              "drover_leader_fenced_total",
              "Leader multis refused by the epoch fence: another node had become leader");
          fenced.inc();
          election_->stepDown(reason, epoch);
        });
    s->start();
    // Completion webhooks are the leader's too, but off the assign path: the dispatcher has its
    // own threads and reads the event log through the node's feed (docs/API.md).
    auto d = std::make_unique<api::WebhookDispatcher>(coord_, layout_, events_, epoch, webhooks_);
    d->start();
    // Cron schedules (docs/WORKFLOWS.md): fired by the leader, fenced by the same epoch.
    auto f = std::make_unique<ScheduleFiring>();
    f->executor = std::make_unique<base::ThreadExecutor>("schedules");
    f->firer = std::make_unique<scheduler::ScheduleFirer>(coord_, layout_, epoch, *f->executor,
                                                          firerCallbacks(store_));
    f->firer->start();
    changes_++;
    std::lock_guard lock(mu_);
    scheduler_ = std::move(s);
    dispatcher_ = std::move(d);
    firing_ = std::move(f);
  }
  void onLost(const std::string&) {
    std::unique_ptr<scheduler::Scheduler> s;
    std::unique_ptr<api::WebhookDispatcher> d;
    std::unique_ptr<ScheduleFiring> f;
    {
      std::lock_guard lock(mu_);
      s = std::move(scheduler_);
      d = std::move(dispatcher_);
      f = std::move(firing_);
    }
    f.reset();
    if (s) s->stop();
    if (d) d->stop();
  }

  coord::Coordination& coord_;
  const tasks::Layout& layout_;
  const NodeConfig& config_;
  mutable std::mutex mu_;
  api::EventFeed& events_;
  const api::WebhookOptions webhooks_;
  std::unique_ptr<scheduler::Scheduler> scheduler_;
  std::unique_ptr<api::WebhookDispatcher> dispatcher_;
  api::TaskStore& store_;
  std::unique_ptr<ScheduleFiring> firing_;
  std::unique_ptr<recipes::LeaderElection> election_;
  std::atomic<uint64_t> changes_{0};
};

// Registers this node's scrape-time metrics (docs/METRICS.md) in the process-wide registry; the
// returned handles remove them, so they must go before the roles they read. Values owned by the
// components (session state, worker stats, the leader's snapshot) are read at scrape time.
std::vector<base::CallbackHandle> registerNodeMetrics(const coord::Coordination& c,
                                                      const std::unique_ptr<WorkerRole>& worker,
                                                      const std::unique_ptr<LeaderRole>& leader) {
  auto& r = base::metrics();
  std::vector<base::CallbackHandle> handles;
  using Samples = std::vector<base::Sample>;
  auto add = [&](const char* name, const char* help, base::MetricType type,
                 base::Registry::Collector collect) {
    handles.emplace_back(r, r.addCallback(name, help, type, std::move(collect)));
  };
  const auto kGauge = base::MetricType::kGauge;
  add("drover_zookeeper_connected", "1 when the ZooKeeper session is connected", kGauge, [&c] {
    return Samples{{{}, c.session().state == coord::SessionState::kConnected ? 1.0 : 0.0}};
  });
  add("drover_zookeeper_session_generation", "ZooKeeper sessions this node has had", kGauge, [&c] {
    return Samples{{{}, static_cast<double>(c.session().generation)}};
  });
  add("drover_worker_slots", "Task slots of this node's worker", kGauge, [&worker] {
    return worker ? Samples{{{}, static_cast<double>(worker->slots())}} : Samples{};
  });
  add("drover_worker_slots_in_use", "Tasks running on this node's worker", kGauge, [&worker] {
    return worker ? Samples{{{}, static_cast<double>(worker->stats().running)}} : Samples{};
  });
  add("drover_leader", "1 when this node is the leader", kGauge, [&leader] {
    return leader ? Samples{{{}, leader->leading() ? 1.0 : 0.0}} : Samples{};
  });
  add("drover_leader_changes_total", "Times this node became leader", base::MetricType::kCounter,
      [&leader] {
        return leader ? Samples{{{}, static_cast<double>(leader->changes())}} : Samples{};
      });
  // The rest comes from the leader's snapshot: only the leader exports it, so sum() or max()
  // over the nodes gives the cluster's value.
  add("drover_leader_epoch", "Fencing epoch of the current leadership (on the leader)", kGauge,
      [&leader] {
        return leader && leader->leading() ? Samples{{{}, static_cast<double>(leader->epoch())}}
                                           : Samples{};
      });
  add("drover_queue_tasks", "Tasks waiting or assigned, by state and priority (on the leader)",
      kGauge, [&leader] {
        Samples out;
        auto st = leader ? leader->stats() : std::nullopt;
        if (!st) return out;
        for (int p = 0; p <= 9; ++p) {
          auto it = st->pending_by_priority.find(p);
          double n = it == st->pending_by_priority.end() ? 0 : static_cast<double>(it->second);
          out.push_back({{{"state", "pending"}, {"priority", std::to_string(p)}}, n});
        }
        out.push_back(
            {{{"state", "delayed"}, {"priority", "any"}}, static_cast<double>(st->delayed)});
        double assigned = 0;
        for (const auto& w : st->workers) assigned += w.assigned;
        out.push_back({{{"state", "assigned"}, {"priority", "any"}}, assigned});
        return out;
      });
  add("drover_cluster_workers", "Live workers (on the leader)", kGauge, [&leader] {
    auto st = leader ? leader->stats() : std::nullopt;
    return st ? Samples{{{}, static_cast<double>(st->workers.size())}} : Samples{};
  });
  add("drover_cluster_slots", "Task slots of all live workers (on the leader)", kGauge, [&leader] {
    auto st = leader ? leader->stats() : std::nullopt;
    if (!st) return Samples{};
    double slots = 0;
    for (const auto& w : st->workers) slots += w.slots;
    return Samples{{{}, slots}};
  });
  add("drover_cluster_slots_in_use",
      "Assignments held by live workers, each using a slot (on the leader)", kGauge, [&leader] {
        auto st = leader ? leader->stats() : std::nullopt;
        if (!st) return Samples{};
        double used = 0;
        for (const auto& w : st->workers) used += std::min(w.assigned, w.slots);
        return Samples{{{}, used}};
      });
  add("drover_scheduler_assigned_total", "Tasks assigned by the current leadership",
      base::MetricType::kCounter, [&leader] {
        auto st = leader ? leader->stats() : std::nullopt;
        return st ? Samples{{{}, static_cast<double>(st->assigned_total)}} : Samples{};
      });
  add("drover_scheduler_requeued_total",
      "Tasks of dead workers moved back to pending by the current leadership",
      base::MetricType::kCounter, [&leader] {
        auto st = leader ? leader->stats() : std::nullopt;
        return st ? Samples{{{}, static_cast<double>(st->requeued_total)}} : Samples{};
      });
  return handles;
}

// Counters that their owners create on first use, created here at 0 so that a scrape shows them
// before the first event (rate() and increase() need the series to exist; deploy/'s alert rules
// and dashboard query them). Same names and help texts as at their points of use.
void exposeEventCounters() {
  auto& r = base::metrics();
  r.counter("drover_worker_fenced_commits_total",
            "Worker commits refused because the assignment was gone (late results discarded)");
  r.counter("drover_leader_fenced_total",
            "Leader multis refused by the epoch fence: another node had become leader");
  api::exposeWebhookMetrics();
}

// Counts session transitions: expiries, disconnects and reconnects (to the same session).
uint64_t countSessionEvents(coord::Coordination& c) {
  auto& r = base::metrics();
  auto& expired = r.counter("drover_zookeeper_session_expirations_total",
                            "ZooKeeper sessions of this node that expired");
  auto& disconnects = r.counter("drover_zookeeper_disconnects_total",
                                "Times this node lost its ZooKeeper connection");
  auto& reconnects = r.counter("drover_zookeeper_reconnects_total",
                               "Times this node reconnected to ZooKeeper after a disconnect");
  auto last = std::make_shared<coord::SessionState>(c.session().state);
  return c.addSessionListener([expired = &expired, disconnects = &disconnects,
                               reconnects = &reconnects, last](const coord::SessionEvent& e) {
    if (e.state == coord::SessionState::kExpired && *last != coord::SessionState::kExpired) {
      expired->inc();
    } else if (e.state == coord::SessionState::kDisconnected &&
               *last == coord::SessionState::kConnected) {
      disconnects->inc();
    } else if (e.state == coord::SessionState::kConnected &&
               *last != coord::SessionState::kConnected &&
               *last != coord::SessionState::kConnecting) {
      reconnects->inc();
    }
    *last = e.state;
  });
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
  if (auto st = retryAtStart(fmt::format("creating the znode tree under {}", config.zk_root), stop,
                             [&] { return ensureTree(c, layout); });
      !st) {
    if (stop) return 0;
    spdlog::error("cannot create the znode tree under {}: {}", config.zk_root,
                  st.error().toString());
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
  api::TaskStore store(c, layout, store_options);
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
  api::HttpServer http(store, &events, ho);
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
                                          webhookOptions(config, std::move(*secret)), store);
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
  metric_handles.clear();
  http.stop();
  if (leader) leader->stop();
  if (worker) worker->stop();
  events.stop();
  c.close();  // ephemerals go now: the leader moves this worker's tasks at once
  return 0;
}

}  // namespace drover::app
