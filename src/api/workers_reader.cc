#include "api/workers_reader.h"

#include <algorithm>
#include <string>
#include <vector>

#include "tasks/records.h"

namespace drover::api {

using coord::Code;

WorkersReader::WorkersReader(coord::Coordination& coord, const tasks::Layout& layout,
                             const StoreOptions& options)
    : coord_(coord), layout_(layout), options_(options) {}

StoreResult<std::optional<LeaderInfo>> WorkersReader::readLeader() {
  auto r = await(coord_.get(layout_.leader(), nullptr));
  if (!r) {
    if (r.error().code() == Code::kNoNode) return std::optional<LeaderInfo>();
    return tl::unexpected(fromCoord(r.error(), "reading the leader"));
  }
  auto j = tasks::parseJson(r->data);
  if (!j || !j->is_object() || !j->contains("id") || !(*j)["id"].is_string()) {
    return std::optional<LeaderInfo>();
  }
  LeaderInfo info;
  info.id = (*j)["id"].get<std::string>();
  if (auto e = j->find("epoch"); e != j->end() && e->is_number_integer()) {
    info.epoch = e->get<int64_t>();
  }
  return std::optional<LeaderInfo>(std::move(info));
}

StoreResult<WorkersView> WorkersReader::workers() {
  auto kids = await(coord_.children(layout_.workers(), nullptr));
  if (!kids) return tl::unexpected(fromCoord(kids.error(), "listing workers"));
  std::vector<std::string> names = std::move(*kids);
  std::sort(names.begin(), names.end());
  auto leader = readLeader();
  if (!leader) return tl::unexpected(leader.error());

  std::vector<coord::Future<coord::Node>> infos;
  std::vector<coord::Future<std::vector<std::string>>> running;
  for (const auto& w : names) {
    infos.push_back(coord_.get(layout_.worker(w), nullptr));
    running.push_back(coord_.children(layout_.assignmentsOf(w), nullptr));
  }
  WorkersView out;
  out.leader = *leader;
  for (size_t i = 0; i < names.size(); ++i) {
    auto info = await(infos[i]);
    auto assigned = await(running[i]);
    if (!info) {
      if (info.error().code() == Code::kNoNode) continue;  // left meanwhile
      return tl::unexpected(fromCoord(info.error(), "reading workers"));
    }
    WorkerView view;
    auto j = tasks::parseJson(info->data);
    auto decoded = j ? tasks::workerFromJson(*j) : std::nullopt;
    if (decoded) {
      view.info = std::move(*decoded);
    } else {
      view.info.id = names[i];  // unreadable registration: still list it
    }
    view.assigned = assigned ? assigned->size() : 0;
    view.running = std::min(view.assigned, static_cast<size_t>(std::max(0, view.info.slots)));
    view.leader = *leader && (*leader)->id == view.info.id;
    out.workers.push_back(std::move(view));
  }
  return out;
}

}  // namespace drover::api
