#include "api/task_reader.h"

#include <fmt/format.h>

#include <algorithm>
#include <functional>
#include <thread>

#include "base/ids.h"

namespace drover::api {
namespace {

using coord::Code;
using tasks::State;
using tasks::TaskStatus;
using Clock = std::chrono::steady_clock;

std::map<State, size_t> zeroCounts() {
  std::map<State, size_t> counts;
  for (State s : {State::kPending, State::kAssigned, State::kRunning, State::kSucceeded,
                  State::kFailed, State::kCancelled}) {
    counts[s] = 0;
  }
  return counts;
}

}  // namespace

TaskReader::TaskReader(coord::Coordination& coord, const tasks::Layout& layout,
                       const StoreOptions& options)
    : coord_(coord), layout_(layout), options_(options) {}

StoreResult<std::optional<TaskStatus>> TaskReader::readStatus(const std::string& id) {
  auto r = await(coord_.get(layout_.status(id), nullptr));
  if (!r) {
    if (r.error().code() == Code::kNoNode) return std::optional<TaskStatus>();
    return tl::unexpected(fromCoord(r.error(), fmt::format("reading task '{}'", id)));
  }
  auto status = decodeStatus(r->data);
  if (!status) return problem(Failure::kInternal, fmt::format("task '{}' is unreadable", id));
  return status;
}

StoreResult<std::vector<std::optional<TaskStatus>>> TaskReader::readStatuses(
    const std::vector<std::string>& ids) {
  std::vector<std::optional<TaskStatus>> out;
  out.reserve(ids.size());
  for (size_t start = 0; start < ids.size(); start += options_.pipeline) {
    size_t end = std::min(ids.size(), start + options_.pipeline);
    std::vector<coord::Future<coord::Node>> futures;
    for (size_t i = start; i < end; ++i)
      futures.push_back(coord_.get(layout_.status(ids[i]), nullptr));
    for (size_t i = start; i < end; ++i) {
      auto r = await(futures[i - start]);
      if (!r) {
        if (r.error().code() == Code::kNoNode) {
          out.emplace_back();
          continue;
        }
        return tl::unexpected(fromCoord(r.error(), fmt::format("reading task '{}'", ids[i])));
      }
      auto status = decodeStatus(r->data);
      if (!status) {
        return problem(Failure::kInternal, fmt::format("task '{}' is unreadable", ids[i]));
      }
      out.push_back(std::move(status));
    }
  }
  return out;
}

StoreResult<TaskStatus> TaskReader::get(const std::string& id) {
  if (!base::isValidName(id)) return problem(Failure::kBadRequest, "invalid task id");
  auto r = readStatus(id);
  if (!r) return tl::unexpected(r.error());
  if (!*r) return problem(Failure::kNotFound, fmt::format("no task '{}'", id));
  return std::move(**r);
}

StoreResult<TaskStatus> TaskReader::wait(const std::string& id, std::chrono::milliseconds timeout) {
  if (!base::isValidName(id)) return problem(Failure::kBadRequest, "invalid task id");
  auto signal = std::make_shared<WaitSignal>();
  {
    std::lock_guard lock(waits_mu_);
    waits_.insert(signal);
  }
  struct Unregister {
    TaskReader* self;
    std::shared_ptr<WaitSignal> signal;
    ~Unregister() {
      std::lock_guard lock(self->waits_mu_);
      self->waits_.erase(signal);
    }
  } unregister{this, signal};
  const auto deadline = Clock::now() + timeout;
  std::optional<TaskStatus> last;
  for (int failures = 0;;) {
    {
      std::lock_guard lock(signal->mu);
      signal->fired = false;
    }
    // The watch may fire long after this call returned: it holds only the shared signal.
    coord::Watcher watcher = [signal](const coord::WatchEvent&) {
      std::lock_guard lock(signal->mu);
      signal->fired = true;
      signal->cv.notify_all();
    };
    auto r = await(coord_.get(layout_.status(id), watcher));
    if (!r) {
      if (r.error().code() == Code::kNoNode) {
        return problem(Failure::kNotFound, fmt::format("no task '{}'", id));
      }
      if (!r.error().retryable() || Clock::now() >= deadline) {
        if (last) return std::move(*last);
        return tl::unexpected(fromCoord(r.error(), fmt::format("reading task '{}'", id)));
      }
      // Not connected: wait for the connection (bounded by the deadline), then read again.
      auto delay = options_.backoff.delay(static_cast<uint32_t>(++failures));
      std::this_thread::sleep_until(std::min(deadline, Clock::now() + delay));
      continue;
    }
    failures = 0;
    last = decodeStatus(r->data);
    if (!last) return problem(Failure::kInternal, fmt::format("task '{}' is unreadable", id));
    if (tasks::isTerminal(last->state) || interrupted_) return std::move(*last);
    std::unique_lock lock(signal->mu);
    if (!signal->cv.wait_until(lock, deadline, [&] { return signal->fired || interrupted_; }) ||
        interrupted_) {
      return std::move(*last);
    }
  }
}

void TaskReader::interruptWaits() {
  interrupted_ = true;
  std::lock_guard lock(waits_mu_);
  for (const auto& w : waits_) {
    std::lock_guard wl(w->mu);
    w->cv.notify_all();
  }
}

StoreResult<std::vector<std::string>> TaskReader::statusIds(const char* what) {
  // 256 listings in flight at once; each reply stays small (a bucket holds ~1/256 of the ids).
  std::vector<coord::Future<std::vector<std::string>>> buckets;
  buckets.reserve(tasks::Layout::kJobBuckets);
  for (int b = 0; b < tasks::Layout::kJobBuckets; ++b) {
    buckets.push_back(coord_.children(layout_.statusBucketAt(b), nullptr));
  }
  std::vector<std::string> ids;
  for (auto& f : buckets) {
    auto kids = await(f);
    if (!kids) {
      if (kids.error().code() == Code::kNoNode) continue;  // a tree not (fully) initialised
      return tl::unexpected(fromCoord(kids.error(), what));
    }
    for (auto& id : *kids) ids.push_back(std::move(id));
  }
  return ids;
}

StoreResult<TaskPage> TaskReader::list(std::optional<State> state, size_t limit,
                                       const std::string& cursor, const TaskFilter& filter) {
  auto kids = statusIds("listing tasks");
  if (!kids) return tl::unexpected(kids.error());
  std::vector<std::string> names = std::move(*kids);
  std::sort(names.begin(), names.end());
  auto it = cursor.empty() ? names.begin() : std::upper_bound(names.begin(), names.end(), cursor);
  TaskPage page;
  auto pos = fillPage(names, static_cast<size_t>(it - names.begin()), state, filter, limit, page);
  if (!pos) return tl::unexpected(pos.error());
  if (!page.tasks.empty() && page.tasks.size() == limit && *pos != names.size()) {
    page.next = page.tasks.back().spec.id;
  }
  return page;
}

StoreResult<size_t> TaskReader::fillPage(const std::vector<std::string>& ids, size_t from,
                                         std::optional<State> state, const TaskFilter& filter,
                                         size_t limit, TaskPage& page) {
  size_t pos = from;
  while (pos < ids.size() && page.tasks.size() < limit) {
    size_t end = std::min(ids.size(), pos + options_.pipeline);
    std::vector<std::string> chunk(ids.begin() + static_cast<ptrdiff_t>(pos),
                                   ids.begin() + static_cast<ptrdiff_t>(end));
    auto found = readStatuses(chunk);
    if (!found) return tl::unexpected(found.error());
    for (size_t i = 0; i < chunk.size() && page.tasks.size() < limit; ++i, ++pos) {
      auto& st = (*found)[i];
      if (!st || (state && st->state != *state) || !filter.matches(st->spec)) {
        continue;
      }
      page.tasks.push_back(std::move(*st));
    }
  }
  return pos;
}

StoreResult<TaskPage> TaskReader::listNewest(std::optional<State> state, size_t limit,
                                             const std::optional<NewestCursor>& after,
                                             const TaskFilter& filter) {
  auto kids = statusIds("listing tasks");
  if (!kids) return tl::unexpected(kids.error());
  using Key = std::pair<int64_t, std::string>;  // (czxid, id), listed in descending order
  std::vector<Key> order;
  order.reserve(kids->size());
  for (size_t start = 0; start < kids->size(); start += options_.pipeline) {
    size_t end = std::min(kids->size(), start + options_.pipeline);
    std::vector<coord::Future<std::optional<coord::Stat>>> stats;
    for (size_t i = start; i < end; ++i) {
      stats.push_back(coord_.exists(layout_.status((*kids)[i]), nullptr));
    }
    for (size_t i = start; i < end; ++i) {
      auto r = await(stats[i - start]);
      if (!r) return tl::unexpected(fromCoord(r.error(), "listing tasks"));
      if (*r) order.emplace_back((*r)->czxid, std::move((*kids)[i]));  // absent: just deleted
    }
  }
  std::sort(order.begin(), order.end(), std::greater<>());
  auto it = order.begin();
  if (after) {
    it = std::upper_bound(order.begin(), order.end(), Key(after->czxid, after->id),
                          std::greater<>());
  }
  std::vector<std::string> ids;
  ids.reserve(order.size());
  for (const auto& key : order) ids.push_back(key.second);
  TaskPage page;
  auto pos = fillPage(ids, static_cast<size_t>(it - order.begin()), state, filter, limit, page);
  if (!pos) return tl::unexpected(pos.error());
  if (!page.tasks.empty() && page.tasks.size() == limit && *pos != order.size()) {
    const Key& last = order[*pos - 1];  // the last task taken
    page.next = fmt::format("{}-{}", last.first, last.second);
  }
  return page;
}

StoreResult<std::optional<LeaderInfo>> TaskReader::readLeader() {
  auto r = await(coord_.get(layout_.leader(), nullptr));
  if (!r) {
    if (r.error().code() == Code::kNoNode) return std::optional<LeaderInfo>();
    return tl::unexpected(fromCoord(r.error(), "reading the leader"));
  }
  auto j = tasks::parseJson(r->data);
  if (!j || !j->is_object() || !j->contains("id") || !(*j)["id"].is_string()) {
    return std::optional<LeaderInfo>();
  }
  LeaderInfo info;
  info.id = (*j)["id"].get<std::string>();
  if (auto e = j->find("epoch"); e != j->end() && e->is_number_integer()) {
    info.epoch = e->get<int64_t>();
  }
  return std::optional<LeaderInfo>(std::move(info));
}

StoreResult<WorkersView> TaskReader::workers() {
  auto kids = await(coord_.children(layout_.workers(), nullptr));
  if (!kids) return tl::unexpected(fromCoord(kids.error(), "listing workers"));
  std::vector<std::string> names = std::move(*kids);
  std::sort(names.begin(), names.end());
  auto leader = readLeader();
  if (!leader) return tl::unexpected(leader.error());

  std::vector<coord::Future<coord::Node>> infos;
  std::vector<coord::Future<std::vector<std::string>>> running;
  for (const auto& w : names) {
    infos.push_back(coord_.get(layout_.worker(w), nullptr));
    running.push_back(coord_.children(layout_.assignmentsOf(w), nullptr));
  }
  WorkersView out;
  out.leader = *leader;
  for (size_t i = 0; i < names.size(); ++i) {
    auto info = await(infos[i]);
    auto assigned = await(running[i]);
    if (!info) {
      if (info.error().code() == Code::kNoNode) continue;  // left meanwhile
      return tl::unexpected(fromCoord(info.error(), "reading workers"));
    }
    WorkerView view;
    auto j = tasks::parseJson(info->data);
    auto decoded = j ? tasks::workerFromJson(*j) : std::nullopt;
    if (decoded) {
      view.info = std::move(*decoded);
    } else {
      view.info.id = names[i];  // unreadable registration: still list it
    }
    view.assigned = assigned ? assigned->size() : 0;
    view.running = std::min(view.assigned, static_cast<size_t>(std::max(0, view.info.slots)));
    view.leader = *leader && (*leader)->id == view.info.id;
    out.workers.push_back(std::move(view));
  }
  return out;
}

StoreResult<std::map<State, size_t>> TaskReader::countTasks() {
  {
    std::lock_guard lock(counts_mu_);
    if (counts_cache_ && Clock::now() - counts_cache_->first < options_.counts_ttl) {
      return counts_cache_->second;
    }
  }
  auto kids = statusIds("counting tasks");
  if (!kids) return tl::unexpected(kids.error());
  auto counts = zeroCounts();
  for (size_t start = 0; start < kids->size(); start += options_.pipeline) {
    size_t end = std::min(kids->size(), start + options_.pipeline);
    std::vector<coord::Future<coord::Node>> futures;
    for (size_t i = start; i < end; ++i) {
      futures.push_back(coord_.get(layout_.status((*kids)[i]), nullptr));
    }
    for (auto& f : futures) {
      auto r = await(f);
      if (!r) {
        if (r.error().code() == Code::kNoNode) continue;
        return tl::unexpected(fromCoord(r.error(), "counting tasks"));
      }
      auto j = tasks::parseJson(r->data);
      if (!j || !j->is_object() || !j->contains("state") || !(*j)["state"].is_string()) continue;
      if (auto s = tasks::parseState((*j)["state"].get<std::string>())) ++counts[*s];
    }
  }
  std::lock_guard lock(counts_mu_);
  counts_cache_.emplace(Clock::now(), counts);
  return counts;
}

StoreResult<ClusterView> TaskReader::cluster() {
  ClusterView view;
  view.session = coord_.session();
  auto leader = readLeader();
  if (!leader) return tl::unexpected(leader.error());
  view.leader = std::move(*leader);
  auto kids = await(coord_.children(layout_.workers(), nullptr));
  if (!kids) return tl::unexpected(fromCoord(kids.error(), "listing workers"));
  view.workers = kids->size();
  auto counts = countTasks();
  if (!counts) return tl::unexpected(counts.error());
  view.counts = std::move(*counts);
  return view;
}

}  // namespace drover::api
