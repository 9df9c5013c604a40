// BatchStore::retry (docs/ZNODES.md "Retry and history on batch records"): a failed or
// cancelled task goes back under its id in one multi, tasks::v2::Builder::retry. The pending
// state is the fence: a concurrent retry, submit-side change or leader write moves its version
// (or creates it), so of two retries exactly one lands and the other reads the task pending.
#include <fmt/format.h>

#include <random>
#include <thread>

#include "api/batch_store.h"
#include "base/clock.h"
#include "tasks/protocol.h"

namespace drover::api {
namespace {

using coord::Code;
using tasks::State;
using Clock = std::chrono::steady_clock;

// The error of a re-open's history entry.
constexpr const char* kReopened = "re-opened by a retry";

void pauseFor(const base::Backoff& backoff, int attempt) {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  std::this_thread::sleep_for(backoff.delay(static_cast<uint32_t>(attempt), rng()));
}

}  // namespace

StoreResult<tasks::TaskStatus> BatchStore::retry(const std::string& id) {
  auto ref = reader_.resolve(id);
  if (!ref) return tl::unexpected(ref.error());
  if (!*ref) return problem(Failure::kNotFound, fmt::format("no task '{}'", id));
  auto record = reader_.batch((*ref)->batch);
  if (!record) return tl::unexpected(record.error());
  if (!*record) return problem(Failure::kNotFound, fmt::format("no task '{}'", id));
  const tasks::TaskRef r = **ref;
  const auto deadline = Clock::now() + options_.settle_deadline;
  std::optional<int64_t> ambiguous;  // the re-open stamp of a multi whose outcome is unknown
  for (int attempt = 1; attempt <= options_.cancel_attempts; ++attempt) {
    auto place = reader_.locate(r);
    if (!place) return tl::unexpected(place.error());
    if (!*place) return problem(Failure::kNotFound, fmt::format("no task '{}'", id));
    tasks::TaskStatus& status = (*place)->status;
    if (ambiguous && !status.history.empty() && status.history.back().error == kReopened &&
        status.history.back().finished_at == *ambiguous && !tasks::isTerminal(status.state)) {
      return std::move(status);  // the unknown multi was ours
    }
    if (status.state != State::kFailed && status.state != State::kCancelled) {
      return problem(Failure::kConflict,
                     fmt::format("task '{}' is {}; only a failed or cancelled task can be retried",
                                 id, tasks::stateName(status.state)));
    }
    if (!connected()) {
      return problem(Failure::kUnavailable, "not connected to ZooKeeper; try again later");
    }
    // The pending state as it is now (the finished task is in none): set at its version, or
    // created when retention of pending states (the leader's sweep) deleted it.
    tasks::v2::PendingWrite write{r.batch, 0, {}, false};
    auto node = await(coord_.get(layout_.pending(r.batch), nullptr));
    if (node) {
      auto decoded = tasks::decodePending(node->data);
      if (!decoded) return problem(Failure::kInternal, "pending state is unreadable");
      write.after = std::move(*decoded);
      write.version = node->stat.version;
    } else if (node.error().code() == Code::kNoNode) {
      write.create = true;
    } else {
      return tl::unexpected(fromCoord(node.error(), "read pending state"));
    }
    // A held pointer to the finished task is stale (its chunk let it go; the leader's sweep
    // drops such pointers): wait() replaces it.
    const int64_t now = base::wallMillis();
    const tasks::Waiting waiting{status.attempts + 1, 0, status.error};
    write.after.wait(r.index, waiting);
    tasks::Outcome reopened;
    reopened.index = r.index;
    if (status.spec.id != tasks::generatedId(r)) reopened.id = status.spec.id;
    reopened.state = State::kPending;
    reopened.attempt = status.attempts;
    reopened.finished_at = now;
    reopened.error = kReopened;
    tasks::v2::Builder builder(layout_);
    builder.retry(write, reopened, status.spec.id, now);
    auto m = std::move(builder).finish();
    auto done = await(coord_.multi(std::move(m.ops)));
    if (done) {
      tasks::TaskStatus after = waitingStatus(**record, r.index, waiting);
      after.history = std::move(status.history);
      after.history.push_back({reopened.attempt, "", 0, now, State::kPending, kReopened});
      if (after.history.size() > tasks::kHistoryShown) after.history.erase(after.history.begin());
      return after;
    }
    const coord::Error& err = done.error();
    const auto role = m.decoder.failed(err);
    if (role && role->part == tasks::v2::Part::kPending) {
      if (write.create && err.code() == Code::kNoNode) {
        // Its time bucket under /pending was dropped by retention: create it, send again.
        const std::string bucket = r.batch.substr(0, tasks::Layout::kBatchBucketDigits);
        auto made = await(coord_.create(coord::CreateOp{
            layout_.pendingBucket(bucket), "", coord::CreateMode::kPersistent, {}}));
        if (!made && made.error().code() != Code::kNodeExists) {
          return tl::unexpected(fromCoord(made.error(), "create pending bucket"));
        }
      } else {
        pauseFor(options_.backoff, attempt);  // another writer changed or created it
      }
      continue;
    }
    if (role && role->part == tasks::v2::Part::kResult && err.code() == Code::kNoNode) {
      return problem(Failure::kNotFound, fmt::format("no task '{}' (retention took it)", id));
    }
    if (role || !err.outcomeUnknown()) return tl::unexpected(fromCoord(err, "retry"));
    // Ambiguous: sync, then the next round's read tells (our re-open stamped `now`).
    ambiguous = now;
    while (Clock::now() < deadline) {
      pauseFor(options_.backoff, attempt);
      auto synced = await(coord_.sync(layout_.batch(r.batch)));
      if (synced || !synced.error().retryable()) break;
    }
    if (Clock::now() >= deadline) {
      return problem(Failure::kUnavailable,
                     fmt::format("the outcome of retrying '{}' is unknown (ZooKeeper "
                                 "unreachable); read the task",
                                 id));
    }
  }
  return problem(Failure::kUnavailable,
                 fmt::format("task '{}' kept changing; retry did not settle, try again", id));
}

}  // namespace drover::api
