#include "api/webhook_dispatcher.h"
#include "app/roles.h"
#include "base/metrics.h"

namespace drover::app {

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
  add("drover_leader_batch_records",
      "Batch records the leader holds in memory: one per batch with a task waiting or held", kGauge,
      [&leader] {
        auto st = leader ? leader->stats() : std::nullopt;
        return st ? Samples{{{}, static_cast<double>(st->batch_records)}} : Samples{};
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
  add("drover_scheduler_assign_multis_total",
      "Assign multis committed by the current leadership (each gives chunks to one or more "
      "workers)",
      base::MetricType::kCounter, [&leader] {
        auto st = leader ? leader->stats() : std::nullopt;
        return st ? Samples{{{}, static_cast<double>(st->batches)}} : Samples{};
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

}  // namespace drover::app
