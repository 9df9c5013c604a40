// BatchReader::cluster(): the task counts by state under protocol v2 (docs/ZNODES.md, "The
// API's side": waiting and held exactly, terminal tallies cached per immutable result record).
#include <set>

#include "api/batch_reader.h"

namespace drover::api {
namespace {

using coord::Code;
using tasks::State;
using Clock = std::chrono::steady_clock;

// Finished batches whose outcomes one cluster() call tallies for the first time.
constexpr size_t kTallyBudget = 256;

}  // namespace

StoreResult<std::map<State, size_t>> BatchReader::countTasks() {
  std::map<State, size_t> counts;
  for (State s : {State::kPending, State::kAssigned, State::kRunning, State::kSucceeded,
                  State::kFailed, State::kCancelled}) {
    counts[s] = 0;
  }
  auto workers = v1_.workers();
  if (!workers) return tl::unexpected(workers.error());
  std::set<std::string> running;
  for (const auto& w : workers->workers) {
    for (const auto& [id, started] : w.info.running) running.insert(id);
  }
  // The batches not finished yet: those with a pending state (a listing per time bucket).
  std::set<std::string> unfinished;
  auto pending_buckets = sortedChildren(layout_.pendingRoot());
  if (!pending_buckets) return tl::unexpected(pending_buckets.error());
  for (const auto& bucket : *pending_buckets) {
    auto names = sortedChildren(layout_.pendingBucket(bucket));
    if (!names) return tl::unexpected(names.error());
    unfinished.insert(names->begin(), names->end());
  }
  auto buckets = sortedChildren(layout_.batches());
  if (!buckets) return tl::unexpected(buckets.error());
  std::set<std::string> seen;
  size_t budget = kTallyBudget;
  std::lock_guard lock(counts_mu_);
  for (const auto& bucket : *buckets) {
    auto names = sortedChildren(layout_.batchBucket(bucket));
    if (!names) return tl::unexpected(names.error());
    for (const auto& name : *names) {
      if (!tasks::isBatchName(name)) continue;
      seen.insert(name);
      auto& tally = tallies_[name];
      bool finished = !unfinished.count(name);
      // A finished batch is immutable: its tally, once complete, is read from memory.
      if (finished && tally.count("") != 0) {
        for (const auto& [s, c] : tally[""]) counts[s] += c;
        continue;
      }
      if (finished && budget == 0) continue;  // tallied by a later call
      if (finished) {
        --budget;
        // Submitted after the pending listing? Its tally must not be frozen empty.
        auto there = await(coord_.exists(layout_.pending(name), nullptr));
        if (!there) return tl::unexpected(fromCoord(there.error(), "count tasks"));
        finished = !*there;
      }
      auto record = batch(name);
      if (!record) return tl::unexpected(record.error());
      if (!*record) continue;
      auto children = await(coord_.children(layout_.batch(name), nullptr));
      if (!children) continue;  // retention took it
      std::map<State, size_t> done;
      std::set<uint32_t> ended;  // unfinished batches: held pointers to these are stale
      for (const auto& child : *children) {
        if (!tally.count(child) || !finished) {
          auto r = resultRecord(name, child);  // cached: immutable
          if (!r) return tl::unexpected(r.error());
          auto& t = tally[child];
          t.clear();
          if (*r) {
            for (const auto& o : (*r)->outcomes) {
              ++t[o.state];
              ended.insert(o.index);
            }
          }
        }
        for (const auto& [s, c] : tally[child]) done[s] += c;
      }
      if (finished) {
        tally.clear();
        tally[""] = done;
      } else {
        auto node = await(coord_.get(layout_.pending(name), nullptr));
        if (node) {
          auto state = tasks::decodePending(node->data);
          if (state) {
            done[State::kPending] += state->waiting().size();
            for (const auto& [i, h] : state->held()) {
              if (i >= (*record)->tasks.size() || ended.count(i)) continue;
              ++done[running.count((*record)->tasks[i].id) ? State::kRunning : State::kAssigned];
            }
          }
        }
      }
      for (const auto& [s, c] : done) counts[s] += c;
    }
  }
  std::erase_if(tallies_, [&](const auto& kv) { return !seen.count(kv.first); });
  return counts;
}

StoreResult<ClusterView> BatchReader::cluster() {
  auto workers = v1_.workers();
  if (!workers) return tl::unexpected(workers.error());
  ClusterView view;
  view.leader = workers->leader;
  view.session = coord_.session();
  view.workers = workers->workers.size();
  {
    std::lock_guard lock(counts_mu_);
    if (counts_cache_ && Clock::now() - counts_cache_->first < options_.counts_ttl) {
      view.counts = counts_cache_->second;
      return view;
    }
  }
  auto counts = countTasks();
  if (!counts) return tl::unexpected(counts.error());
  std::lock_guard lock(counts_mu_);
  counts_cache_ = {Clock::now(), *counts};
  view.counts = std::move(*counts);
  return view;
}

}  // namespace drover::api
