#include "tasks/dag.h"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <map>

namespace drover::tasks {
namespace {

tl::unexpected<ValidationError> invalidAt(size_t i, std::string detail) {
  return tl::unexpected(ValidationError{fmt::format("tasks[{}].depends_on", i), std::move(detail)});
}

// How a task of the batch is named in an error: its id, else "#N".
std::string nameOf(const std::vector<TaskSpec>& specs, uint32_t i) {
  return specs[i].id.empty() ? fmt::format("#{}", i) : specs[i].id;
}

}  // namespace

bool BatchDeps::empty() const {
  for (const auto& v : internal) {
    if (!v.empty()) return false;
  }
  for (const auto& v : external) {
    if (!v.empty()) return false;
  }
  return true;
}

std::vector<std::string> BatchDeps::externalIds() const {
  std::vector<std::string> out;
  for (const auto& v : external) out.insert(out.end(), v.begin(), v.end());
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

std::optional<uint32_t> parseIndexRef(std::string_view ref) {
  if (ref.size() < 2 || ref[0] != '#') return std::nullopt;
  uint32_t n = 0;
  auto [end, ec] = std::from_chars(ref.data() + 1, ref.data() + ref.size(), n);
  if (ec != std::errc() || end != ref.data() + ref.size()) return std::nullopt;
  if (ref.size() > 2 && ref[1] == '0') return std::nullopt;  // one spelling per index
  return n;
}

tl::expected<BatchDeps, ValidationError> resolveDeps(const std::vector<TaskSpec>& specs) {
  std::map<std::string, uint32_t, std::less<>> by_id;
  for (uint32_t i = 0; i < specs.size(); ++i) {
    if (!specs[i].id.empty()) by_id.emplace(specs[i].id, i);
  }
  BatchDeps deps;
  deps.internal.resize(specs.size());
  deps.external.resize(specs.size());
  for (uint32_t i = 0; i < specs.size(); ++i) {
    const auto& refs = specs[i].depends_on;
    if (refs.size() > kMaxDependencies) {
      return invalidAt(i, fmt::format("at most {} dependencies", kMaxDependencies));
    }
    for (const auto& ref : refs) {
      std::optional<uint32_t> at;
      if (ref.starts_with('#')) {
        at = parseIndexRef(ref);
        if (!at) return invalidAt(i, fmt::format("'{}' is not an index reference (#N)", ref));
        if (*at >= specs.size()) {
          return invalidAt(i,
                           fmt::format("{} is past the batch's end ({} tasks)", ref, specs.size()));
        }
      } else if (auto it = by_id.find(ref); it != by_id.end()) {
        at = it->second;
      }
      if (at && *at == i) return invalidAt(i, "a task cannot depend on itself");
      if (at) {
        deps.internal[i].push_back(*at);
      } else {
        deps.external[i].push_back(ref);
      }
    }
    auto& in = deps.internal[i];
    std::sort(in.begin(), in.end());
    in.erase(std::unique(in.begin(), in.end()), in.end());
    auto& ex = deps.external[i];
    std::sort(ex.begin(), ex.end());
    ex.erase(std::unique(ex.begin(), ex.end()), ex.end());
  }
  // Cycles: a depth-first walk over the internal edges (external ids exist already and cannot
  // wait for a task of this batch). Iterative, so a 1,000-task chain needs no deep stack.
  enum : uint8_t { kNew, kOnPath, kDone };
  std::vector<uint8_t> mark(specs.size(), kNew);
  std::vector<std::pair<uint32_t, size_t>> path;  // (task, next edge to follow)
  for (uint32_t root = 0; root < specs.size(); ++root) {
    if (mark[root] != kNew) continue;
    path.push_back({root, 0});
    mark[root] = kOnPath;
    while (!path.empty()) {
      auto& [task, edge] = path.back();
      if (edge == deps.internal[task].size()) {
        mark[task] = kDone;
        path.pop_back();
        continue;
      }
      const uint32_t next = deps.internal[task][edge++];
      if (mark[next] == kDone) continue;
      if (mark[next] == kOnPath) {
        std::string cycle;
        size_t from = 0;
        while (path[from].first != next) ++from;
        for (size_t k = from; k < path.size(); ++k) cycle += nameOf(specs, path[k].first) + " -> ";
        cycle += nameOf(specs, next);
        return invalidAt(path[from].first, fmt::format("a dependency cycle: {}", cycle));
      }
      mark[next] = kOnPath;
      path.push_back({next, 0});
    }
  }
  return deps;
}

}  // namespace drover::tasks
