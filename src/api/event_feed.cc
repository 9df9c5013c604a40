#include "api/event_feed.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <future>
#include <limits>
#include <random>

#include "api/problem.h"
#include "coord/paths.h"
#include "tasks/batch.h"
#include "tasks/protocol.h"

namespace drover::api {

using coord::Code;
using tasks::TaskEvent;
using Clock = std::chrono::steady_clock;

// --- Subscription ---

std::string EventPosition::text() const { return fmt::format("{}.{}", record, index); }

std::optional<EventPosition> parseEventPosition(std::string_view text) {
  auto dot = text.find('.');
  if (dot == std::string_view::npos || dot == 0 || dot + 1 == text.size()) return std::nullopt;
  auto digits = [](std::string_view d, int64_t max) -> std::optional<int64_t> {
    if (d.empty() || d.size() > 18) return std::nullopt;
    int64_t v = 0;
    for (char c : d) {
      if (c < '0' || c > '9') return std::nullopt;
      v = v * 10 + (c - '0');
    }
    if (v > max) return std::nullopt;
    return v;
  };
  auto record = digits(text.substr(0, dot), std::numeric_limits<int64_t>::max());
  auto index = digits(text.substr(dot + 1), std::numeric_limits<int>::max());
  if (!record || !index) return std::nullopt;
  return EventPosition{*record, static_cast<int>(*index)};
}

std::optional<FeedEvent> Subscription::next(std::chrono::milliseconds timeout) {
  std::unique_lock lock(mu_);
  cv_.wait_for(lock, timeout, [&] { return !queue_.empty() || closed_; });
  if (queue_.empty()) return std::nullopt;
  FeedEvent e = std::move(queue_.front());
  queue_.pop_front();
  return e;
}

bool Subscription::closed() const {
  std::lock_guard lock(mu_);
  return closed_;
}

size_t Subscription::queued() const {
  std::lock_guard lock(mu_);
  return queue_.size();
}

bool Subscription::dropped() const {
  std::lock_guard lock(mu_);
  return dropped_;
}

void Subscription::close() {
  std::lock_guard lock(mu_);
  closed_ = true;
  cv_.notify_all();
}

bool Subscription::wanted(const FeedEvent& event) const {
  if (!id_filter_.empty() && event.id != id_filter_) return false;
  return want_ == Want::kAll || tasks::isTerminal(event.state);
}

void Subscription::pass(int64_t seq) {
  std::lock_guard lock(mu_);
  passed_ = std::max(passed_, seq);
}

std::optional<int64_t> Subscription::idleThrough() const {
  std::lock_guard lock(mu_);
  if (!queue_.empty() || passed_ < 0) return std::nullopt;
  return passed_;
}

bool Subscription::fill(const FeedEvent& event) {
  if (!wanted(event)) return true;
  std::lock_guard lock(mu_);
  if (closed_) return true;
  if (queue_.size() >= capacity_) return false;
  queue_.push_back(event);
  cv_.notify_all();
  return true;
}

void Subscription::truncate() {
  std::lock_guard lock(mu_);
  truncated_ = true;
  closed_ = true;
  cv_.notify_all();
}

bool Subscription::truncated() const {
  std::lock_guard lock(mu_);
  return truncated_;
}

void Subscription::push(const FeedEvent& event) {
  if (!wanted(event)) return;
  std::lock_guard lock(mu_);
  if (closed_) return;
  if (queue_.size() >= capacity_) {
    // Too slow: drop it rather than block the feed or grow without bound.
    dropped_ = true;
    closed_ = true;
    queue_.clear();
  } else {
    queue_.push_back(event);
  }
  cv_.notify_all();
}

// --- EventFeed ---

EventFeed::EventFeed(coord::Coordination& coord, tasks::Layout layout, EventFeedOptions options)
    : coord_(coord), layout_(std::move(layout)), options_(options) {}

EventFeed::~EventFeed() { stop(); }

void EventFeed::start() {
  {
    std::lock_guard lock(anchor_->mu);
    anchor_->feed = this;
  }
  std::weak_ptr<Anchor> anchor = anchor_;
  listener_ = coord_.addSessionListener([anchor](const coord::SessionEvent& e) {
    auto a = anchor.lock();
    if (!a || e.state != coord::SessionState::kConnected) return;
    std::lock_guard lock(a->mu);
    if (a->feed == nullptr) return;
    EventFeed* feed = a->feed;
    feed->executor_.post([feed, generation = e.generation] {
      // A new session lost the old one's watches: arm again. A reconnect of the same session
      // keeps them; refresh anyway to pick up what happened meanwhile.
      if (generation != feed->generation_) feed->watch_armed_ = false;
      feed->generation_ = generation;
      feed->refresh();
    });
  });
  generation_ = coord_.session().generation;
}

void EventFeed::stop() {
  {
    std::lock_guard lock(anchor_->mu);
    anchor_->feed = nullptr;
  }
  std::vector<std::weak_ptr<Subscription>> subs;
  {
    std::lock_guard lock(mu_);
    if (stopped_) return;
    stopped_ = true;
    subs.swap(subscribers_);
    listing_cv_.notify_all();
  }
  if (listener_ != 0) coord_.removeSessionListener(listener_);
  executor_.stop();
  for (auto& w : subs) {
    if (auto s = w.lock()) s->close();
  }
}

std::shared_ptr<Subscription> EventFeed::subscribe(std::string id_filter) {
  auto sub = std::make_shared<Subscription>(std::move(id_filter), options_.queue_capacity);
  std::unique_lock lock(mu_);
  if (stopped_) {
    sub->close();
    return sub;
  }
  subscribers_.push_back(sub);
  if (initialized_) return sub;
  // Idle (or still taking its first listing): wake it and wait for a listing, so that what the
  // caller does next is seen.
  uint64_t seen = listings_;
  executor_.post([this] { refresh(); });
  listing_cv_.wait_for(lock, options_.call_timeout,
                       [&] { return stopped_ || (initialized_ && listings_ != seen); });
  return sub;
}

std::shared_ptr<Subscription> EventFeed::subscribe(std::string id_filter, EventPosition after,
                                                   Want want) {
  auto sub = std::make_shared<Subscription>(std::move(id_filter), options_.queue_capacity, want);
  {
    std::lock_guard lock(mu_);
    if (stopped_) {
      sub->close();
      return sub;
    }
  }
  auto done = std::make_shared<std::promise<void>>();
  auto replayed = done->get_future();
  executor_.post([this, sub, after, done] {
    replay(sub, after);
    done->set_value();
  });
  if (replayed.wait_for(options_.call_timeout) != std::future_status::ready) {
    sub->close();  // the replay may still land: close it so it delivers nothing half-way
  }
  return sub;
}

void EventFeed::replay(const std::shared_ptr<Subscription>& sub, EventPosition after) {
  if (sub->closed()) return;
  auto kids = coord_.children(layout_.events(), nullptr).waitFor(options_.call_timeout);
  if (!kids || !*kids) {
    sub->close();
    return;
  }
  auto records = sortedRecords(**kids);
  // An idle feed starts live delivery after what this listing holds; the replay covers it.
  if (!initialized_) markInitialized(records);
  // Only records the live feed has passed are replayed here; newer ones come live.
  const int64_t upto = last_seen_.load();
  bool held = false;
  std::vector<std::pair<int64_t, std::string>> wanted;
  for (const auto& r : records) {
    if (r.first == after.record) held = true;
    if (r.first < after.record || r.first > upto) continue;
    if (sub->want() == Want::kCallbacks && !tasks::v2::mayHoldCallbacks(r.second)) continue;
    wanted.push_back(r);
  }
  if (!held) sub->gap_ = true;
  // Read in windows of pipelined reads, so that a replay that fills the queue early (a v2
  // record alone can hold thousands of events) does not read the rest of the log for nothing.
  constexpr size_t kWindow = 32;
  std::deque<coord::Future<coord::Node>> futures;
  size_t sent = 0;
  for (size_t i = 0; i < wanted.size(); ++i) {
    while (sent < wanted.size() && sent < i + kWindow) {
      futures.push_back(coord_.get(coord::join(layout_.events(), wanted[sent].second), nullptr));
      ++sent;
    }
    auto node = futures.front().waitFor(options_.call_timeout);
    futures.pop_front();
    if (!node || (!*node && (*node).error().code() != Code::kNoNode)) {
      sub->close();  // cannot tell what it missed: the client reconnects and resumes again
      return;
    }
    if (!*node) {
      sub->gap_ = true;  // trimmed between the listing and the read
      continue;
    }
    for (const auto& e : decodeRecord(wanted[i].first, (*node)->data)) {
      if (after < e.position && !sub->fill(e)) {
        // Full: what is queued stays (a drop here would throw away the whole replay, and the
        // same resume would overflow again: it would never get past this point). The
        // subscriber pops it and resumes after the last event.
        for (auto& f : futures) (void)f.waitFor(options_.call_timeout);
        sub->truncate();
        return;
      }
    }
  }
  sub->pass(upto);
  {
    std::lock_guard lock(mu_);
    subscribers_.push_back(sub);
  }
  refresh();  // arms the watch if needed and delivers anything past `upto`
}

std::vector<std::pair<int64_t, std::string>> EventFeed::sortedRecords(
    const std::vector<std::string>& names) {
  std::vector<std::pair<int64_t, std::string>> records;
  for (const auto& name : names) {
    int64_t seq = coord::sequenceOf(name);
    if (seq >= 0) records.emplace_back(seq, name);
  }
  std::sort(records.begin(), records.end());
  return records;
}

void EventFeed::markInitialized(const std::vector<std::pair<int64_t, std::string>>& records) {
  last_seen_ = records.empty() ? -1 : records.back().first;
  std::lock_guard lock(mu_);
  initialized_ = true;
  ++listings_;
  listing_cv_.notify_all();
}

std::vector<FeedEvent> EventFeed::decodeRecord(int64_t seq, const std::string& data) {
  std::vector<FeedEvent> events;
  auto j = tasks::parseJson(data);
  if (!j || !j->is_array()) return events;
  // A record is an array of EventGroups (one per batch and state, tasks as index ranges;
  // tasks::EventGroup::expand spells them out). An event's index counts the tasks of the record
  // in order.
  int index = 0;
  auto add = [&](TaskEvent e) {
    FeedEvent f;
    static_cast<TaskEvent&>(f) = std::move(e);
    f.position = EventPosition{seq, index};
    events.push_back(std::move(f));
  };
  for (const auto& item : *j) {
    auto g = tasks::eventGroupFromJson(item);
    if (!g) continue;  // not a group (nothing writes other items): skipped
    auto expanded = g->expand();
    for (size_t k = 0; k < expanded.size(); ++k) {
      add(std::move(expanded[k]));
      events.back().ref = tasks::TaskRef{g->batch, g->indices[k]};
      ++index;
    }
  }
  return events;
}

bool EventFeed::anyoneListening() {
  std::lock_guard lock(mu_);
  std::erase_if(subscribers_, [](const std::weak_ptr<Subscription>& w) {
    auto s = w.lock();
    return !s || s->closed();
  });
  if (subscribers_.empty()) initialized_ = false;  // idle: the next subscriber starts afresh
  return !subscribers_.empty();
}

void EventFeed::wake() {
  if (wake_pending_) return;
  auto due = last_refresh_ + options_.min_interval;
  auto now = std::chrono::steady_clock::now();
  if (now >= due) {
    refresh();
    return;
  }
  wake_pending_ = true;
  executor_.postAfter(std::chrono::duration_cast<base::Duration>(due - now), [this] {
    wake_pending_ = false;
    refresh();
  });
}

size_t EventFeed::subscribers() {
  std::lock_guard lock(mu_);
  std::erase_if(subscribers_, [](const std::weak_ptr<Subscription>& w) {
    auto s = w.lock();
    return !s || s->closed();
  });
  return subscribers_.size();
}

void EventFeed::scheduleRetry() {
  if (retry_pending_) return;
  retry_pending_ = true;
  ++failures_;
  executor_.postAfter(options_.retry.delay(failures_, std::random_device{}()), [this] {
    retry_pending_ = false;
    refresh();
  });
}

void EventFeed::refresh() {
  // Nobody listens: take no listing and arm no watch (one already armed fires once more, and
  // ends here too).
  if (!anyoneListening()) return;
  last_refresh_ = std::chrono::steady_clock::now();
  coord::Watcher watcher;
  if (!watch_armed_) {
    std::weak_ptr<Anchor> anchor = anchor_;
    watcher = [anchor](const coord::WatchEvent&) {
      auto a = anchor.lock();
      if (!a) return;
      std::lock_guard lock(a->mu);
      if (a->feed == nullptr) return;
      EventFeed* feed = a->feed;
      feed->executor_.post([feed] {
        feed->watch_armed_ = false;
        feed->wake();
      });
    };
  }
  auto kids = coord_.children(layout_.events(), watcher).waitFor(options_.call_timeout);
  if (!kids || !*kids) {
    if (kids) spdlog::debug("event feed: listing events failed: {}", kids->error().toString());
    scheduleRetry();
    return;
  }
  if (watcher) watch_armed_ = true;
  failures_ = 0;

  auto records = sortedRecords(**kids);
  if (!initialized_) {
    // The first listing since the feed was idle: deliver what comes after it (no replay).
    markInitialized(records);
    return;
  }
  std::erase_if(records, [&](const auto& r) { return r.first <= last_seen_.load(); });
  // With only the webhook dispatcher listening, records named as holding no callback are not
  // read: without webhooks in use that is nearly every record (docs/ZNODES.md "/events").
  const bool callbacks_only = onlyCallbacks();
  std::vector<std::optional<coord::Future<coord::Node>>> futures;
  futures.reserve(records.size());
  for (const auto& r : records) {
    if (callbacks_only && !tasks::v2::mayHoldCallbacks(r.second)) {
      futures.emplace_back();
    } else {
      futures.emplace_back(coord_.get(coord::join(layout_.events(), r.second), nullptr));
    }
  }
  for (size_t i = 0; i < records.size(); ++i) {
    if (!futures[i]) {
      last_seen_ = records[i].first;
      continue;
    }
    auto node = futures[i]->waitFor(options_.call_timeout);
    if (!node || (!*node && (*node).error().code() != Code::kNoNode)) {
      scheduleRetry();  // read the rest later; last_seen_ stays at the last one delivered
      return;
    }
    if (*node) {
      dispatch(decodeRecord(records[i].first, (*node)->data),
               tasks::v2::mayHoldCallbacks(records[i].second));
    }
    // else: trimmed before we read it
    last_seen_ = records[i].first;
  }
  if (!records.empty()) passed(records.back().first);
}

bool EventFeed::onlyCallbacks() {
  std::lock_guard lock(mu_);
  return std::all_of(subscribers_.begin(), subscribers_.end(), [](const auto& w) {
    auto s = w.lock();
    return !s || s->want() == Want::kCallbacks;
  });
}

void EventFeed::passed(int64_t seq) {
  std::lock_guard lock(mu_);
  for (const auto& w : subscribers_) {
    if (auto s = w.lock()) s->pass(seq);
  }
}

void EventFeed::dispatch(const std::vector<FeedEvent>& events, bool may_call_back) {
  if (events.empty()) return;
  std::lock_guard lock(mu_);
  std::erase_if(subscribers_, [&](const std::weak_ptr<Subscription>& w) {
    auto s = w.lock();
    if (!s) return true;
    if (!may_call_back && s->want() == Want::kCallbacks) return s->closed();
    for (const auto& e : events) s->push(e);
    return s->closed();
  });
}
}  // namespace drover::api
