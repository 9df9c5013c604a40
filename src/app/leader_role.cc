#include <spdlog/spdlog.h>

#include "app/roles.h"
#include "base/metrics.h"

namespace drover::app {

LeaderRole::LeaderRole(coord::Coordination& c, const tasks::Layout& layout,
                       const NodeConfig& config, const std::string& candidate_base,
                       const std::string& http, api::EventFeed& events,
                       api::WebhookOptions webhooks)
    : coord_(c), layout_(layout), config_(config), events_(events), webhooks_(webhooks) {
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
}
bool LeaderRole::leading() const { return election_ && election_->isLeader(); }

int32_t LeaderRole::epoch() const { return election_ ? election_->epoch() : -1; }

std::optional<scheduler::Scheduler::Stats> LeaderRole::stats() const {
  std::lock_guard lock(mu_);
  if (!scheduler_) return std::nullopt;
  return scheduler_->snapshot();
}
namespace {

template <class S>
struct AssignerOf final : LeaderRole::Assigner {
  explicit AssignerOf(std::unique_ptr<S> s) : scheduler(std::move(s)) {}
  void stop() override { scheduler->stop(); }
  scheduler::Scheduler::Stats snapshot() const override { return scheduler->snapshot(); }
  std::unique_ptr<S> scheduler;
};

template <class S>
std::unique_ptr<LeaderRole::Assigner> startScheduler(
    coord::Coordination& c, const tasks::Layout& layout, const NodeConfig& config, int32_t epoch,
    std::function<void(const std::string&)> fenced) {
  typename S::Options so;
  so.strategy = config.strategy;
  so.retention_count = static_cast<size_t>(config.retention_count);
  so.retention_age = std::chrono::seconds(config.retention_age_s);
  auto s = std::make_unique<S>(c, layout, so, epoch, std::move(fenced));
  s->start();
  return std::make_unique<AssignerOf<S>>(std::move(s));
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
  auto s = config_.protocol == 2
               ? startScheduler<scheduler::BatchScheduler>(coord_, layout_, config_, epoch, fenced)
               : startScheduler<scheduler::Scheduler>(coord_, layout_, config_, epoch, fenced);
  // Completion webhooks are the leader's too, but off the assign path: the dispatcher has its
  // own threads and reads the event log through the node's feed (docs/API.md).
  auto d = std::make_unique<api::WebhookDispatcher>(coord_, layout_, events_, epoch, webhooks_);
  d->start();
  changes_++;
  std::lock_guard lock(mu_);
  scheduler_ = std::move(s);
  dispatcher_ = std::move(d);
}
void LeaderRole::onLost(const std::string&) {
  std::unique_ptr<Assigner> s;
  std::unique_ptr<api::WebhookDispatcher> d;
  {
    std::lock_guard lock(mu_);
    s = std::move(scheduler_);
    d = std::move(dispatcher_);
  }
  if (s) s->stop();
  if (d) d->stop();
}

}  // namespace drover::app
