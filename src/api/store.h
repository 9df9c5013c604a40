#pragma once

// The client side of the task protocol (docs/ZNODES.md): what the REST API does to the znode
// tree. TaskStore makes blocking calls with deadlines and is meant for HTTP handler threads;
// EventFeed turns the /events log into per-subscriber queues, driven by ZooKeeper watches.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <tl/expected.hpp>
#include <vector>

#include "base/backoff.h"
#include "base/executor.h"
#include "coord/coordination.h"
#include "tasks/layout.h"
#include "tasks/records.h"
#include "tasks/task.h"

namespace drover::api {

// Why a store call did not succeed; each maps to one HTTP status (see http.cc).
enum class Failure {
  kBadRequest,   // 400: the input itself is wrong (duplicate ids in a batch, ...)
  kNotFound,     // 404: no such task
  kConflict,     // 409: the id exists with another spec
  kTooLarge,     // 413: more than one ZooKeeper transaction can carry
  kTooMany,      // 429: past the cap on pending tasks (StoreOptions::max_pending); retry later
  kUnavailable,  // 503: no quorum, not connected, or the outcome could not be learned in time
  kInternal,     // 500: the tree holds something this version cannot read, or a broken invariant
};

struct Problem {
  Failure failure = Failure::kInternal;
  std::string detail;
};

template <class T>
using StoreResult = tl::expected<T, Problem>;

struct StoreOptions {
  // How long one coordination call may take before it counts as timed out (outcome unknown).
  std::chrono::milliseconds call_timeout{5000};
  // How long submit/cancel keep trying to learn the outcome of an ambiguous write.
  std::chrono::milliseconds settle_deadline{10000};
  base::Backoff backoff{std::chrono::milliseconds(20), std::chrono::milliseconds(1000), 2.0, 0.5};
  // Largest encoded multi submitBatch sends (ZooKeeper's packet limit is 1 MiB).
  size_t max_multi_bytes = 900 * 1024;
  // Re-reads cancel makes when the token moved under it.
  int cancel_attempts = 8;
  // Gets in flight at once when scanning /status.
  size_t pipeline = 256;
  // How long cluster() reuses its task counts.
  std::chrono::milliseconds counts_ttl{1000};
  // Group commit of single submits: submits that arrive while this many group multis are in
  // flight wait and go out together in the next one (at most group_max_tasks). 0: every submit
  // sends its own multi.
  size_t group_inflight = 2;
  size_t group_max_tasks = 500;
  // Flood control: a submit that would take the pending tasks (the jobs under /jobs: tasks
  // waiting for a worker, retries in backoff included) past this is refused with kTooMany and
  // writes nothing. 0: no cap.
  size_t max_pending = 0;
  // How long one count of the pending tasks is used (with this store's own submits added)
  // before it is read again.
  std::chrono::milliseconds pending_ttl{1000};
};

struct SubmitResult {
  tasks::TaskStatus status;
  bool created = false;  // true: this call committed it (202); false: an identical repeat (200)
};

struct BatchResult {
  std::vector<std::string> ids;
  bool created = false;  // false: every task already existed with the same spec (200)
};

struct CancelResult {
  tasks::TaskStatus status;
  bool already_finished = false;  // it was terminal before: returned unchanged
};

struct TaskPage {
  std::vector<tasks::TaskStatus> tasks;
  std::optional<std::string> next;  // the cursor for the following page; nullopt at the end
};

struct WorkerView {
  tasks::WorkerInfo info;
  size_t assigned = 0;  // children of /assignments/{id}: running, starting or queued there
  size_t running = 0;   // of those, the ones in slots: min(assigned, slots)
  bool leader = false;
};

struct LeaderInfo {
  std::string id;
  int64_t epoch = 0;
};

// The live workers and the leader, as /leader names it (read once, so that the flag on the
// workers and `leader` agree). A leader with no worker role is named but marks no worker.
struct WorkersView {
  std::vector<WorkerView> workers;
  std::optional<LeaderInfo> leader;
};

struct ClusterView {
  std::optional<LeaderInfo> leader;
  coord::SessionEvent session;
  size_t workers = 0;
  std::map<tasks::State, size_t> counts;  // every state present, zero included
};

// The API's side of the protocol over one coordination session. Thread-safe: every method may
// be called from many HTTP threads at once; each blocks for at most about its deadline.
//
// Writes follow the token rule: a status is written after submit only in one multi that deletes
// the task's token (job or assignment). Ambiguous writes (connection loss, timeout) are settled
// by re-reading; no call reports success without a commit.
class TaskStore {
 public:
  TaskStore(coord::Coordination& coord, tasks::Layout layout, StoreOptions options = {});

  // Creates status (pending), job (attempt 1) and one event in one multi. An existing id with an
  // equal spec is an idempotent repeat (created = false); with another spec kConflict (nothing
  // written). kUnavailable when not connected or when the outcome stays unknown past the
  // settle deadline.
  StoreResult<SubmitResult> submit(const tasks::TaskSpec& spec);

  // All or nothing, in one multi. kBadRequest for duplicate ids or an empty batch, kTooLarge past
  // max_multi_bytes. If any id exists: all exist with equal specs -> created = false, else
  // kConflict naming the ids (nothing written).
  StoreResult<BatchResult> submitBatch(const std::vector<tasks::TaskSpec>& specs);

  // The current status; kNotFound if absent. `id` must pass base::isValidName.
  StoreResult<tasks::TaskStatus> get(const std::string& id);

