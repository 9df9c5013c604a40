#include "scheduler/job_index.h"

#include <bit>
#include <utility>

namespace drover::scheduler {

// --- Run ---

bool JobIndex::Run::test(uint32_t index) const {
  const size_t word = index / 64;
  return word < bits.size() && (bits[word] >> (index % 64) & 1) != 0;
}

void JobIndex::Run::set(uint32_t index) {
  const size_t word = index / 64;
  if (word >= bits.size()) bits.resize(word + 1, 0);
  bits[word] |= uint64_t{1} << (index % 64);
  ++count;
  if (word < low) low = word;
}

void JobIndex::Run::clear(uint32_t index) {
  bits[index / 64] &= ~(uint64_t{1} << (index % 64));
  --count;
}

uint32_t JobIndex::Run::first() const {
  while (bits[low] == 0) ++low;
  return static_cast<uint32_t>(low * 64 + std::countr_zero(bits[low]));
}

// --- JobIndex ---

void JobIndex::add(Entry entry, int64_t now) {
  const Key key = entry.key();
  drop(key);
  if (entry.not_before > now) {
    delayed_.emplace(entry.not_before, key);
    delayed_jobs_.emplace(key, std::move(entry));
  } else {
    addReady(std::move(entry));
  }
}

void JobIndex::addReady(Entry entry) {
  const Key key = entry.key();
  const int priority = entry.priority();
  auto [held, fresh] = records_.try_emplace(key.record);
  if (fresh) {
    held->second.record = entry.record;
    held->second.order = entry.order;
  }
  ++held->second.ready;
  RouteRuns& route = ready_[entry.route()];
  route.runs[RunKey{priority, held->second.order, key.record}].set(entry.index);
  ++route.count;
  ++ready_count_;
  ++ready_by_priority_[priority];
  if (entry.attempt != 1 || !entry.error.empty()) {
    retries_[key] = Retry{entry.attempt, std::move(entry.error)};
  }
}

JobIndex::Run* JobIndex::runOf(Key key, RouteRuns** route_runs,
                               std::map<RunKey, Run>::iterator* at) {
  auto held = records_.find(key.record);
  if (held == records_.end()) return nullptr;
  const PackedRecord& record = *held->second.record;
  if (key.index >= record.size()) return nullptr;
  auto route = ready_.find(record.route(key.index));
  if (route == ready_.end()) return nullptr;
  auto run =
      route->second.runs.find(RunKey{record.priority(key.index), held->second.order, key.record});
  if (run == route->second.runs.end() || !run->second.test(key.index)) return nullptr;
  *route_runs = &route->second;
  *at = run;
  return &run->second;
}

bool JobIndex::dropReady(Key key, Entry* out) {
  RouteRuns* route = nullptr;
  std::map<RunKey, Run>::iterator at;
  Run* run = runOf(key, &route, &at);
  if (run == nullptr) return false;
  auto held = records_.find(key.record);
  if (out != nullptr) *out = makeEntry(held->second, key.index);
  run->clear(key.index);
  if (run->count == 0) route->runs.erase(at);
  const PackedRecord& record = *held->second.record;
  if (--route->count == 0) ready_.erase(record.route(key.index));
  const int priority = record.priority(key.index);
  if (--ready_by_priority_[priority] == 0) ready_by_priority_.erase(priority);
  --ready_count_;
  retries_.erase(key);
  if (--held->second.ready == 0) records_.erase(held);
  return true;
}

JobIndex::Entry JobIndex::makeEntry(const Held& held, uint32_t index) const {
  Entry entry{held.record, index, 1, 0, held.order, ""};
  auto retry = retries_.find(keyOf(held.record.get(), index));
  if (retry != retries_.end()) {
    entry.attempt = retry->second.attempt;
    entry.error = retry->second.error;
  }
  return entry;
}

bool JobIndex::contains(Key key) const {
  if (delayed_jobs_.count(key) != 0) return true;
  RouteRuns* route = nullptr;
  std::map<RunKey, Run>::iterator at;
  return const_cast<JobIndex*>(this)->runOf(key, &route, &at) != nullptr;
}

void JobIndex::drop(Key key) {
  if (dropReady(key, nullptr)) return;
  auto it = delayed_jobs_.find(key);
  if (it == delayed_jobs_.end()) return;
  delayed_.erase({it->second.not_before, key});
  delayed_jobs_.erase(it);
}

JobIndex::Entry JobIndex::take(Key key) {
  Entry entry;
  if (dropReady(key, &entry)) return entry;
  auto it = delayed_jobs_.find(key);
  delayed_.erase({it->second.not_before, key});
  entry = std::move(it->second);
  delayed_jobs_.erase(it);
  return entry;
}

std::optional<JobIndex::Entry> JobIndex::nextExcept(const std::set<Route>& blocked) const {
  const std::pair<const RunKey, Run>* best = nullptr;
  uint32_t best_index = 0;
  for (const auto& [route, runs] : ready_) {
    if (blocked.count(route) != 0) continue;
    const auto& head = *runs.runs.begin();
    const uint32_t index = head.second.first();
    if (best == nullptr || head.first < best->first ||
        (!(best->first < head.first) && index < best_index)) {
      best = &head;
      best_index = index;
    }
  }
  if (best == nullptr) return std::nullopt;
  return makeEntry(records_.at(best->first.record), best_index);
}

std::map<Route, size_t> JobIndex::readyByRoute() const {
  std::map<Route, size_t> out;
  for (const auto& [route, runs] : ready_) out[route] = runs.count;
  return out;
}

std::optional<int64_t> JobIndex::nextDue() const {
  if (delayed_.empty()) return std::nullopt;
  return delayed_.begin()->first;
}

size_t JobIndex::promote(int64_t now) {
  size_t n = 0;
  while (!delayed_.empty() && delayed_.begin()->first <= now) {
    Entry entry = take(delayed_.begin()->second);
    entry.not_before = 0;  // due now
    addReady(std::move(entry));
    ++n;
  }
  return n;
}

size_t JobIndex::delayedFirstRuns() const {
  size_t n = 0;
  for (const auto& [key, entry] : delayed_jobs_) {
    if (entry.attempt <= 1) ++n;
  }
  return n;
}

}  // namespace drover::scheduler
