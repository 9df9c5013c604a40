#include "scheduler/cleanup.h"

#include <algorithm>

#include "coord/paths.h"

namespace drover::scheduler {

using coord::Op;
using coord::OpResult;
using coord::Result;

namespace {

constexpr size_t kMaxEventDeletesPerSweep = 10000;
constexpr size_t kEventDeletesPerMulti = 500;  // ~25 KB of paths: far below jute.maxbuffer

}  // namespace

Cleanup::Cleanup(coord::Coordination& coord, const tasks::Layout& layout, Options options,
                 Post post, std::function<bool()> active)
    : coord_(coord),
      layout_(layout),
      options_(options),
      post_(std::move(post)),
      active_(std::move(active)) {}

void Cleanup::trimEvents() {
  coord_.children(layout_.events(), nullptr)
      .then([post = post_, this](const Result<std::vector<std::string>>& r) {
        post([this, r] {
          if (!active_() || !r || r->size() <= options_.events_keep) return;
          std::vector<std::pair<int64_t, std::string>> seq;
          seq.reserve(r->size());
          for (const auto& name : *r) seq.emplace_back(coord::sequenceOf(name), name);
          std::sort(seq.begin(), seq.end());
          size_t excess = std::min(seq.size() - options_.events_keep, kMaxEventDeletesPerSweep);
          // Not fenced: an event record is no token, and a deposed leader trimming the oldest
          // records harms nothing. The deletes go in multis of kEventDeletesPerMulti (one request
          // each instead of one per record); a multi that fails (a record already gone: another
          // trimmer) is retried one delete at a time.
          for (size_t first = 0; first < excess; first += kEventDeletesPerMulti) {
            size_t end = std::min(excess, first + kEventDeletesPerMulti);
            std::vector<std::string> paths;
            std::vector<Op> ops;
            for (size_t i = first; i < end; ++i) {
              paths.push_back(coord::join(layout_.events(), seq[i].second));
              ops.push_back(coord::DeleteOp{paths.back(), coord::kAnyVersion});
            }
            coord_.multi(std::move(ops))
                .then([post = post_, this, paths](const Result<std::vector<OpResult>>& m) {
                  post([this, paths, m] {
                    if (m) {
                      events_trimmed_ += paths.size();
                      return;
                    }
                    if (!active_() || m.error().sessionLost()) return;
                    for (const auto& path : paths) {
                      coord_.remove(path, coord::kAnyVersion)
                          .then([post = post_, this](const coord::Status& st) {
                            if (st) post([this] { ++events_trimmed_; });
                          });
                    }
                  });
                });
          }
        });
      });
}

}  // namespace drover::scheduler
