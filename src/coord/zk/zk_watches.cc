// The watch registry of zk_internal.h: every watch set through the C client, by number.

#include <zookeeper/zookeeper.h>

#include <atomic>
#include <cstdint>
#include <mutex>
#include <unordered_map>
#include <utility>

#include "coord/zk/zk_internal.h"

namespace drover::coord::zk_detail {
namespace {

// Per-call watchers live in one process-wide table keyed by a number, and the C client carries
// only that number. A watcher is taken out of the table when it fires or when its session ends,
// so a late or repeated call from the client never touches freed memory.
struct WatchEntry {
  Watcher fn;
  const void* owner;
  uint64_t generation;
};
std::mutex g_watch_mu;
std::unordered_map<uint64_t, WatchEntry> g_watches;
std::atomic<uint64_t> g_next_watch{1};

}  // namespace

void* registerWatch(Watcher fn, const void* owner, uint64_t generation) {
  uint64_t id = g_next_watch++;
  std::lock_guard lock(g_watch_mu);
  g_watches.emplace(id, WatchEntry{std::move(fn), owner, generation});
  return reinterpret_cast<void*>(id);  // NOLINT(performance-no-int-to-ptr)
}

void dropWatch(void* ctx) {
  std::lock_guard lock(g_watch_mu);
  g_watches.erase(reinterpret_cast<uint64_t>(ctx));
}

void dropWatchesOf(const void* owner, uint64_t generation) {
  std::lock_guard lock(g_watch_mu);
  std::erase_if(g_watches, [&](const auto& kv) {
    return kv.second.owner == owner && kv.second.generation <= generation;
  });
}

void nodeWatcher(zhandle_t*, int type, int state, const char* path, void* ctx) {
  // Session events reach every registered watcher too; they are the session listener's business.
  if (type == ZOO_SESSION_EVENT || type == ZOO_NOTWATCHING_EVENT) return;
  Watcher fn;
  {
    std::lock_guard lock(g_watch_mu);
    auto it = g_watches.find(reinterpret_cast<uint64_t>(ctx));
    if (it == g_watches.end()) return;
    fn = std::move(it->second.fn);
    g_watches.erase(it);
  }
  EventType event = EventType::kDataChanged;
  if (type == ZOO_CREATED_EVENT) event = EventType::kCreated;
  if (type == ZOO_DELETED_EVENT) event = EventType::kDeleted;
  if (type == ZOO_CHILD_EVENT) event = EventType::kChildrenChanged;
  if (fn) fn(WatchEvent{event, path != nullptr ? path : ""});
}

}  // namespace drover::coord::zk_detail
