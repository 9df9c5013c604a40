#pragma once

// The leader's housekeeping: trims the event log (/events) to its newest records and deletes
// terminal statuses past the retention age or count (docs/ZNODES.md "Directory bounds").
//
// Threads: driven by its owner on the owner's executor; every completion comes back through
// `post`, which must run the callback on that executor (or drop it once the owner stopped), and
// does nothing once `active` says the owner stopped. Not thread-safe otherwise.

#include <array>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "coord/coordination.h"
#include "tasks/layout.h"

namespace drover::scheduler {

class Cleanup {
 public:
  struct Options {
    size_t events_keep = 1000;                                         // /events records kept
    std::chrono::milliseconds retention_age = std::chrono::hours(24);  // terminal statuses
    size_t retention_count = 100000;  // /status children kept at most
    // Bound on the statuses read (and so deleted) per retention pass.
    size_t retention_reads_per_sweep = 5000;
  };
  using Post = std::function<void(std::function<void()>)>;

  Cleanup(coord::Coordination& coord, const tasks::Layout& layout, Options options, Post post,
          std::function<bool()> active);

  // Deletes the oldest event records past events_keep (at most 10,000 per call), in multis.
  void trimEvents();
  // One retention pass: the total from the status buckets' stats, then a bounded slice of
  // statuses read from where the last pass stopped, and the doomed ones deleted (versioned).
  void applyRetention();
  // The last pass found more statuses than retention_count (true before the first pass): the
  // owner then runs a pass every sweep.
  bool behind() const { return retention_behind_; }
  uint64_t eventsTrimmed() const { return events_trimmed_; }
  uint64_t statusesDeleted() const { return statuses_deleted_; }

 private:
  // Retention walks the status buckets a bounded slice per sweep (see applyRetention()).
  struct RetentionScan {
    size_t excess = 0;  // statuses over retention_count
    size_t want = 0;    // statuses to read this sweep
    int visited = 0;    // buckets passed this sweep
    std::array<int32_t, tasks::Layout::kJobBuckets> sizes{};
    std::vector<std::string> ids;
    size_t next = 0;         // ids[next] is the next status to read
    size_t outstanding = 0;  // reads in flight
    int64_t cutoff = 0;      // statuses finished before this (wall ms) are past retention_age
    std::vector<std::pair<std::string, int32_t>> doomed;  // (id, version) to delete
  };
  void retentionList(const std::shared_ptr<RetentionScan>& scan);
  void retentionRead(const std::shared_ptr<RetentionScan>& scan);
  void retentionReadOne(const std::shared_ptr<RetentionScan>& scan);
  void retentionFinish(const std::shared_ptr<RetentionScan>& scan);
  using Doomed = std::shared_ptr<const std::vector<std::pair<std::string, int32_t>>>;
  void retentionDelete(Doomed doomed, size_t from);

  coord::Coordination& coord_;
  const tasks::Layout& layout_;
  const Options options_;
  const Post post_;
  const std::function<bool()> active_;

  bool retention_behind_ = true;
  uint64_t events_trimmed_ = 0;
  uint64_t statuses_deleted_ = 0;
  int retention_bucket_ = 0;      // the status bucket the last retention scan stopped in
  std::string retention_cursor_;  // the status name in it the last retention scan stopped after
  std::map<std::string, std::pair<int64_t, int32_t>> terminal_seen_;  // id -> (finished, ver)
};

}  // namespace drover::scheduler
