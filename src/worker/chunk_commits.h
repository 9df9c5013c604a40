#pragma once

// The commit side of protocol v2's worker (docs/ZNODES.md "Protocol v2"): turns finished tasks
// into commit multis. Outcomes ready together share one multi (several chunks' commits, up to
// the byte limit), and one multi is in flight at a time: what finishes meanwhile goes in the next;
// each chunk is written at the version last read, so a chunk the leader or the API rewrote
// meanwhile fences the commit, and only the outcomes of tasks still in it are sent again.

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "base/executor.h"
#include "coord/coordination.h"
#include "tasks/batch.h"
#include "tasks/layout.h"
#include "tasks/protocol.h"
#include "worker/agent.h"

namespace drover::worker {

// One task's outcome, ready to commit: a terminal outcome, or (retry) back to its batch's
// pending state.
struct Finished {
  tasks::ChunkItem item;   // as the chunk lists it (its spec dropped)
  tasks::Outcome outcome;  // terminal (kSucceeded or kFailed) unless `retry`
  std::optional<tasks::Waiting> retry;
  bool rejected = false;  // failed without running
  // The task has a callback_url, or its spec is not known here (the webhook dispatcher reads
  // the event records of multis that may end such a task: tasks::v2::Builder::callbacks).
  bool callback = true;
};

// Owned by ChunkAgent and driven on its executor thread only (every method, every hook).
// Coordination replies come back through `post`.
class ChunkCommits {
 public:
  struct Hooks {
    // Posts to the owner's executor (dropped once it stopped).
    std::function<void(base::Task)> post;
    std::function<void(base::Duration, base::Task)> post_after;
    // Read `chunk` again and call synced() with what it holds (a commit was fenced, or its
    // outcome is unknown).
    std::function<void(const std::string& chunk)> reread;
    // A commit failed because the session is gone.
    std::function<void(const coord::Error&)> session_lost;
    // The outcome landed (true), or was discarded because the chunk no longer holds the task.
    std::function<void(const Finished&, bool landed)> done;
  };

  ChunkCommits(coord::Coordination& coord, const tasks::Layout& layout, std::string worker_id,
               const AgentOptions& options, Hooks hooks);

  // Queues an outcome of a task of `chunk`; it goes out with the others ready in this turn.
  void add(const std::string& chunk, Finished finished);
  // What `chunk` holds now (nullopt: it is gone), as read. Queued outcomes of tasks it no longer
  // holds are discarded; the rest are committed at this version.
  void synced(const std::string& chunk, std::optional<int32_t> version,
              std::shared_ptr<const tasks::Chunk> content);
  // The chunk's version as last read or written by this worker (nullopt: unknown).
  std::optional<int32_t> version(const std::string& chunk) const;
  // Outcomes queued or in flight.
  size_t outstanding() const;
  // Drops everything (stop, death): nothing more is sent, replies are ignored.
  void halt() { halted_ = true; }

 private:
  enum class Phase { kIdle, kInFlight, kSettling, kStale };
  struct ChunkState {
    std::string path;
    int32_t version = 0;
    bool known = false;  // version and content come from a read
    std::shared_ptr<const tasks::Chunk> content;
    Phase phase = Phase::kIdle;
    std::vector<Finished> ready;   // queued, not sent
    std::vector<Finished> flight;  // sent in the multi in flight (or whose outcome is unsettled)
    int32_t flight_version = 0;
    uint32_t tries = 0;  // odd failures in a row
  };
  struct PendingCopy {
    int32_t version = 0;
    tasks::PendingState state;
  };
  using MultiResult = coord::Result<std::vector<coord::OpResult>>;

  void flushSoon();
  void flush();
  // Reads the pending states the retries of `chunks` need; false when some are still coming.
  bool havePending(const std::vector<std::string>& chunks);
  void readPending(const std::string& batch);
  // Adds one chunk's commit to `b`; false (b untouched) when the chunk cannot go in this multi.
  bool addTo(tasks::v2::Builder& b, const std::string& name, ChunkState& c,
             std::set<std::string>& batches_used);
  void send(tasks::v2::Builder b, std::vector<std::string> chunks, std::set<std::string> batches);
  void onSent(const std::vector<std::string>& chunks, const std::set<std::string>& batches,
              const tasks::v2::Decoder& decoder, const MultiResult& r);
  void landed(const std::string& name, ChunkState& c, const tasks::v2::Decoder& decoder,
              const std::vector<coord::OpResult>& results);
  void settle(ChunkState& c);
  void fence(ChunkState& c);
  void requeueFlight(ChunkState& c);

  coord::Coordination& coord_;
  const tasks::Layout& layout_;
  const std::string worker_id_;
  const AgentOptions& options_;
  Hooks hooks_;
  bool halted_ = false;
  size_t multis_inflight_ = 0;  // commit multis sent, reply not handled yet
  bool flush_posted_ = false;
  std::map<std::string, ChunkState> chunks_;
  std::map<std::string, PendingCopy> pending_;  // pending states read for retries, by batch
  std::set<std::string> pending_reads_;         // batches being read
  std::map<std::string, uint32_t> pending_tries_;
};

}  // namespace drover::worker
