#include "tasks/layout.h"

#include <fmt/format.h>

namespace drover::tasks {

Layout::Layout(std::string root) : root_(std::move(root)) {
  while (root_.size() > 1 && root_.back() == '/') root_.pop_back();
}

std::string Layout::worker(std::string_view id) const {
  return fmt::format("{}/{}", workers(), id);
}

int Layout::bucketIndex(std::string_view task_id) {
  uint32_t h = 2166136261u;  // FNV-1a: stable across versions and machines
  for (unsigned char c : task_id) {
    h ^= c;
    h *= 16777619u;
  }
  return static_cast<int>(h % kIdBuckets);
}

std::string Layout::assignmentsOf(std::string_view worker_id) const {
  return fmt::format("{}/{}", assignments(), worker_id);
}

std::string Layout::queue(std::string_view name) const {
  return fmt::format("{}/{}", queues(), name);
}

std::string Layout::drain(std::string_view worker_id) const {
  return fmt::format("{}/{}", draining(), worker_id);
}

std::string Layout::batchBucket(std::string_view bucket) const {
  return fmt::format("{}/{}", batches(), bucket);
}

std::string Layout::batch(std::string_view batch_name) const {
  return fmt::format("{}/{}/{}", batches(), batch_name.substr(0, kBatchBucketDigits), batch_name);
}

std::string Layout::pendingBucket(std::string_view bucket) const {
  return fmt::format("{}/{}", pendingRoot(), bucket);
}

std::string Layout::pending(std::string_view batch_name) const {
  return fmt::format("{}/{}/{}", pendingRoot(), batch_name.substr(0, kBatchBucketDigits),
                     batch_name);
}

std::string Layout::chunk(std::string_view worker_id, std::string_view chunk_name) const {
  return fmt::format("{}/{}/{}", assignments(), worker_id, chunk_name);
}

std::string Layout::idsBucketAt(int index) const {
  return fmt::format("{}/{:02x}", idsRoot(), index);
}

std::string Layout::idEntry(std::string_view task_id) const {
  return fmt::format("{}/{}", idsBucketAt(bucketIndex(task_id)), task_id);
}

std::vector<std::string> Layout::directories() const {
  std::vector<std::string> dirs{root_,         workers(), election(), assignments(), batches(),
                                pendingRoot(), idsRoot(), events(),   queues(),      draining()};
  for (int i = 0; i < kIdBuckets; ++i) dirs.push_back(idsBucketAt(i));
  return dirs;
}

}  // namespace drover::tasks
