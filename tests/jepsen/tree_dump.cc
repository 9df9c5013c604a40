#include "jepsen/tree_dump.h"

#include <fmt/format.h>

#include <algorithm>
#include <csignal>

namespace drover::jepsen {

using namespace std::chrono_literals;

namespace {

template <class T>
tl::expected<T, std::string> await(const coord::Future<T>& f, const std::string& what) {
  auto r = f.waitFor(30s);
  if (!r) return tl::unexpected(what + ": no answer within 30 s");
  if (!*r) return tl::unexpected(what + ": " + r->error().toString());
  if constexpr (std::is_void_v<T>) {
    return {};
  } else {
    return **r;
  }
}

// Children of many folders, pipelined; a folder that does not exist has none.
tl::expected<std::vector<std::vector<std::string>>, std::string> childrenOf(
    coord::Coordination& c, const std::vector<std::string>& paths) {
  std::vector<coord::Future<std::vector<std::string>>> fs;
  for (const auto& p : paths) fs.push_back(c.children(p, nullptr));
  std::vector<std::vector<std::string>> out;
  for (size_t i = 0; i < fs.size(); ++i) {
    auto r = fs[i].waitFor(30s);
    if (!r) return tl::unexpected("list " + paths[i] + ": no answer within 30 s");
    if (!*r) {
      if (r->error().code() == coord::Code::kNoNode) {
        out.emplace_back();
        continue;
      }
      return tl::unexpected("list " + paths[i] + ": " + r->error().toString());
    }
    out.push_back(**r);
  }
  return out;
}

std::vector<std::string> bucketPaths(const tasks::Layout& l, bool jobs) {
  std::vector<std::string> out;
  for (int b = 0; b < tasks::Layout::kJobBuckets; ++b) {
    out.push_back(jobs ? l.jobBucketAt(b) : l.statusBucketAt(b));
  }
  return out;
}

std::string bucketName(int b) { return fmt::format("{:02x}", b); }

}  // namespace

tl::expected<int64_t, std::string> countTokens(coord::Coordination& c, const tasks::Layout& l) {
  auto jobs = childrenOf(c, bucketPaths(l, true));
  if (!jobs) return tl::unexpected(jobs.error());
  auto workers = childrenOf(c, {l.assignments()});
  if (!workers) return tl::unexpected(workers.error());
  std::vector<std::string> paths;
  for (const auto& w : workers->front()) paths.push_back(l.assignmentsOf(w));
  auto held = childrenOf(c, paths);
  if (!held) return tl::unexpected(held.error());
  int64_t n = 0;
  for (const auto& v : *jobs) n += static_cast<int64_t>(v.size());
  for (const auto& v : *held) n += static_cast<int64_t>(v.size());
  return n;
}

tl::expected<bool, std::string> settled(coord::Coordination& c, const tasks::Layout& l, int nodes) {
  auto kids = childrenOf(c, {l.workers(), l.election(), l.events()});
  if (!kids) return tl::unexpected(kids.error());
  return static_cast<int>((*kids)[0].size()) == nodes &&
         static_cast<int>((*kids)[1].size()) == nodes && (*kids)[2].size() <= 1000;
}

tl::expected<Tree, std::string> dumpTree(coord::Coordination& c, const tasks::Layout& l) {
  Tree t;
  if (auto s = await(c.sync(l.root()), "sync"); !s) return tl::unexpected(s.error());

  // Statuses, read pipelined bucket by bucket.
  auto status_buckets = childrenOf(c, bucketPaths(l, false));
  if (!status_buckets) return tl::unexpected(status_buckets.error());
  for (int b = 0; b < tasks::Layout::kJobBuckets; ++b) {
    const auto& ids = (*status_buckets)[b];
    t.bucket_sizes[l.statusBucketAt(b)] = static_cast<int>(ids.size());
    std::vector<coord::Future<coord::Node>> fs;
    for (const auto& id : ids) fs.push_back(c.get(l.statusBucketAt(b) + "/" + id, nullptr));
    for (size_t i = 0; i < ids.size(); ++i) {
      auto node = await(fs[i], "get status " + ids[i]);
      if (!node) return tl::unexpected(node.error());
      auto j = tasks::parseJson(node->data);
      t.statuses.push_back({bucketName(b), ids[i], j ? tasks::statusFromJson(*j) : std::nullopt});
    }
  }

  auto job_buckets = childrenOf(c, bucketPaths(l, true));
  if (!job_buckets) return tl::unexpected(job_buckets.error());
  for (int b = 0; b < tasks::Layout::kJobBuckets; ++b) {
    t.bucket_sizes[l.jobBucketAt(b)] = static_cast<int>((*job_buckets)[b].size());
    for (const auto& id : (*job_buckets)[b]) t.jobs.push_back({bucketName(b), id});
  }

  auto top = childrenOf(c, {l.assignments(), l.workers(), l.election(), l.events()});
  if (!top) return tl::unexpected(top.error());
  std::vector<std::string> holders;
  for (const auto& w : (*top)[0]) holders.push_back(l.assignmentsOf(w));
  auto held = childrenOf(c, holders);
  if (!held) return tl::unexpected(held.error());
  for (size_t i = 0; i < holders.size(); ++i) t.assignments[(*top)[0][i]] = (*held)[i];

  for (const auto& w : (*top)[1]) {
    auto node = await(c.get(l.worker(w), nullptr), "get worker " + w);
    if (!node) continue;  // it left meanwhile
    auto j = tasks::parseJson(node->data);
    auto info = j ? tasks::workerFromJson(*j) : std::nullopt;
    if (!info) {
      info.emplace();
      info->id = w;
    }
    t.workers[w] = *info;
  }
  t.election = (*top)[2];

  std::vector<std::string> names = (*top)[3];
  std::sort(names.begin(), names.end());  // e-NNNNNNNNNN: zero-padded, so text order is seq order
  std::vector<coord::Future<coord::Node>> fs;
  for (const auto& n : names) fs.push_back(c.get(l.events() + "/" + n, nullptr));
  for (size_t i = 0; i < names.size(); ++i) {
    auto node = await(fs[i], "get event " + names[i]);
    if (!node) continue;  // trimmed meanwhile
    EventRecord rec;
    rec.seq = std::stoll(names[i].substr(names[i].find('-') + 1));
    auto j = tasks::parseJson(node->data);
    if (j && j->is_array()) {
      for (const auto& e : *j) {
        if (auto ev = tasks::eventFromJson(e)) rec.events.push_back(*ev);
      }
    }
    t.events.push_back(std::move(rec));
  }

  auto epoch = await(c.exists(l.epoch(), nullptr), "exists epoch");
  if (epoch && *epoch) t.epoch = (*epoch)->version;
  return t;
}

std::string plant(coord::Coordination& c, const tasks::Layout& l, const std::string& kind,
                  const std::vector<Request>& history, const std::function<void(int)>& crash) {
  if (kind == "crash") {
    crash(SIGABRT);
    return "crash: sent SIGABRT to n1 (a node that dies on its own)";
  }
  const Request* acked = nullptr;
  for (const auto& r : history) {
    if (r.acknowledged() && (acked == nullptr || r.end_ms < acked->end_ms)) acked = &r;
  }
  if (acked == nullptr) return kind + ": nothing acknowledged to plant on";
  const std::string& id = acked->id;
  if (kind == "lost") {
    auto st = await(c.remove(l.status(id), coord::kAnyVersion), "delete");
    return st ? "lost: deleted " + l.status(id) + " of acknowledged task " + id
              : "lost: " + st.error();
  }
  auto node = await(c.get(l.status(id), nullptr), "get");
  if (!node) return kind + ": " + node.error();
  if (kind == "phantom") {
    std::string ghost = "ghost-" + id;
    auto st = await(c.create({l.status(ghost), node->data, coord::CreateMode::kPersistent, {}}),
                    "create");
    return st ? "phantom: wrote " + l.status(ghost) + ", an id nobody submitted"
              : "phantom: " + st.error();
  }
  // leftover: a job for a finished task.
  auto j = tasks::parseJson(node->data);
  auto status = j ? tasks::statusFromJson(*j) : std::nullopt;
  if (!status) return "leftover: undecodable status of " + id;
  tasks::Job job(status->spec, status->attempts + 1);
  auto st =
      await(c.create({l.job(id), tasks::toJson(job).dump(), coord::CreateMode::kPersistent, {}}),
            "create");
  return st ? "leftover: wrote " + l.job(id) + " for finished task " + id
            : "leftover: " + st.error();
}

}  // namespace drover::jepsen
