#pragma once

// The leader's webhook dispatcher (docs/API.md "Completion webhooks", docs/ZNODES.md
// "/webhooks"): follows the event log from a cursor kept in ZooKeeper and POSTs each task that
// ended with a callback_url to it.
//
// Delivery is at least once. The cursor (`{root}/webhooks`, the position "{record}.{index}" of
// the last event below which everything is handled) is written only in a multi that checks
// /epoch at this leadership's version, so a deposed leader cannot move it; a new leader resumes
// after it and re-delivers what was in flight. Each POST carries Drover-Delivery (task id and
// attempt) for receivers to dedupe.
//
// Never on the assign path: it has threads of its own (one follows the log, a small pool sends,
// one runs timers) and reads the log through the node's EventFeed. At most max_in_flight
// deliveries are open at once; when that many are, the follower stops taking events (the cursor
// stops advancing) and nothing else waits. A log trimmed past the cursor is logged and counted
// (drover_webhook_log_gaps_total).
//
// Thread safety: start() and stop() from the owner's thread; stats() from any.

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "api/batch_reader.h"
#include "api/event_feed.h"
#include "api/webhooks.h"
#include "base/executor.h"
#include "coord/coordination.h"
#include "tasks/layout.h"

namespace drover::api {

// Creates the webhook metrics at 0 (docs/OPERATIONS.md), so a scrape shows them before the
// first delivery.
void exposeWebhookMetrics();

// The cursor's znode: {root}/webhooks.
std::string webhookCursorPath(const tasks::Layout& layout);

class WebhookDispatcher {
 public:
  // `coord` and `feed` must outlive the dispatcher. `epoch`: the data version of /epoch this
  // leadership holds (its fencing token).
  WebhookDispatcher(coord::Coordination& coord, tasks::Layout layout, EventFeed& feed,
                    int32_t epoch, WebhookOptions options);
  ~WebhookDispatcher();
  WebhookDispatcher(const WebhookDispatcher&) = delete;
  WebhookDispatcher& operator=(const WebhookDispatcher&) = delete;

  void start();
  // Aborts POSTs in progress, saves the cursor once more (epoch-checked; fails harmlessly when
  // deposed), joins the threads. Idempotent; the destructor calls it.
  void stop();

  struct Stats {
    size_t in_flight = 0;
    size_t lag = 0;       // events read from the log or queued for it, not yet handled
    std::string cursor;   // as saved last ("" before the first save)
    bool fenced = false;  // a cursor write found another leadership's epoch
  };
  Stats stats() const;

 private:
  struct Delivery;
  enum class Prepared { kReady, kDone, kLater };
  struct Open {  // an accepted delivery, in log order
    EventPosition position;
    EventPosition before;       // the position read before it: the cursor while it is open
    uint64_t taken_before = 0;  // events taken from the log before it (for the lag)
    bool done = false;
  };

  void follow();  // the follower thread
  void sendLoop(size_t slot);
  void attempt(const std::shared_ptr<Delivery>& d, size_t slot);  // a sender thread
  // Reads the task and builds the POST; kDone when the delivery ended here (the task is gone,
  // superseded or undecodable), kLater when ZooKeeper did not answer.
  Prepared prepare(Delivery& d);
  void take(const FeedEvent& event);  // the follower thread
  // The follower thread, with nothing queued: moves read_ past the records the feed went by.
  void passIdle(const Subscription& sub);
  void retryLater(const std::shared_ptr<Delivery>& d, base::Duration delay);
  void finish(const Delivery& d);
  void saveCursor();  // the timer thread: saves and schedules the next save
  void saveOnce(std::chrono::milliseconds timeout);
  EventPosition cursorLocked() const;
  bool loadCursor(EventPosition& after, bool& found);
  void updateGauges();

  coord::Coordination& coord_;
  const tasks::Layout layout_;
  // Protocol v2's tasks: callback_url from the (cached) batch record, the status from the
  // result records.
  BatchReader v2_;
  EventFeed& feed_;
  const int32_t epoch_;
  const WebhookOptions options_;
  const std::string path_;

  mutable std::mutex mu_;
  std::condition_variable space_cv_;  // order_ shrank or stopping
  std::condition_variable ready_cv_;  // ready_ grew or stopping
  bool stopping_ = false;
  bool fenced_ = false;
  std::deque<Open> order_;
  std::deque<std::shared_ptr<Delivery>> ready_;
  EventPosition read_{-1, 0};  // the last event taken from the log
  uint64_t taken_ = 0;         // events taken from the log
  std::shared_ptr<Subscription> sub_;
  std::vector<httplib::Client*> clients_;  // per sender, while it posts
  // Saving: cursor_exists_ and saved_ only on the timer thread.
  bool cursor_exists_ = false;
  std::string saved_;
  std::string saved_copy_;  // saved_, for stats() (under mu_)

  std::thread follower_;
  std::vector<std::thread> senders_;
  base::ThreadExecutor timers_{"webhook-timers"};
  bool started_ = false;
};

}  // namespace drover::api
