#pragma once

// The cluster-wide event log (/events) as per-subscriber queues for GET /v1/events: EventFeed
// reads the log, driven by ZooKeeper watches, and fans its records out to Subscriptions.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/backoff.h"
#include "base/executor.h"
#include "coord/coordination.h"
#include "tasks/batch.h"
#include "tasks/layout.h"
#include "tasks/records.h"

namespace drover::api {

// Where an event sits in the log: the sequence number of its record and its index in the record.
// Its text form, "{record}.{index}", is the event's SSE `id:`, which a client sends back as
// Last-Event-ID to resume after it.
struct EventPosition {
  int64_t record = -1;
  int index = 0;
  std::string text() const;
  bool operator<(const EventPosition& o) const {
    return record != o.record ? record < o.record : index < o.index;
  }
};
// Parses "{record}.{index}" (both decimal, record >= 0, index >= 0); nullopt otherwise.
std::optional<EventPosition> parseEventPosition(std::string_view text);

// An event as a subscriber gets it: the change, and where it sits in the log.
struct FeedEvent : tasks::TaskEvent {
  EventPosition position;
  // Protocol v2 events: the task's batch and index (batch "" for the first protocol's events).
  tasks::TaskRef ref;
};

// Which events a subscription takes.
enum class Want {
  kAll,
  kTerminal,  // events of terminal states only
  // Terminal events of records that may end a task with a callback_url (the webhook
  // dispatcher's): records named as holding none (tasks::v2::mayHoldCallbacks) are not read for
  // it at all.
  kCallbacks,
};

// One subscriber's queue of events. The feed pushes, the subscriber pops. Thread-safe.
class Subscription {
 public:
  Subscription(std::string id_filter, size_t capacity, Want want = Want::kAll)
      : id_filter_(std::move(id_filter)), capacity_(capacity), want_(want) {}

  // The next event, waiting at most `timeout`; nullopt on timeout or once closed.
  std::optional<FeedEvent> next(std::chrono::milliseconds timeout);
  // Closed: by the feed (stopped, or this subscriber fell `capacity` events behind: dropped) or
  // by close(). A closed subscription gets nothing more; queued events can still be popped.
  bool closed() const;
  bool dropped() const;
  // Events queued and not yet popped.
  size_t queued() const;
  void close();
  // A resumed subscription whose resume point the log no longer holds (trimmed): events after it
  // may be missing, so the client should re-read the tasks it follows. Set before subscribe()
  // returns.
  bool gap() const { return gap_.load(); }
  // A resumed subscription whose replay held more than `capacity` events: closed, with the
  // first `capacity` of them queued (not dropped). Pop them, then resume after the last one.
  // Protocol v2 records hold many events each (one per task of an EventGroup), so a resume from
  // far behind can exceed any fixed capacity; it then advances a queue's worth per resume.
  bool truncated() const;
  // With nothing queued: the newest record of the log the feed has gone past for this
  // subscriber (every event it wants up to there was queued, and has been popped); nullopt
  // while something is queued or before the feed passed a record. A subscriber that reads few
  // records (Want::kCallbacks) can move its resume point up to it.
  std::optional<int64_t> idleThrough() const;
  Want want() const { return want_; }

 private:
  friend class EventFeed;
  // Queues `event` unless filtered out; on overflow closes the subscription (dropped).
  void push(const FeedEvent& event);
  // The replay's push: false, and nothing queued, when the queue is full.
  bool fill(const FeedEvent& event);
  // Closes it keeping what is queued (truncated()).
  void truncate();
  bool wanted(const FeedEvent& event) const;
  // The feed went past record `seq` for this subscriber (after queuing what it wanted of it).
  void pass(int64_t seq);

