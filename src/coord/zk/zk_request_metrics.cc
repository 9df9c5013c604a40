#include "coord/zk/zk_request_metrics.h"

#include <map>
#include <mutex>
#include <string_view>
#include <utility>
#include <vector>

#include "base/metrics.h"

namespace drover::coord::zk_metrics {

void RequestTimer::completed() const {
  static const std::map<std::string_view, base::Histogram*> histograms = [] {
    std::map<std::string_view, base::Histogram*> m;
    for (const char* op : {"create", "delete", "set", "get", "exists", "children", "multi", "sync",
                           "auth", "other"}) {
      m[op] = &base::metrics().histogram(
          "drover_zookeeper_request_duration_seconds",
          "Time from sending a ZooKeeper request to its completion, by operation",
          base::kRequestDurationBuckets, {{"op", op}});
    }
    return m;
  }();
  auto it = histograms.find(op_);
  if (it == histograms.end()) return;
  it->second->observe(
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count());
}

// Counts the data bytes of the writes this node sends (creates and sets, alone or in a multi):
// what ZooKeeper logs, fsyncs and replicates for this node (drover_zookeeper_write_bytes_total,
// docs/METRICS.md). Counted when sent, whether or not the write lands.
void countWritten(size_t data_bytes) {
  static auto& written = base::metrics().counter(
      "drover_zookeeper_write_bytes_total",
      "Data bytes of the creates and sets this node sent to ZooKeeper (alone or in multis)");
  written.inc(static_cast<double>(data_bytes));
}

// Counts reads by the part of the tree they read (drover_zookeeper_reads_total, docs/METRICS.md):
// the second path segment, below the root (/drover/pending/... -> "pending"), from a fixed set so
// that the labels stay few. It says which component's reads a figure of requests per task is.
void countRead(const char* op, const std::string& path) {
  static const std::vector<std::string_view> kTrees = {
      "batches", "pending",  "assignments", "events",   "workers",   "ids",     "leader",
      "epoch",   "election", "queues",      "draining", "schedules", "webhooks"};
  static std::mutex mu;  // first use of a label pair only
  static std::map<std::pair<std::string_view, std::string_view>, base::Counter*> counters;
  std::string_view tree = "other";
  std::string_view rest(path);
  if (auto first = rest.find('/', 1); first != std::string_view::npos) {
    rest.remove_prefix(first + 1);
    std::string_view segment = rest.substr(0, rest.find('/'));
    for (auto t : kTrees) {
      if (segment == t) tree = t;
    }
  }
  base::Counter* c = nullptr;
  {
    std::lock_guard lock(mu);
    auto& slot = counters[{op, tree}];
    if (slot == nullptr) {
      slot = &base::metrics().counter(
          "drover_zookeeper_reads_total",
          "Reads this node sent to ZooKeeper, by operation and by the part of the tree read",
          {{"op", std::string(op)}, {"tree", std::string(tree)}});
    }
    c = slot;
  }
  c->inc();
}

}  // namespace drover::coord::zk_metrics
