// BatchReader::cluster(): the task counts by state under protocol v2 (docs/ZNODES.md, "The
// API's side": waiting and held exactly, terminal tallies by each task's latest outcome, frozen per
// finished batch).
#include <algorithm>
#include <set>

#include "api/batch_reader.h"

namespace drover::api {
namespace {

using coord::Code;
using tasks::State;
using Clock = std::chrono::steady_clock;

// Finished batches whose outcomes one cluster() call tallies for the first time, and (past
// exact_count_batches) unfinished batches whose outcomes it re-tallies.
constexpr size_t kTallyBudget = 256;
constexpr size_t kPartialBudget = 64;

void add(std::map<State, size_t>& counts, uint32_t succeeded, uint32_t failed, uint32_t cancelled) {
  counts[State::kSucceeded] += succeeded;
  counts[State::kFailed] += failed;
  counts[State::kCancelled] += cancelled;
}

}  // namespace

StoreResult<std::vector<std::vector<std::string>>> BatchReader::childrenOfAll(
    const std::vector<std::string>& paths) {
  std::vector<coord::Future<std::vector<std::string>>> futures;
  futures.reserve(paths.size());
  for (const auto& path : paths) futures.push_back(coord_.children(path, nullptr));
  std::vector<std::vector<std::string>> out(paths.size());
  for (size_t i = 0; i < futures.size(); ++i) {
    auto names = await(futures[i]);
    if (!names) {
      if (names.error().code() == Code::kNoNode) continue;
      return tl::unexpected(fromCoord(names.error(), "list batches"));
    }
    std::sort(names->begin(), names->end());
    out[i] = std::move(*names);
  }
  return out;
}

// Two ways to count what is not finished, by the size of the backlog:
// - Up to exact_count_batches unfinished batches: each one's pending state is read (exact).
// - Past it: the leader's published counts (waiting, delayed, held; ~1 s old), and the terminal
//   outcomes inside unfinished batches from each one's last tally, kPartialBudget of them
//   re-read per count in name order. Reading every pending state of a 300,000-batch backlog
//   took longer than a client waits (the paused-node cluster test, FAULTS.md).
// Finished batches are tallied once (kTallyBudget per count) and frozen: their records are
// immutable. A retry re-opens a batch: its pending state is back, so its tally thaws.
// Every read is pipelined (listings by bucket, records by batch, options_.pipeline batches at a
// time): a count costs a few round trips, not a few per batch, which under a loaded ensemble (or
// a sanitizer build) was the difference between milliseconds and a minute.
StoreResult<std::map<State, size_t>> BatchReader::countTasks(const WorkersView& workers) {
  std::map<State, size_t> counts;
  for (State s : {State::kWaiting, State::kPending, State::kAssigned, State::kRunning,
                  State::kSucceeded, State::kFailed, State::kCancelled}) {
    counts[s] = 0;
  }
  std::set<std::string> running;
  for (const auto& w : workers.workers) {
    for (const auto& [id, started] : w.info.running) running.insert(id);
  }
  // The batches not finished yet: those with a pending state (a listing per time bucket).
  std::set<std::string> unfinished;
  auto pending_buckets = sortedChildren(layout_.pendingRoot());
  if (!pending_buckets) return tl::unexpected(pending_buckets.error());
  std::vector<std::string> paths;
  for (const auto& bucket : *pending_buckets) paths.push_back(layout_.pendingBucket(bucket));
  auto pending_names = childrenOfAll(paths);
  if (!pending_names) return tl::unexpected(pending_names.error());
  for (auto& names : *pending_names) unfinished.insert(names.begin(), names.end());
  bool exact = unfinished.size() <= options_.exact_count_batches;
  auto root = await(coord_.get(layout_.pendingRoot(), nullptr));
  if (!root) return tl::unexpected(fromCoord(root.error(), "count tasks"));
  auto published = tasks::decodeWaiting(root->data);
  if (!exact) {
    if (published) {
      counts[State::kWaiting] = published->delayed;
      counts[State::kPending] =
          published->waiting - std::min(published->waiting, published->delayed);
      counts[State::kRunning] = std::min<size_t>(published->held, running.size());
      counts[State::kAssigned] = published->held - counts[State::kRunning];
    } else {
      exact = true;  // no leader has counted yet: read them all, once
    }
  }
  auto buckets = sortedChildren(layout_.batches());
  if (!buckets) return tl::unexpected(buckets.error());
  paths.clear();
  for (const auto& bucket : *buckets) paths.push_back(layout_.batchBucket(bucket));
  auto batch_names = childrenOfAll(paths);
  if (!batch_names) return tl::unexpected(batch_names.error());

  // Which batches this count reads; the rest are added from their tallies.
  struct Read {
    std::string name;
    Tally* tally = nullptr;
    bool finished = false;  // by the pending listing; confirmed by a check of its own
  };
  std::vector<Read> reads;
  std::set<std::string> seen;
  size_t budget = kTallyBudget;
  size_t partial_budget = kPartialBudget;
  std::string last_partial;
  std::lock_guard lock(counts_mu_);
  for (const auto& names : *batch_names) {
    for (const auto& name : names) {
      if (!tasks::isBatchName(name)) continue;
      seen.insert(name);
      Tally& tally = tallies_[name];
      bool finished = !unfinished.count(name);
      // A finished batch is immutable: its tally, once complete, is read from memory.
      if (finished && tally.frozen) {
        add(counts, tally.succeeded, tally.failed, tally.cancelled);
        continue;
      }
      tally.frozen = false;                   // re-opened by a retry: tallied again once it ends
      if (finished && budget == 0) continue;  // tallied by a later call
      if (!finished && !exact) {
        // Its waiting and held tasks are in the leader's counts; its ended ones, from its last
        // tally unless it is among this count's share to re-read.
        if (partial_budget == 0 || name <= partial_cursor_) {
          add(counts, tally.succeeded, tally.failed, tally.cancelled);
          continue;
        }
        --partial_budget;
        last_partial = name;
      }
      if (finished) --budget;
      reads.push_back({name, &tally, finished});
    }
  }

  const int64_t now = base::wallMillis();
  const size_t window = std::max<size_t>(1, options_.pipeline);
  for (size_t from = 0; from < reads.size(); from += window) {
    const size_t to = std::min(reads.size(), from + window);
    // One session's requests are answered in order: a finished batch's pending check goes out
    // before its result listing (submitted after the pending listing, it must not be frozen
    // empty), and an unfinished one's pending state after it (held pointers to tasks the listing
    // shows ended are stale).
    struct Flight {
      std::optional<coord::Future<std::optional<coord::Stat>>> there;
      std::optional<coord::Future<coord::Node>> record;
      coord::Future<std::vector<std::string>> children;
      std::shared_ptr<const tasks::BatchRecord> batch;
      std::vector<std::pair<std::string, std::optional<coord::Future<coord::Node>>>> results;
      std::optional<coord::Future<coord::Node>> pending;
      bool skip = false;
    };
    std::vector<Flight> flights;
    flights.reserve(to - from);
    for (size_t k = from; k < to; ++k) {
      const Read& r = reads[k];
      std::optional<coord::Future<std::optional<coord::Stat>>> there;
      if (r.finished) there = coord_.exists(layout_.pending(r.name), nullptr);
      auto batch = cachedBatch(r.name);
      std::optional<coord::Future<coord::Node>> record;
      if (!batch) record = coord_.get(layout_.batch(r.name), nullptr);
      flights.push_back({std::move(there),
                         std::move(record),
                         coord_.children(layout_.batch(r.name), nullptr),
                         std::move(batch),
                         {},
                         std::nullopt,
                         false});
    }
    for (size_t k = from; k < to; ++k) {
      Read& r = reads[k];
      Flight& f = flights[k - from];
      if (f.there) {
        auto there = await(*f.there);
        if (!there) return tl::unexpected(fromCoord(there.error(), "count tasks"));
        r.finished = !*there;
      }
      if (f.record) {
        auto record = keepBatch(r.name, await(*f.record));
        if (!record) return tl::unexpected(record.error());
        f.batch = std::move(*record);
      }
      auto children = await(f.children);
      if (!f.batch || !children) {  // retention took it
        f.skip = true;
        continue;
      }
      for (auto& child : tasks::resultsInOrder(std::move(*children))) {
        const std::string key = r.name + "/" + child;
        std::optional<coord::Future<coord::Node>> read;
        if (!cachedResults(key)) read = coord_.get(layout_.batch(r.name) + "/" + child, nullptr);
        f.results.emplace_back(key, std::move(read));
      }
      if (!r.finished && exact) f.pending = coord_.get(layout_.pending(r.name), nullptr);
    }
    for (size_t k = from; k < to; ++k) {
      const Read& r = reads[k];
      Flight& f = flights[k - from];
      if (f.skip) continue;
      // Each task counts once, by its latest outcome (a retried task has several); a latest
      // `pending` one waits or runs again and is counted from the pending state below.
      std::map<uint32_t, State> latest;
      for (auto& [key, read] : f.results) {
        auto record =
            read ? keepResults(key, await(*read))
                 : StoreResult<std::shared_ptr<const tasks::ResultRecord>>(cachedResults(key));
        if (!record) return tl::unexpected(record.error());
        if (*record) {
          for (const auto& o : (*record)->outcomes) latest[o.index] = o.state;
        }
      }
      Tally next;
      std::set<uint32_t> ended;  // unfinished batches: held pointers to these are stale
      for (const auto& [i, s] : latest) {
        if (s == State::kSucceeded) ++next.succeeded;
        if (s == State::kFailed) ++next.failed;
        if (s == State::kCancelled) ++next.cancelled;
        if (s != State::kPending) ended.insert(i);
      }
      next.frozen = r.finished;
      *r.tally = next;
      add(counts, next.succeeded, next.failed, next.cancelled);
      if (!f.pending) continue;
      auto node = await(*f.pending);
      if (!node) continue;  // finished meanwhile: counted again by the next count
      auto state = tasks::decodePending(node->data);
      if (!state) continue;
      const tasks::BatchRecord& record = *f.batch;
      for (const auto& [i, w] : state->waiting()) {
        bool ahead = i < record.tasks.size() && w.attempt == 1 &&
                     record.tasks[i].run_at > now;  // as GET shows it
        ++counts[ahead ? State::kWaiting : State::kPending];
      }
      for (const auto& [i, h] : state->held()) {
        if (i >= record.tasks.size() || ended.count(i)) continue;
        ++counts[running.count(record.tasks[i].id) ? State::kRunning : State::kAssigned];
      }
    }
  }
  if (exact && published) {
    // A dependent the leader holds back waits in its pending state like any task: the pending
    // states cannot tell it from one the leader may assign. GET shows it `waiting`, so the
    // leader's count of them moves that many from pending (the count is ~1 s old).
    const size_t blocked = std::min<size_t>(published->blocked, counts[State::kPending]);
    counts[State::kPending] -= blocked;
    counts[State::kWaiting] += blocked;
  }
  // The next count re-reads the share after this one's; past the end, it starts over.
  partial_cursor_ = partial_budget == 0 ? last_partial : std::string();
  std::erase_if(tallies_, [&](const auto& kv) { return !seen.count(kv.first); });
  return counts;
}

// A worker's assignment znodes are chunks of up to 64 tasks, so `assigned` is the items of its
// chunks (the chunks of all workers read pipelined: one listing per worker, one read per chunk),
// and `running` the ones in its slots.
StoreResult<WorkersView> BatchReader::workers() {
  auto view = registry_.workers();
  if (!view) return view;
  std::vector<coord::Future<std::vector<std::string>>> listings;
  for (const auto& w : view->workers) {
    listings.push_back(coord_.children(layout_.assignmentsOf(w.info.id), nullptr));
  }
  std::vector<std::vector<coord::Future<coord::Node>>> chunks(view->workers.size());
  for (size_t i = 0; i < view->workers.size(); ++i) {
    auto names = await(listings[i]);
    if (!names) continue;  // no folder (yet, or any more): nothing held
    for (const auto& name : *names) {
      chunks[i].push_back(coord_.get(layout_.chunk(view->workers[i].info.id, name), nullptr));
    }
  }
  for (size_t i = 0; i < view->workers.size(); ++i) {
    WorkerView& w = view->workers[i];
    w.assigned = 0;
    for (auto& f : chunks[i]) {
      auto node = await(f);
      if (!node) {
        if (node.error().code() == Code::kNoNode) continue;  // committed whole meanwhile
        return tl::unexpected(fromCoord(node.error(), "reading workers' chunks"));
      }
      if (auto chunk = tasks::decodeChunk(node->data)) w.assigned += chunk->items.size();
    }
    w.running = std::min(w.assigned, static_cast<size_t>(std::max(0, w.info.slots)));
  }
  return view;
}

StoreResult<ClusterView> BatchReader::cluster() {
  auto workers = registry_.workers();
  if (!workers) return tl::unexpected(workers.error());
  ClusterView view;
  view.leader = workers->leader;
  view.session = coord_.session();
  view.workers = workers->workers.size();
  {
    std::lock_guard lock(counts_mu_);
    const auto ttl = options_.counts_ttl.count() == 0
                         ? Clock::duration::zero()
                         : std::max<Clock::duration>(options_.counts_ttl, 2 * count_cost_);
    // Fresh enough, or another request is counting: the last count (never a wait behind it).
    if (counts_cache_ && (counting_ || Clock::now() - counts_cache_->first < ttl)) {
      view.counts = counts_cache_->second;
      return view;
    }
    counting_ = true;
  }
  const auto began = Clock::now();
  auto counts = countTasks(*workers);  // the workers just read: their running tasks
  std::lock_guard lock(counts_mu_);
  counting_ = false;
  if (!counts) return tl::unexpected(counts.error());
  count_cost_ = Clock::now() - began;
  counts_cache_ = {Clock::now(), *counts};
  view.counts = std::move(*counts);
  return view;
}

}  // namespace drover::api
