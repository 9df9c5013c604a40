#include <spdlog/spdlog.h>

#include "app/roles.h"
#include "base/clock.h"
#include "base/metrics.h"
#include "scheduler/schedule_firer.h"

namespace drover::app {

// The leader's schedule firer on its own thread (its submits block). Stopping it first makes a
// pass that is running stop at its next step; the executor then joins it.
struct LeaderRole::ScheduleFiring {
  std::unique_ptr<base::ThreadExecutor> executor;
  std::unique_ptr<scheduler::ScheduleFirer> firer;
  ~ScheduleFiring() {
    if (firer) firer->stop();
    executor.reset();
    firer.reset();
  }
};

namespace {

// How the firer submits and looks up tasks: through the API's store, like any client.
scheduler::ScheduleFirer::Callbacks firerCallbacks(api::TaskService& store) {
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

}  // namespace

LeaderRole::LeaderRole(coord::Coordination& c, const tasks::Layout& layout,
                       const NodeConfig& config, const std::string& candidate_base,
                       const std::string& http, api::EventFeed& events,
                       api::WebhookOptions webhooks, api::TaskService& store)
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
LeaderRole::~LeaderRole() { stop(); }

void LeaderRole::start() { election_->start(); }

void LeaderRole::stop() {
  if (election_) election_->stop();  // on_lost stops the scheduler
  std::lock_guard lock(mu_);
  if (scheduler_) scheduler_->stop();
  scheduler_.reset();
  if (dispatcher_) dispatcher_->stop();
  dispatcher_.reset();
  firing_.reset();
}
bool LeaderRole::leading() const { return election_ && election_->isLeader(); }

int32_t LeaderRole::epoch() const { return election_ ? election_->epoch() : -1; }

std::optional<scheduler::LeaderStats> LeaderRole::stats() const {
  std::lock_guard lock(mu_);
  if (!scheduler_) return std::nullopt;
  return scheduler_->snapshot();
}
namespace {

std::unique_ptr<scheduler::BatchScheduler> startScheduler(
    coord::Coordination& c, const tasks::Layout& layout, const NodeConfig& config, int32_t epoch,
    std::function<void(const std::string&)> fenced) {
  scheduler::BatchScheduler::Options so;
  so.strategy = config.strategy;
  so.retention_count = static_cast<size_t>(config.retention_count);
  so.retention_age = std::chrono::seconds(config.retention_age_s);
  auto s = std::make_unique<scheduler::BatchScheduler>(c, layout, so, epoch, std::move(fenced));
  s->start();
  return s;
}

}  // namespace

void LeaderRole::onElected(int32_t epoch) {
  auto fenced = [this, epoch](const std::string& reason) {
    static auto& counter = base::metrics().counter(
        "drover_leader_fenced_total",
        "Leader multis refused by the epoch fence: another node had become leader");
    counter.inc();
    election_->stepDown(reason, epoch);
  };
  auto s = startScheduler(coord_, layout_, config_, epoch, fenced);
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
void LeaderRole::onLost(const std::string&) {
  std::unique_ptr<scheduler::BatchScheduler> s;
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

}  // namespace drover::app
