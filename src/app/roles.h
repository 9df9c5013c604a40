#pragma once

// The roles a node plays (docs/ARCHITECTURE.md): the worker (registration in /workers and the
// agent that runs its assignments) and the leader (the election and, while elected, the
// scheduler and the webhook dispatcher). runNode (node.cc) composes them with the API.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "api/event_feed.h"
#include "api/task_service.h"
#include "api/webhook_dispatcher.h"
#include "app/node.h"
#include "base/backoff.h"
#include "base/executor.h"
#include "base/metrics.h"
#include "coord/coordination.h"
#include "recipes/election.h"
#include "recipes/membership.h"
#include "scheduler/batch_scheduler.h"
#include "scheduler/leader_stats.h"
#include "tasks/layout.h"
#include "worker/agent.h"
#include "worker/chunk_agent.h"
#include "worker/runner.h"

namespace drover::app {

// This machine's name, made a valid id part.
std::string hostName();

// A worker id is unique per session: the first session registers under the base id, each later
// one (after an expiry) under "{base}-s{generation}". The election uses the same id, so that
// /leader always names a worker listed in /workers.
std::string idForGeneration(const std::string& base_id, uint64_t generation);

// Between tries of a step at start (and of a worker's registration).
inline constexpr base::Backoff kStartBackoff{std::chrono::milliseconds(200),
                                             std::chrono::seconds(5), 2.0, 0.5};

// The worker role. A worker whose session expired is dead for good; it is rebuilt under a new id.
// Draining (docs/ROUTING.md): once /draining/{id} appears the leader gives it nothing new, and
// when it runs and holds nothing it leaves /workers for good (the process keeps its other roles).
// Called from the node's supervision thread; drain watches come on the client's thread.
class WorkerRole {
 public:
  WorkerRole(coord::Coordination& c, const tasks::Layout& layout, const NodeConfig& config,
             std::string http);
  ~WorkerRole();

  // Registers (a new incarnation if needed) and starts the agent. Blocking.
  coord::Status start();
  // Rebuilds after the agent died with its session, and retries a registration that failed
  // (with backoff) until it succeeds: a worker never stays unregistered while the node runs.
  void superviseOnce();
  void stop();

  const std::string& baseId() const { return base_id_; }
  const std::string& id() const { return id_; }
  int slots() const { return config_.slots; }
  worker::AgentStats stats() const;

 private:
  void watchDrain(const std::string& id);
  bool current(const std::string& id);  // whether `id` is this worker's registration now
  void finishDrain();

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
  std::unique_ptr<worker::Agent> agent_;
  uint32_t retry_attempt_ = 0;
  std::chrono::steady_clock::time_point retry_at_{};
};

// The leader role: standing for election; while elected, a BatchScheduler fenced by the epoch,
// the completion-webhook dispatcher and the cron schedules' firer (docs/WORKFLOWS.md).
class LeaderRole {
 public:
  // `candidate_base`: the id to stand under, per session generation as the worker registers
  // (idForGeneration), so that /leader names this node's current worker id.
  LeaderRole(coord::Coordination& c, const tasks::Layout& layout, const NodeConfig& config,
             const std::string& candidate_base, const std::string& http, api::EventFeed& events,
             api::WebhookOptions webhooks, api::TaskService& store);
  ~LeaderRole();

  void start();
  void stop();
  bool leading() const;
  int32_t epoch() const;
  std::optional<scheduler::LeaderStats> stats() const;
  uint64_t changes() const { return changes_.load(); }

 private:
  void onElected(int32_t epoch);
  void onLost(const std::string& reason);

  coord::Coordination& coord_;
  const tasks::Layout& layout_;
  const NodeConfig& config_;
  mutable std::mutex mu_;
  api::EventFeed& events_;
  const api::WebhookOptions webhooks_;
  std::unique_ptr<scheduler::BatchScheduler> scheduler_;
  std::unique_ptr<api::WebhookDispatcher> dispatcher_;
  api::TaskService& store_;
  struct ScheduleFiring;  // the cron schedules' firer and its thread (leader_role.cc)
  std::unique_ptr<ScheduleFiring> firing_;
  std::unique_ptr<recipes::LeaderElection> election_;
  std::atomic<uint64_t> changes_{0};
};

// Registers this node's scrape-time metrics (docs/METRICS.md) in the process-wide registry; the
// returned handles remove them, so they must go before the roles they read. Values owned by the
// components (session state, worker stats, the leader's snapshot) are read at scrape time.
std::vector<base::CallbackHandle> registerNodeMetrics(const coord::Coordination& c,
                                                      const std::unique_ptr<WorkerRole>& worker,
                                                      const std::unique_ptr<LeaderRole>& leader);
// Counters that their owners create on first use, created at 0 so a scrape shows them at once.
void exposeEventCounters();
// Counts session transitions (expiries, disconnects, reconnects); returns the listener's id.
uint64_t countSessionEvents(coord::Coordination& c);

}  // namespace drover::app
