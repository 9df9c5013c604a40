#include "api/webhook_dispatcher.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <limits>

#include "base/clock.h"
#include "base/metrics.h"
#include "coord/paths.h"
#include "tasks/records.h"
#include "tasks/task.h"

namespace drover::api {

using coord::Code;
using namespace std::chrono_literals;

namespace {

StoreOptions readerOptions(std::chrono::milliseconds call_timeout) {
  StoreOptions o;
  o.call_timeout = call_timeout;
  return o;
}

base::Counter& outcome(const char* what) {
  return base::metrics().counter("drover_webhook_deliveries_total",
                                 "Webhook deliveries by outcome: delivered, retried (one per try "
                                 "that will be tried again), gave_up, lost (the task was gone)",
                                 {{"outcome", what}});
}
base::Counter& gaps() {
  static auto& c = base::metrics().counter(
      "drover_webhook_log_gaps_total",
      "Times the event log had been trimmed past the webhook cursor: deliveries may be lost");
  return c;
}
base::Gauge& inFlightGauge() {
  static auto& g = base::metrics().gauge(
      "drover_webhook_in_flight", "Webhook deliveries open on this leader (retries included)");
  return g;
}
base::Gauge& lagGauge() {
  static auto& g = base::metrics().gauge(
      "drover_webhook_lag_events",
      "Events between the webhook cursor and the newest event read from the log (on the leader)");
  return g;
}

}  // namespace

void exposeWebhookMetrics() {
  for (const char* o : {"delivered", "retried", "gave_up", "lost"}) outcome(o);
  gaps();
  inFlightGauge();
  lagGauge();
}

std::string webhookCursorPath(const tasks::Layout& layout) {
  return coord::join(layout.root(), "webhooks");
}

struct WebhookDispatcher::Delivery {
  FeedEvent event;
  bool prepared = false;
  WebhookPost post;
  uint32_t tries = 0;        // POSTs made
  uint32_t zk_failures = 0;  // reads of the task that got no answer
};

WebhookDispatcher::WebhookDispatcher(coord::Coordination& coord, tasks::Layout layout,
                                     EventFeed& feed, int32_t epoch, WebhookOptions options)
    : coord_(coord),
      layout_(std::move(layout)),
      v2_(coord, layout_, readerOptions(options.call_timeout)),
      feed_(feed),
      epoch_(epoch),
      options_(std::move(options)),
      path_(webhookCursorPath(layout_)) {}

WebhookDispatcher::~WebhookDispatcher() { stop(); }

void WebhookDispatcher::start() {
  std::lock_guard lock(mu_);
  if (started_) return;
  started_ = true;
  // One sender per delivery that may be open, so a receiver that never answers holds up only
  // its own deliveries (bounded, like everything here, by max_in_flight).
  size_t senders = std::clamp<size_t>(options_.max_in_flight, 1, 64);
  clients_.assign(senders, nullptr);
  for (size_t i = 0; i < senders; ++i) senders_.emplace_back([this, i] { sendLoop(i); });
  follower_ = std::thread([this] { follow(); });
  timers_.postAfter(options_.save_interval, [this] { saveCursor(); });
}

void WebhookDispatcher::stop() {
  std::shared_ptr<Subscription> sub;
  {
    std::lock_guard lock(mu_);
    if (!started_ || stopping_) return;
    stopping_ = true;
    for (auto* c : clients_) abortWebhookClient(c);
    sub = sub_;
  }
  space_cv_.notify_all();
  ready_cv_.notify_all();
  if (sub) sub->close();
  if (follower_.joinable()) follower_.join();
  for (auto& t : senders_) t.join();
  senders_.clear();
  timers_.stop();
  saveOnce(1000ms);  // what finished since the last save need not be sent again
  inFlightGauge().set(0);
  lagGauge().set(0);
}

WebhookDispatcher::Stats WebhookDispatcher::stats() const {
  std::lock_guard lock(mu_);
  Stats s;
  s.in_flight = order_.size();
  s.cursor = saved_copy_;
  s.fenced = fenced_;
  uint64_t handled = order_.empty() ? taken_ : order_.front().taken_before;
  s.lag = static_cast<size_t>(taken_ - handled) + (sub_ ? sub_->queued() : 0);
  return s;
}

void WebhookDispatcher::updateGauges() {
  auto s = stats();
  inFlightGauge().set(static_cast<double>(s.in_flight));
  lagGauge().set(static_cast<double>(s.lag));
}

bool WebhookDispatcher::loadCursor(EventPosition& after, bool& found) {
  auto node = coord_.get(path_, nullptr).waitFor(options_.call_timeout);
  if (!node) return false;
  if (!*node) {
    if (node->error().code() != Code::kNoNode) {
      spdlog::warn("webhooks: reading the cursor {} failed: {}", path_, node->error().toString());
      return false;
    }
    found = false;
  } else if (auto pos = parseEventPosition((*node)->data)) {
    found = true;
    after = *pos;
    std::lock_guard lock(mu_);
    cursor_exists_ = true;
    return true;
  } else {
    spdlog::error(
        "webhooks: the cursor {} holds '{}', not a position; starting from the oldest "
        "event the log holds",
        path_, (*node)->data.substr(0, 64));
    found = false;
    std::lock_guard lock(mu_);
    cursor_exists_ = true;
  }
  // No cursor yet (the cluster's first leader with webhooks): everything the log holds. Events
  // written before this version carry no callback flag, so nothing old is delivered.
  after = EventPosition{-1, 0};
  return true;
}

void WebhookDispatcher::follow() {
  auto stopped = [this] {
    std::lock_guard lock(mu_);
    return stopping_ || fenced_;
  };
  auto pause = [this](base::Duration d) {
    std::unique_lock lock(mu_);
    space_cv_.wait_for(lock, d, [&] { return stopping_ || fenced_; });
  };
  const base::Backoff retry{100ms, 5s, 2.0, 0.5};
  EventPosition after;
  bool found = false;
  for (uint32_t failures = 1; !loadCursor(after, found); ++failures) {
    if (stopped()) return;
    pause(retry.delay(failures, 0));
  }
  {
    std::lock_guard lock(mu_);
    read_ = after;
  }
  spdlog::info("webhooks: delivering completions after event {} (max {} in flight)",
               found ? after.text() : "(none: from the oldest held)", options_.max_in_flight);
  bool resumed_from_saved = found;
  uint32_t failures = 0;
  while (!stopped()) {
    EventPosition from;
    {
      std::lock_guard lock(mu_);
      from = read_;
    }
    // Only terminal events of records that may end a task with a callback_url: the others
    // cannot need a delivery (and are not even read while no one else follows the log).
    auto sub = feed_.subscribe("", from, Want::kCallbacks);
    {
      std::lock_guard lock(mu_);
      sub_ = sub;
      if (stopping_ || fenced_) break;
    }
    // Resuming from a position the log no longer holds: events after it may be gone. A fresh
    // start ({-1, 0}) is no gap.
    if (sub->gap() && (resumed_from_saved || from.record >= 0)) {
      gaps().inc();
      spdlog::warn(
          "webhooks: the event log no longer holds event {} (trimmed): completions after "
          "it may not be delivered",
          from.text());
    }
    resumed_from_saved = true;
    bool got = false;
    while (true) {
      {
        std::unique_lock lock(mu_);
        space_cv_.wait(
            lock, [&] { return stopping_ || fenced_ || order_.size() < options_.max_in_flight; });
        if (stopping_ || fenced_) break;
      }
      auto event = sub->next(200ms);
      if (!event) {
        if (sub->closed()) break;
        passIdle(*sub);
        updateGauges();
        continue;
      }
      got = true;
      take(*event);
    }
    sub->close();
    if (stopped()) break;
    // Closed by the feed: dropped (we fell behind while full), truncated (the replay held more
    // than a queue's worth), a replay that timed out, or the feed stopping. Resume after the
    // last event taken.
    failures = got ? 0 : failures + 1;
    if (failures > 0) pause(retry.delay(failures, 0));
  }
  std::lock_guard lock(mu_);
  sub_.reset();
}

void WebhookDispatcher::passIdle(const Subscription& sub) {
  // Records the feed passed without anything for us: the cursor may move past them, or it
  // would stay at the last callback event while the log is trimmed past it (a false gap on the
  // next leader's resume). The position's index is past any record's last event.
  auto through = sub.idleThrough();
  if (!through) return;
  std::lock_guard lock(mu_);
  if (*through > read_.record) read_ = EventPosition{*through, std::numeric_limits<int>::max()};
}

void WebhookDispatcher::take(const FeedEvent& event) {
  bool callback = event.callback;
  if (!event.ref.batch.empty() && tasks::isTerminal(event.state)) {
    // A v2 event carries no flag: the batch record (cached, immutable) says. An unreadable
    // record is taken to have one: prepare() reads it again and decides.
    auto record = v2_.batch(event.ref.batch);
    callback = !record || (*record && event.ref.index < (*record)->tasks.size() &&
                           !(*record)->tasks[event.ref.index].callback_url.empty());
  }
  {
    std::lock_guard lock(mu_);
    if (callback && tasks::isTerminal(event.state)) {
      order_.push_back(Open{event.position, read_, taken_, false});
      auto d = std::make_shared<Delivery>();
      d->event = event;
      ready_.push_back(std::move(d));
      ready_cv_.notify_one();
    }
    read_ = event.position;
    ++taken_;
  }
  updateGauges();
}

void WebhookDispatcher::sendLoop(size_t slot) {
  while (true) {
    std::shared_ptr<Delivery> d;
    {
      std::unique_lock lock(mu_);
      ready_cv_.wait(lock, [&] { return stopping_ || fenced_ || !ready_.empty(); });
      if (stopping_ || fenced_) return;
      d = std::move(ready_.front());
      ready_.pop_front();
    }
    attempt(d, slot);
  }
}

WebhookDispatcher::Prepared WebhookDispatcher::prepare(Delivery& d) {
  const auto& e = d.event;
  std::optional<tasks::TaskStatus> status;
  if (auto place = v2_.locate(e.ref); !place) {
    if (place.error().failure == Failure::kUnavailable) return Prepared::kLater;
  } else if (!*place) {
    outcome("lost").inc();
    spdlog::warn("webhooks: task {} is gone (retention) before its completion was delivered", e.id);
    return Prepared::kDone;
  } else {
    status = std::move((*place)->status);
  }
  if (!status) {
    outcome("gave_up").inc();
    spdlog::error("webhooks: task {}'s status cannot be read; not delivered", e.id);
    return Prepared::kDone;
  }
  // Retried since (and not terminal again yet, or terminal at a later attempt): the event of
  // that later end delivers it.
  if (!tasks::isTerminal(status->state) || status->attempts > e.attempt ||
      (status->attempts == e.attempt && status->state != e.state)) {
    spdlog::debug("webhooks: task {} changed since event {}; its later end is delivered", e.id,
                  e.position.text());
    return Prepared::kDone;
  }
  auto url = tasks::parseCallbackUrl(status->spec.callback_url);
  if (!url) {
    outcome("gave_up").inc();
    spdlog::error("webhooks: task {} has an unusable callback_url: {}", e.id, url.error());
    return Prepared::kDone;
  }
  d.post.url = std::move(*url);
  d.post.body = tasks::toJson(*status).dump(-1, ' ', false, tasks::Json::error_handler_t::replace);
  d.post.event = std::string(tasks::stateName(status->state));
  d.post.delivery = fmt::format("{}/{}", e.id, e.attempt);
  d.prepared = true;
  return Prepared::kReady;
}

void WebhookDispatcher::attempt(const std::shared_ptr<Delivery>& d, size_t slot) {
  if (!d->prepared) {
    switch (prepare(*d)) {
      case Prepared::kDone:
        finish(*d);
        return;
      case Prepared::kLater:
        retryLater(d, options_.backoff().delay(++d->zk_failures, 0));
        return;
      case Prepared::kReady:
        break;
    }
  }
  const auto& e = d->event;
  auto age = std::chrono::milliseconds(base::wallMillis() - e.at);
  if (age > options_.max_age) {
    outcome("gave_up").inc();
    spdlog::warn("webhooks: gave up on task {} ({} tries): older than {} s", e.id, d->tries,
                 options_.max_age.count());
    finish(*d);
    return;
  }
  d->post.attempt = ++d->tries;
  auto answer = postWebhook(d->post, options_, [this, slot](httplib::Client* c) {
    std::lock_guard lock(mu_);
    clients_[slot] = c;
  });
  {
    std::lock_guard lock(mu_);
    // Aborted by stop(): left open, so the cursor stays before it and the next leader sends it.
    if (stopping_ || fenced_) return;
  }
  std::string why = answer.status != 0 ? fmt::format("HTTP {}", answer.status) : answer.error;
  switch (judgeWebhookAnswer(answer.status)) {
    case WebhookVerdict::kDelivered:
      outcome("delivered").inc();
      spdlog::debug("webhooks: delivered task {} to {} ({} tries)", e.id, d->post.url.origin(),
                    d->tries);
      finish(*d);
      return;
    case WebhookVerdict::kGiveUp:
      outcome("gave_up").inc();
      spdlog::warn("webhooks: gave up on task {}: {} answered {}", e.id, d->post.url.origin(), why);
      finish(*d);
      return;
    case WebhookVerdict::kRetry:
      break;
  }
  if (d->tries >= options_.max_attempts) {
    outcome("gave_up").inc();
    spdlog::warn("webhooks: gave up on task {} after {} tries; the last: {}", e.id, d->tries, why);
    finish(*d);
    return;
  }
  outcome("retried").inc();
  auto delay = options_.backoff().delay(d->tries, 0);
  spdlog::info("webhooks: task {} to {}: {}; try {} in {} ms", e.id, d->post.url.origin(), why,
               d->tries + 1, std::chrono::duration_cast<std::chrono::milliseconds>(delay).count());
  retryLater(d, delay);
}

void WebhookDispatcher::retryLater(const std::shared_ptr<Delivery>& d, base::Duration delay) {
  timers_.postAfter(delay, [this, d] {
    std::lock_guard lock(mu_);
    if (stopping_ || fenced_) return;
    ready_.push_back(d);
    ready_cv_.notify_one();
  });
}

void WebhookDispatcher::finish(const Delivery& d) {
  {
    std::lock_guard lock(mu_);
    for (auto& o : order_) {
      if (!(o.position < d.event.position) && !(d.event.position < o.position)) {
        o.done = true;
        break;
      }
    }
    while (!order_.empty() && order_.front().done) order_.pop_front();
  }
  space_cv_.notify_all();
  updateGauges();
}

EventPosition WebhookDispatcher::cursorLocked() const {
  return order_.empty() ? read_ : order_.front().before;
}

void WebhookDispatcher::saveCursor() {
  saveOnce(options_.call_timeout);
  std::lock_guard lock(mu_);
  if (stopping_ || fenced_) return;
  timers_.postAfter(options_.save_interval, [this] { saveCursor(); });
}

void WebhookDispatcher::saveOnce(std::chrono::milliseconds timeout) {
  std::string text;
  bool exists = false;
  {
    std::lock_guard lock(mu_);
    if (fenced_) return;
    auto pos = cursorLocked();
    if (pos.record < 0) return;  // nothing read yet
    text = pos.text();
    exists = cursor_exists_;
  }
  if (text == saved_) return;
  std::vector<coord::Op> ops;
  ops.emplace_back(coord::CheckOp{layout_.epoch(), epoch_});
  if (exists) {
    ops.emplace_back(coord::SetOp{path_, text, coord::kAnyVersion});
  } else {
    ops.emplace_back(coord::CreateOp{path_, text, coord::CreateMode::kPersistent, {}});
  }
  auto r = coord_.multi(std::move(ops)).waitFor(timeout);
  if (!r) return;  // no answer: the next save tries again
  if (*r) {
    saved_ = text;
    std::lock_guard lock(mu_);
    saved_copy_ = text;
    cursor_exists_ = true;
    return;
  }
  const auto& err = r->error();
  std::lock_guard lock(mu_);
  if (err.failedOp() == 0 && (err.code() == Code::kBadVersion || err.code() == Code::kNoNode)) {
    fenced_ = true;
    spdlog::warn("webhooks: another leadership holds /epoch; this node stops delivering");
    space_cv_.notify_all();
    ready_cv_.notify_all();
  } else if (err.failedOp() == 1 && err.code() == Code::kNodeExists) {
    cursor_exists_ = true;
  } else if (err.failedOp() == 1 && err.code() == Code::kNoNode) {
    cursor_exists_ = false;
  } else {
    spdlog::debug("webhooks: saving the cursor failed: {}", err.toString());
  }
}

}  // namespace drover::api