  // Long poll: returns once the task is terminal, or at `timeout` with its state then. Driven by
  // a data watch on /status/{id}, not by polling.
  StoreResult<tasks::TaskStatus> wait(const std::string& id, std::chrono::milliseconds timeout);

  // Cancels per the protocol: terminal -> unchanged (already_finished); pending -> delete job +
  // set cancelled; assigned/running -> delete the assignment + set cancelled. Retries (bounded)
  // when the token moved under it.
  StoreResult<CancelResult> cancel(const std::string& id);

  // Statuses sorted by id, after `cursor` (exclusive), at most `limit`, optionally one state.
  StoreResult<TaskPage> list(std::optional<tasks::State> state, size_t limit,
                             const std::string& cursor);
  // Statuses newest first: by creation zxid (a cluster-wide order of submits; the tasks of one
  // batch share one, then higher ids come first), after `after` (exclusive). `next` is
  // "<czxid>-<id>" (see parseNewestCursor). Costs a stat read per retained status.
  struct NewestCursor {
    int64_t czxid = 0;
    std::string id;
  };
  StoreResult<TaskPage> listNewest(std::optional<tasks::State> state, size_t limit,
                                   const std::optional<NewestCursor>& after);

  StoreResult<WorkersView> workers();
  StoreResult<ClusterView> cluster();

  // The session as the coordination layer reports it; ready means kConnected.
  coord::SessionEvent session() const { return coord_.session(); }
  bool connected() const { return coord_.session().state == coord::SessionState::kConnected; }

  const tasks::Layout& layout() const { return layout_; }

  // Makes every wait() in progress, and every later one, return at once with the state it has
  // read (for shutting the HTTP server down without holding it for a long poll). Thread-safe.
  void interruptWaits();
  // Single submits waiting for a group multi (see StoreOptions::group_inflight).
  size_t queuedSubmits() const;

 private:
  struct WaitSignal {
    std::mutex mu;
    std::condition_variable cv;
    bool fired = false;
  };

  template <class T>
  coord::Result<T> await(const coord::Future<T>& future) const;
  StoreResult<std::optional<tasks::TaskStatus>> readStatus(const std::string& id);
  // Reads many statuses pipelined; absent ones are nullopt. Undecodable ones are an error.
  StoreResult<std::vector<std::optional<tasks::TaskStatus>>> readStatuses(
      const std::vector<std::string>& ids);
  StoreResult<std::optional<LeaderInfo>> readLeader();
  StoreResult<std::map<tasks::State, size_t>> countTasks();
  // The ids of every status, from all status buckets (listed pipelined), unsorted.
  StoreResult<std::vector<std::string>> statusIds(const char* what);
  void pause(int attempt) const;
  // Flood control (StoreOptions::max_pending): kTooMany if `tasks` more would pass the cap, else
  // counts them in. Never lists ZooKeeper: see pendingEstimate().
  StoreResult<void> admit(size_t tasks);
  // The pending tasks: the sum of the job buckets' child counts (256 stat reads, pipelined, no
  // listing); nullopt when they cannot be read.
  std::optional<size_t> countPending();

  // Group commit (see StoreOptions::group_inflight). A submit's first try joins the queue; the
  // outcome of its group's multi is all it learns: nullopt when it committed, else the multi's
  // error (one op failed: the submit then tries alone, which tells whose op it was and why; or
  // the session failed; or the outcome is unknown).
  struct GroupEntry;
  struct Group;
  // A submit's two creates: the task's status (pending) and its job.
  std::vector<coord::Op> submitOps(const tasks::TaskStatus& status) const;
  std::optional<coord::Error> groupCreate(const tasks::TaskStatus& status);

  coord::Coordination& coord_;
  const tasks::Layout layout_;
  const StoreOptions options_;

  std::mutex waits_mu_;
  std::set<std::shared_ptr<WaitSignal>> waits_;
  std::atomic<bool> interrupted_{false};

  std::mutex counts_mu_;
  std::optional<std::pair<std::chrono::steady_clock::time_point, std::map<tasks::State, size_t>>>
      counts_cache_;

  // Flood control: the last count of the pending tasks, when it was read, and the tasks this
  // store admitted since (under pending_mu_). One thread reads a new count at a time
  // (pending_refresh_mu_); the others go on with the old one meanwhile.
  std::mutex pending_mu_;
  std::optional<std::chrono::steady_clock::time_point> pending_read_at_;
  size_t pending_read_ = 0;
  size_t pending_added_ = 0;
  std::mutex pending_refresh_mu_;

  // Shared with multi completions, which may come after the store is gone.
  std::shared_ptr<Group> group_;
};

// One subscriber's queue of events. The feed pushes, the subscriber pops. Thread-safe.
class Subscription {
 public:
  Subscription(std::string id_filter, size_t capacity)
      : id_filter_(std::move(id_filter)), capacity_(capacity) {}

  // The next event, waiting at most `timeout`; nullopt on timeout or once closed.
  std::optional<tasks::TaskEvent> next(std::chrono::milliseconds timeout);
  // Closed: by the feed (stopped, or this subscriber fell `capacity` events behind: dropped) or
  // by close(). A closed subscription gets nothing more; queued events can still be popped.
  bool closed() const;
  bool dropped() const;
  void close();

 private:
  friend class EventFeed;
  // Queues `event` unless filtered out; on overflow closes the subscription (dropped).
  void push(const tasks::TaskEvent& event);

  const std::string id_filter_;
  const size_t capacity_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<tasks::TaskEvent> queue_;
  bool closed_ = false;
  bool dropped_ = false;
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
  void dispatch(const std::vector<tasks::TaskEvent>& events);

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
