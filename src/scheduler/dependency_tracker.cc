#include "scheduler/dependency_tracker.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <charconv>
#include <memory>

#include "tasks/dag.h"
#include "tasks/protocol.h"

namespace drover::scheduler {

using coord::Code;
using coord::Node;
using coord::Result;
using tasks::State;
using tasks::TaskRef;

namespace {

// The sequence number of an event record "e-NNNNNNNNNN"; nullopt for another name.
std::optional<uint64_t> eventSeq(const std::string& name) {
  auto dash = name.rfind('-');
  if (dash == std::string::npos) return std::nullopt;
  uint64_t n = 0;
  auto [end, ec] = std::from_chars(name.data() + dash + 1, name.data() + name.size(), n);
  if (ec != std::errc() || end != name.data() + name.size()) return std::nullopt;
  return n;
}

// Collects the answers of reads sent together, then runs `done` once with all of them, in order.
template <class T>
struct Gather {
  std::vector<std::optional<Result<T>>> answers;
  size_t left = 0;
};

}  // namespace

DependencyTracker::DependencyTracker(const LeaderContext& ctx, PendingTracker& pending, Wall wall)
    : ctx_(ctx), pending_(pending), wall_(std::move(wall)) {}

bool DependencyTracker::hold(const PendingTracker::Batch& b, uint32_t index) {
  if (!b.record || index >= b.record->size()) return false;
  const PackedRecord& rec = *b.record;
  if (!rec.hasDependencies(index)) return false;
  const TaskRef ref{b.name, index};
  if (released_.count(ref)) return false;
  if (index_.blocked(ref) || resolving_.count(ref)) return true;
  if (auto c = cancels_.find(b.name); c != cancels_.end() && c->second.count(index)) return true;
  const std::optional<tasks::TaskSpec> spec = rec.spec(index);  // decoded for its depends_on
  if (!spec) return false;
  std::vector<TaskRef> deps;
  std::vector<std::string> ids, external;
  std::map<std::string, uint32_t, std::less<>> by_id;  // built only for a plain id
  for (const auto& dep : spec->depends_on) {
    if (auto at = tasks::parseIndexRef(dep)) {
      if (*at >= rec.size()) continue;  // refused at submit; nothing to wait for
      deps.push_back({b.name, *at});
      ids.push_back(rec.id(*at));
      continue;
    }
    if (by_id.empty()) {
      for (uint32_t i = 0; i < rec.size(); ++i) by_id.emplace(rec.id(i), i);
    }
    if (auto it = by_id.find(dep); it != by_id.end()) {
      deps.push_back({b.name, it->second});
      ids.push_back(dep);
    } else if (auto gen = tasks::parseGeneratedId(dep)) {
      deps.push_back(*gen);
      ids.push_back(dep);
    } else {
      external.push_back(dep);
    }
  }
  if (external.empty()) {
    ids_[ref] = spec->id;
    auto changes = index_.add(ref, spec->id, deps, ids);
    const bool self =
        std::find(changes.released.begin(), changes.released.end(), ref) != changes.released.end();
    if (self) {
      released_.insert(ref);
      ++released_n_;
      ids_.erase(ref);
    }
    apply(changes, &ref);
    resolveUnknown(false);
    follow();
    return !self;
  }
  // Client ids of other batches: their id entries name them (read together).
  resolving_.insert(ref);
  auto gather = std::make_shared<Gather<Node>>();
  gather->answers.resize(external.size());
  gather->left = external.size();
  for (size_t k = 0; k < external.size(); ++k) {
    ctx_.coord.get(ctx_.layout.idEntry(external[k]), nullptr)
        .then([this, k, gather, ref, id = spec->id, deps, ids, external,
               post = ctx_.post](const Result<Node>& r) {
          post([this, k, gather, ref, id, deps, ids, external, r]() mutable {
            gather->answers[k] = r;
            if (--gather->left > 0 || !ctx_.active()) return;
            if (!resolving_.erase(ref)) return;  // it left meanwhile
            for (size_t j = 0; j < external.size(); ++j) {
              const auto& a = *gather->answers[j];
              std::optional<TaskRef> dep;
              if (a) dep = tasks::decodeRef(a->data);
              if (!dep && (a || a.error().code() == Code::kNoNode)) {
                // Gone since the submit checked it (retention): it cannot succeed any more.
                cancels_[ref.batch][ref.index] =
                    fmt::format("dependency {} no longer exists", external[j]);
                writeCancels(ref.batch);
                return;
              }
              if (!dep) {  // a failed read: decide on the next pass
                pending_.reread(ref.batch);
                return;
              }
              deps.push_back(*dep);
              ids.push_back(external[j]);
            }
            addResolved(ref, id, deps, ids);
          });
        });
  }
  follow();
  return true;
}

void DependencyTracker::addResolved(const TaskRef& ref, const std::string& id,
                                    const std::vector<TaskRef>& deps,
                                    const std::vector<std::string>& ids) {
  ids_[ref] = id;
  apply(index_.add(ref, id, deps, ids));
  resolveUnknown(false);
  follow();
}

void DependencyTracker::apply(const DependencyIndex::Changes& changes, const TaskRef* self) {
  for (const auto& r : changes.released) {
    if (self && r == *self) continue;  // the caller indexes it
    released_.insert(r);
    ++released_n_;
    ids_.erase(r);
    pending_.release(r);
  }
  std::set<std::string> batches;
  for (const auto& c : changes.cancelled) {
    cancels_[c.task.batch][c.task.index] = c.reason;
    batches.insert(c.task.batch);
  }
  for (const auto& b : batches) writeCancels(b);
}

void DependencyTracker::left(const TaskRef& ref) {
  index_.drop(ref);
  released_.erase(ref);
  resolving_.erase(ref);
  ids_.erase(ref);
}

bool DependencyTracker::open(const TaskRef& dep) const {
  const PendingTracker::Batch* b = pending_.find(dep.batch);
  // Held counts as unknown: a held pointer outlives the commit until the sweep drops it.
  return b && (b->version < 0 || b->state.waitingAt(dep.index));
}

void DependencyTracker::check() {
  for (const auto& [batch, tasks] : cancels_) {
    if (!tasks.empty()) writeCancels(batch);
  }
  if (index_.size() == 0) {
    asked_.clear();
    return;
  }
  resolveUnknown(true);
  follow();
}

void DependencyTracker::resolveUnknown(bool all) {
  std::map<std::string, std::set<uint32_t>> wanted;
  for (const auto& dep : index_.unresolved()) {
    if (!all && asked_.count(dep)) continue;
    if (open(dep)) continue;  // still waiting or running: its outcome comes as an event
    asked_.insert(dep);
    wanted[dep.batch].insert(dep.index);
  }
  for (auto& [batch, indices] : wanted) readOutcomes(batch, std::move(indices));
}

void DependencyTracker::readOutcomes(const std::string& batch, std::set<uint32_t> indices) {
  if (!reading_.insert(batch).second) return;  // a read is out; the next check asks again
  ctx_.coord.children(ctx_.layout.batch(batch), nullptr)
      .then([this, batch, indices, post = ctx_.post](const Result<std::vector<std::string>>& r) {
        post([this, batch, indices, r] {
          if (!ctx_.active()) return;
          if (!r) {
            reading_.erase(batch);
            if (r.error().code() == Code::kNoNode) {
              // The batch is gone (retention): none of these can succeed any more.
              for (uint32_t i : indices) outcome({batch, i}, State::kCancelled);
            } else if (r.error().sessionLost()) {
              ctx_.fence("session expired");
            }
            return;
          }
          std::vector<std::string> names;
          for (const auto& child : tasks::resultsInOrder(*r)) {
            auto range = tasks::resultRange(child);
            if (!range) continue;
            auto it = indices.lower_bound(range->first);
            if (it != indices.end() && *it <= range->second) names.push_back(child);
          }
          if (names.empty()) {
            reading_.erase(batch);
            return;
          }
          auto gather = std::make_shared<Gather<Node>>();
          gather->answers.resize(names.size());
          gather->left = names.size();
          for (size_t k = 0; k < names.size(); ++k) {
            ctx_.coord.get(ctx_.layout.batch(batch) + "/" + names[k], nullptr)
                .then([this, k, gather, batch, indices, post = ctx_.post](const Result<Node>& n) {
                  post([this, k, gather, batch, indices, n] {
                    gather->answers[k] = n;
                    if (--gather->left > 0) return;
                    reading_.erase(batch);
                    if (!ctx_.active()) return;
                    std::map<uint32_t, State> latest;  // records in order: the last one decides
                    for (const auto& a : gather->answers) {
                      if (!*a) continue;
                      auto rec = tasks::decodeResults((*a)->data);
                      if (!rec) continue;
                      for (const auto& o : rec->outcomes) {
                        if (indices.count(o.index)) latest[o.index] = o.state;
                      }
                    }
                    for (const auto& [i, state] : latest) {
                      if (tasks::isTerminal(state)) outcome({batch, i}, state);
                    }
                  });
                });
          }
        });
      });
}

void DependencyTracker::outcome(const TaskRef& ref, State state) {
  apply(index_.outcome(ref, state));
}

void DependencyTracker::writeCancels(const std::string& batch) {
  if (cancelling_.count(batch)) return;  // after this one lands
  auto it = cancels_.find(batch);
  if (it == cancels_.end()) return;
  PendingTracker::Batch* b = pending_.find(batch);
  if (!b || b->version < 0 || !b->record) {
    if (!b) {
      cancels_.erase(it);  // the batch has nothing waiting any more
      return;
    }
    ctx_.later(ctx_.retry_delay(), [this, batch] {
      if (ctx_.active()) writeCancels(batch);
    });
    return;
  }
  const int64_t now = wall_();
  tasks::PendingState after = b->state;
  tasks::ResultRecord record;
  std::vector<uint32_t> written;
  for (auto c = it->second.begin(); c != it->second.end();) {
    const tasks::Waiting* w = b->state.waitingAt(c->first);
    if (!w || c->first >= b->record->size()) {
      c = it->second.erase(c);  // no longer waiting: someone else decided it
      continue;
    }
    tasks::Outcome o;
    o.index = c->first;
    if (b->record->customId(c->first)) o.id = b->record->id(c->first);
    o.state = State::kCancelled;
    o.attempt = w->attempt - 1;
    o.finished_at = now;
    o.error = c->second;
    record.outcomes.push_back(std::move(o));
    after.erase(c->first);
    written.push_back(c->first);
    ++c;
  }
  if (record.outcomes.empty()) {
    cancels_.erase(it);
    return;
  }
  const int32_t version = b->version;
  auto builder = tasks::v2::Builder::fenced(ctx_.layout, ctx_.epoch);
  builder.cancelWaiting(tasks::v2::PendingWrite{batch, version, after}, record, now);
  auto multi = std::move(builder).finish();
  auto decoder = std::make_shared<tasks::v2::Decoder>(std::move(multi.decoder));
  cancelling_.insert(batch);
  pending_.begin(batch);
  ctx_.coord.multi(std::move(multi.ops))
      .then([this, batch, version, after, written, decoder,
             post = ctx_.post](const Result<std::vector<coord::OpResult>>& r) {
        post([this, batch, version, after, written, decoder, r] {
          cancelling_.erase(batch);
          pending_.end(batch);
          if (!ctx_.active()) return;
          if (r) {
            cancelled_ += written.size();
            auto c = cancels_.find(batch);
            if (c != cancels_.end()) {
              for (uint32_t i : written) c->second.erase(i);
              if (c->second.empty()) cancels_.erase(c);
            }
            pending_.wrote(batch, version, after);
            if (cancels_.count(batch)) writeCancels(batch);
            return;
          }
          const coord::Error& e = r.error();
          auto role = decoder->failed(e);
          if (ctx_.fencedBy(e, role)) return;
          if (role && role->part == tasks::v2::Part::kPending) pending_.reread(batch);
          spdlog::info("scheduler: cancelling dependents in batch {} failed ({}); again soon",
                       batch, e.toString());
          ctx_.later(ctx_.retry_delay(), [this, batch] {
            if (ctx_.active()) writeCancels(batch);
          });
        });
      });
}

void DependencyTracker::follow() {
  if (index_.size() == 0 && resolving_.empty()) {
    seen_ = -1;  // idle: the next dependent starts from a fresh baseline (and a full check)
    return;
  }
  if (following_ || listing_) return;
  listEvents();
}

void DependencyTracker::listEvents() {
  listing_ = true;
  following_ = true;
  auto post = ctx_.post;
  ctx_.coord
      .children(ctx_.layout.events(),
                [this, post](const coord::WatchEvent&) {
                  post([this] {
                    following_ = false;
                    if (ctx_.active()) follow();
                  });
                })
      .then([this, post](const Result<std::vector<std::string>>& r) {
        post([this, r] {
          listing_ = false;
          if (!ctx_.active()) return;
          if (!r) {
            following_ = false;  // a failed read sets no watch
            ctx_.on_read_error(r.error(), [this] { follow(); });
            return;
          }
          std::vector<std::pair<uint64_t, std::string>> fresh;
          uint64_t newest = 0;
          for (const auto& name : *r) {
            auto seq = eventSeq(name);
            if (!seq) continue;
            newest = std::max(newest, *seq);
            if (seen_ >= 0 && *seq > static_cast<uint64_t>(seen_)) fresh.emplace_back(*seq, name);
          }
          if (seen_ < 0) {
            // The baseline: what was committed before it is in the result records.
            seen_ = static_cast<int64_t>(newest);
            resolveUnknown(true);
            return;
          }
          std::sort(fresh.begin(), fresh.end());
          readEvents(std::move(fresh));
        });
      });
}

void DependencyTracker::readEvents(std::vector<std::pair<uint64_t, std::string>> fresh) {
  if (fresh.empty()) return;
  seen_ = std::max<int64_t>(seen_, static_cast<int64_t>(fresh.back().first));
  auto gather = std::make_shared<Gather<Node>>();
  gather->answers.resize(fresh.size());
  gather->left = fresh.size();
  for (size_t k = 0; k < fresh.size(); ++k) {
    ctx_.coord.get(ctx_.layout.events() + "/" + fresh[k].second, nullptr)
        .then([this, k, gather, post = ctx_.post](const Result<Node>& r) {
          post([this, k, gather, r] {
            gather->answers[k] = r;
            if (--gather->left > 0 || !ctx_.active()) return;
            for (const auto& a : gather->answers) {
              if (!*a) continue;  // trimmed already: the next check reads the results
              auto j = tasks::parseJson((*a)->data);
              if (!j || !j->is_array()) continue;
              for (const auto& item : *j) {
                auto g = tasks::eventGroupFromJson(item);
                if (!g || !tasks::isTerminal(g->state)) continue;
                for (uint32_t i : g->indices) outcome({g->batch, i}, g->state);
              }
            }
          });
        });
  }
}

void DependencyTracker::forgetBatch(const std::string& batch) {
  index_.forgetBatch(batch);
  std::erase_if(asked_, [&](const tasks::TaskRef& ref) { return ref.batch == batch; });
}

}  // namespace drover::scheduler
