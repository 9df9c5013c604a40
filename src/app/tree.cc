#include "app/tree.h"

#include <fmt/format.h>

#include "coord/paths.h"

namespace drover::app {

namespace {

constexpr int kProtocol = 2;

// The protocol recorded in /protocol: "" when the marker is missing.
coord::Result<std::string> marker(coord::Coordination& c, const tasks::Layout& layout) {
  auto node = c.get(layout.protocol(), nullptr).get();
  if (node) return node->data.empty() ? std::string("?") : node->data;
  if (node.error().code() == coord::Code::kNoNode) return std::string();
  return tl::make_unexpected(node.error());
}

coord::Result<bool> exists(coord::Coordination& c, const std::string& path) {
  auto stat = c.exists(path, nullptr).get();
  if (!stat) return tl::make_unexpected(stat.error());
  return stat->has_value();
}

coord::Status ensureAll(coord::Coordination& c, const std::vector<std::string>& dirs,
                        const std::string& epoch) {
  // The last directory created tells that all of them exist.
  auto last = exists(c, dirs.back());
  if (!last) return tl::make_unexpected(last.error());
  if (!*last) {
    for (const auto& dir : dirs) {
      if (auto st = coord::ensurePath(c, dir); !st) return st;
    }
  }
  return coord::ensurePath(c, epoch);
}

}  // namespace

coord::Result<std::string> prepareTree(coord::Coordination& c, const tasks::Layout& layout) {
  auto found = marker(c, layout);
  if (!found) return tl::make_unexpected(found.error());
  const std::string wanted = std::to_string(kProtocol);
  if (!found->empty() && *found != wanted) {
    return fmt::format(
        "the znode tree under {} was written by task protocol {} ({} holds it), not {}; use a "
        "fresh --zk-root",
        layout.root(), *found, layout.protocol(), wanted);
  }
  if (found->empty()) {
    // No marker: a tree of the first protocol (it never wrote one), or a new tree.
    for (const auto& v1 : {layout.jobs(), layout.statuses()}) {
      auto there = exists(c, v1);
      if (!there) return tl::make_unexpected(there.error());
      if (*there) {
        return fmt::format(
            "the znode tree under {} was written by task protocol 1 (it has {}), which was "
            "removed; protocol {} keeps tasks elsewhere and cannot run on it: use a fresh "
            "--zk-root",
            layout.root(), v1, wanted);
      }
    }
  }
  if (auto st = ensureAll(c, layout.directories(), layout.epoch()); !st) {
    return tl::make_unexpected(st.error());
  }
  if (found->empty()) {
    // Written last: a tree with the marker has every directory.
    auto made = c.create({layout.protocol(), wanted, coord::CreateMode::kPersistent, {}}).get();
    if (!made && made.error().code() != coord::Code::kNodeExists) {
      return tl::make_unexpected(made.error());
    }
  }
  return std::string();
}

}  // namespace drover::app
