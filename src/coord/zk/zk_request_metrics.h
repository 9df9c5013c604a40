#pragma once

// The ZooKeeper client's request metrics (docs/METRICS.md): each request's duration by op, the
// data bytes written, and the reads by the part of the tree they read. Used by ZkCoordination's
// requests (zk_calls.cc, zk_multi.cc).

#include <chrono>
#include <cstddef>
#include <string>

namespace drover::coord::zk_metrics {

// Times one request from its submission to its completion, by op
// (drover_zookeeper_request_duration_seconds, docs/METRICS.md). Calls refused before they reach
// the client library are not timed.
class RequestTimer {
 public:
  explicit RequestTimer(const char* op = "other")
      : op_(op), start_(std::chrono::steady_clock::now()) {}
  // Called once, by the completion.
  void completed() const;

 private:
  const char* op_;
  std::chrono::steady_clock::time_point start_;
};

// Counts the data bytes of one create or set, or of a multi's creates and sets.
void countWritten(size_t data_bytes);
// Counts one read (`op`: get, children or exists) of `path`.
void countRead(const char* op, const std::string& path);

}  // namespace drover::coord::zk_metrics
