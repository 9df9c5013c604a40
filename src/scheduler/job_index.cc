#include "scheduler/job_index.h"

#include <utility>

namespace drover::scheduler {

void JobIndex::add(Entry entry, int64_t now) {
  const Key key = entry.key();
  drop(key);
  if (entry.not_before > now) {
    delayed_.emplace(entry.not_before, key);
  } else {
    const ReadyKey ready = readyKey(entry);
    ready_.insert(ready);
    ready_by_route_[routeOf(entry.spec())].insert(ready);
    ++ready_by_priority_[ready.priority];
  }
  jobs_.emplace(key, std::move(entry));
}

void JobIndex::unlink(const Entry& entry) {
  const ReadyKey key = readyKey(entry);
  if (ready_.erase(key) != 0) {
    if (--ready_by_priority_[key.priority] == 0) ready_by_priority_.erase(key.priority);
    auto route = ready_by_route_.find(routeOf(entry.spec()));
    if (route != ready_by_route_.end()) {
      route->second.erase(key);
      if (route->second.empty()) ready_by_route_.erase(route);
    }
  }
  delayed_.erase({entry.not_before, key.key});
}

void JobIndex::drop(Key key) {
  auto it = jobs_.find(key);
  if (it == jobs_.end()) return;
  unlink(it->second);
  jobs_.erase(it);
}

JobIndex::Entry JobIndex::take(Key key) {
  auto it = jobs_.find(key);
  unlink(it->second);
  Entry entry = std::move(it->second);
  jobs_.erase(it);
  return entry;
}

const JobIndex::Entry* JobIndex::nextExcept(const std::set<Route>& blocked) const {
  const ReadyKey* best = nullptr;
  for (const auto& [route, keys] : ready_by_route_) {
    if (blocked.count(route) != 0) continue;
    if (best == nullptr || *keys.begin() < *best) best = &*keys.begin();
  }
  return best == nullptr ? nullptr : &jobs_.at(best->key);
}

std::map<Route, size_t> JobIndex::readyByRoute() const {
  std::map<Route, size_t> out;
  for (const auto& [route, keys] : ready_by_route_) out[route] = keys.size();
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
    add(std::move(entry), now);
    ++n;
  }
  return n;
}

size_t JobIndex::delayedFirstRuns() const {
  size_t n = 0;
  for (const auto& [due, key] : delayed_) {
    auto it = jobs_.find(key);
    if (it != jobs_.end() && it->second.attempt <= 1) ++n;
  }
  return n;
}

}  // namespace drover::scheduler
