#include "scheduler/dependency_index.h"

#include <fmt/format.h>

namespace drover::scheduler {

using tasks::State;
using tasks::TaskRef;

namespace {

std::string reasonFor(const std::string& id, State state) {
  return fmt::format("dependency {} {}", id, state == State::kFailed ? "failed" : "was cancelled");
}

}  // namespace

DependencyIndex::Changes DependencyIndex::add(const TaskRef& task, const std::string& id,
                                              const std::vector<TaskRef>& deps,
                                              const std::vector<std::string>& dep_ids) {
  Changes out;
  Waiter w{id, {}};
  for (size_t k = 0; k < deps.size(); ++k) {
    const std::string& dep_id = k < dep_ids.size() ? dep_ids[k] : tasks::generatedId(deps[k]);
    auto known = known_.find(deps[k]);
    if (known != known_.end() && known->second == State::kSucceeded) continue;
    if (known != known_.end() && tasks::isTerminal(known->second)) {
      waiting_[task] = Waiter{id, {}};  // so cancelDown finds and clears it
      cancelDown(task, reasonFor(dep_id, known->second), out);
      return out;
    }
    w.open.emplace(deps[k], dep_id);
  }
  if (w.open.empty()) {
    out.released.push_back(task);
    return out;
  }
  for (const auto& [dep, dep_id] : w.open) dependents_[dep].insert(task);
  waiting_[task] = std::move(w);
  return out;
}

DependencyIndex::Changes DependencyIndex::outcome(const TaskRef& task, State state) {
  Changes out;
  if (!tasks::isTerminal(state)) return out;
  auto it = dependents_.find(task);
  if (it == dependents_.end()) return out;  // nobody waits for it: nothing to keep
  known_[task] = state;
  const std::set<TaskRef> waiters = std::move(it->second);
  dependents_.erase(it);
  for (const auto& ref : waiters) {
    auto w = waiting_.find(ref);
    if (w == waiting_.end()) continue;
    auto dep = w->second.open.find(task);
    if (dep == w->second.open.end()) continue;
    if (state != State::kSucceeded) {
      cancelDown(ref, reasonFor(dep->second, state), out);
      continue;
    }
    w->second.open.erase(dep);
    if (w->second.open.empty()) {
      waiting_.erase(w);
      out.released.push_back(ref);
    }
  }
  return out;
}

void DependencyIndex::cancelDown(const TaskRef& task, std::string reason, Changes& out) {
  std::vector<std::pair<TaskRef, std::string>> todo{{task, std::move(reason)}};
  while (!todo.empty()) {
    auto [ref, why] = std::move(todo.back());
    todo.pop_back();
    auto w = waiting_.find(ref);
    if (w == waiting_.end()) continue;  // reached twice (a diamond): once is enough
    const std::string id = w->second.id;
    for (const auto& [dep, dep_id] : w->second.open) {
      auto d = dependents_.find(dep);
      if (d == dependents_.end()) continue;
      d->second.erase(ref);
      if (d->second.empty()) dependents_.erase(d);
    }
    waiting_.erase(w);
    known_[ref] = State::kCancelled;
    out.cancelled.push_back(Cancel{ref, why});
    auto down = dependents_.find(ref);
    if (down == dependents_.end()) continue;
    for (const auto& next : down->second) {
      todo.emplace_back(next, reasonFor(id, State::kCancelled));
    }
    dependents_.erase(down);
  }
}

void DependencyIndex::drop(const TaskRef& task) {
  auto w = waiting_.find(task);
  if (w == waiting_.end()) return;
  for (const auto& [dep, dep_id] : w->second.open) {
    auto d = dependents_.find(dep);
    if (d == dependents_.end()) continue;
    d->second.erase(task);
    if (d->second.empty()) dependents_.erase(d);
  }
  waiting_.erase(w);
}

void DependencyIndex::forgetBatch(const std::string& batch) {
  auto it = known_.lower_bound(TaskRef{batch, 0});
  while (it != known_.end() && it->first.batch == batch) it = known_.erase(it);
}

std::vector<std::string> DependencyIndex::waitingFor(const TaskRef& task) const {
  std::vector<std::string> out;
  auto w = waiting_.find(task);
  if (w == waiting_.end()) return out;
  for (const auto& [dep, id] : w->second.open) out.push_back(id);
  return out;
}

std::vector<TaskRef> DependencyIndex::unresolved() const {
  std::vector<TaskRef> out;
  for (const auto& [dep, waiters] : dependents_) {
    if (!waiting_.count(dep) && !known_.count(dep)) out.push_back(dep);
  }
  return out;
}

}  // namespace drover::scheduler
