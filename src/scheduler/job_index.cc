#include "scheduler/job_index.h"

#include <utility>

namespace drover::scheduler {

void JobIndex::add(Entry entry, int64_t now) {
  const std::string id = entry.job.spec.id;
  drop(id);
  if (entry.job.not_before > now) {
    delayed_.emplace(entry.job.not_before, id);
  } else {
    ready_.insert(ReadyKey{entry.job.spec.priority, entry.czxid, id});
    ready_by_route_[routeOf(entry.job.spec)].insert(
        ReadyKey{entry.job.spec.priority, entry.czxid, id});
    ++ready_by_priority_[entry.job.spec.priority];
  }
  jobs_.emplace(id, std::move(entry));
}

void JobIndex::unlink(const Entry& entry) {
  const auto& spec = entry.job.spec;
  const ReadyKey key{spec.priority, entry.czxid, spec.id};
  if (ready_.erase(key) != 0) {
    if (--ready_by_priority_[spec.priority] == 0) ready_by_priority_.erase(spec.priority);
    auto route = ready_by_route_.find(routeOf(spec));
    if (route != ready_by_route_.end()) {
      route->second.erase(key);
      if (route->second.empty()) ready_by_route_.erase(route);
    }
  }
  delayed_.erase({entry.job.not_before, spec.id});
}

void JobIndex::drop(const std::string& id) {
  auto it = jobs_.find(id);
  if (it == jobs_.end()) return;
  unlink(it->second);
  jobs_.erase(it);
}

JobIndex::Entry JobIndex::take(const std::string& id) {
  auto it = jobs_.find(id);
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
  return best == nullptr ? nullptr : &jobs_.at(best->id);
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
    std::string id = delayed_.begin()->second;
    Entry entry = take(id);
    entry.job.not_before = 0;  // due now
    add(std::move(entry), now);
    ++n;
  }
  return n;
}

size_t JobIndex::delayedFirstRuns() const {
  size_t n = 0;
  for (const auto& [due, id] : delayed_) {
    auto it = jobs_.find(id);
    if (it != jobs_.end() && it->second.job.attempt <= 1) ++n;
  }
  return n;
}

}  // namespace drover::scheduler