  const std::string id_filter_;
  const size_t capacity_;
  const Want want_;
  bool truncated_ = false;
  int64_t passed_ = -1;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<FeedEvent> queue_;
  bool closed_ = false;
  bool dropped_ = false;
  std::atomic<bool> gap_{false};
};

struct EventFeedOptions {
  size_t queue_capacity = 1024;  // per subscriber
  base::Backoff retry{std::chrono::milliseconds(100), std::chrono::milliseconds(5000), 2.0, 0.5};
  std::chrono::milliseconds call_timeout{5000};
  // Two listings of the log start at least this far apart: under a high task rate every commit
  // fires the watch, and one listing then picks up every record written meanwhile.
  std::chrono::milliseconds min_interval{50};
};

// Watches the children of layout.events(), reads the records past the last one seen (by their
// sequence number) and fans their TaskEvents out to subscribers. Driven by child watches
// (re-armed on each fire and after a session is rebuilt), not by polling; a failed read retries
// with backoff.
//
// The feed reads ZooKeeper only while it has subscribers: a node that nobody streams events from
// costs ZooKeeper nothing per task (every node has a feed, and the log changes several times per
// task). subscribe() on an idle feed starts listening and returns once the first listing is in
// (or after call_timeout), so a subscriber sees every event committed after subscribe() returned;
// there is no history replay. When the last subscriber is gone the feed stops at its next wake-up.
//
// Owns one executor thread; watch callbacks only post to it. Thread-safe.
class EventFeed {
 public:
  EventFeed(coord::Coordination& coord, tasks::Layout layout, EventFeedOptions options = {});
  ~EventFeed();
  EventFeed(const EventFeed&) = delete;
  EventFeed& operator=(const EventFeed&) = delete;

  // Makes the feed usable (it listens only while it has subscribers). Returns at once.
  void start();
  // Stops the thread and closes every subscription. Idempotent; the destructor calls it.
  void stop();

  // A new queue; events for other ids are skipped when `id_filter` is non-empty. Blocks (up to
  // call_timeout) while an idle feed takes its first listing.
  std::shared_ptr<Subscription> subscribe(std::string id_filter = {});
  // Resumes after `after` (a Last-Event-ID): first every event the log still holds after that
  // position, then the live ones, with none missed or repeated in between. When the log no
  // longer holds `after`'s record, the subscription's gap() is set. Blocks up to call_timeout.
  // When the log holds more events after `after` than a queue takes, the subscription comes
  // back truncated() after the first queue's worth. `want`: which events are queued (the
  // webhook dispatcher's: Want::kCallbacks).
  std::shared_ptr<Subscription> subscribe(std::string id_filter, EventPosition after,
                                          Want want = Want::kAll);
  size_t subscribers();
  // The sequence number of the newest record read (-1 before the first read).
  int64_t lastSeen() const { return last_seen_.load(); }
  // True while the feed listens: its first listing since it last went idle is in, and events
  // committed since are delivered.
  bool ready() const { return initialized_.load(); }

 private:
  void refresh();  // executor thread only
  void wake();     // executor thread only: refresh now or once min_interval has passed
  bool anyoneListening();
  void scheduleRetry();
  // The log's record names with their sequence numbers, oldest first.
  static std::vector<std::pair<int64_t, std::string>> sortedRecords(
      const std::vector<std::string>& names);
  // Executor thread: live delivery starts after the newest of `records`; wakes subscribe().
  void markInitialized(const std::vector<std::pair<int64_t, std::string>>& records);
  // The events of one record, in order.
  static std::vector<FeedEvent> decodeRecord(int64_t seq, const std::string& data);
  // `may_call_back`: the record's name allows a callback (Want::kCallbacks subscribers get
  // nothing from the others).
  void dispatch(const std::vector<FeedEvent>& events, bool may_call_back);
  // Every live subscriber wants only Want::kCallbacks: records that cannot hold one go unread.
  bool onlyCallbacks();
  // Tells every subscriber the feed went past record `seq`.
  void passed(int64_t seq);
  // Executor thread: replays the log after `after` into `sub`, then makes it a live subscriber.
  void replay(const std::shared_ptr<Subscription>& sub, EventPosition after);

  coord::Coordination& coord_;
  const tasks::Layout layout_;
  const EventFeedOptions options_;

  // Executor-thread state.
  std::atomic<bool> initialized_{false};
  bool watch_armed_ = false;
  bool retry_pending_ = false;
  uint32_t failures_ = 0;
  uint64_t generation_ = 0;
  std::atomic<int64_t> last_seen_{-1};
  std::chrono::steady_clock::time_point last_refresh_{};
  bool wake_pending_ = false;
  uint64_t listings_ = 0;               // listings of the log taken (initialized_ under mu_)
  std::condition_variable listing_cv_;  // a listing came in (waited on under mu_)

  std::mutex mu_;
  std::vector<std::weak_ptr<Subscription>> subscribers_;
  bool stopped_ = false;
  uint64_t listener_ = 0;
  // What watch callbacks hold: they may fire after the feed is gone, so they reach it only
  // through this, which stop() clears.
  struct Anchor {
    std::mutex mu;
    EventFeed* feed = nullptr;
  };
  std::shared_ptr<Anchor> anchor_ = std::make_shared<Anchor>();
  base::ThreadExecutor executor_{"event-feed"};
};

}  // namespace drover::api
