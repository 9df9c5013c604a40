#include "scheduler/packed_record.h"

#include <limits>
#include <map>

namespace drover::scheduler {

using tasks::Json;

namespace {

constexpr int kRecordVersion = 2;  // tasks/batch.cc writes this version

std::string dump(const Json& j) { return j.dump(-1, ' ', false, Json::error_handler_t::replace); }

}  // namespace

std::optional<PackedRecord> PackedRecord::decode(std::string_view name, std::string_view data) {
  auto j = tasks::parseJson(data);
  if (!j || !j->is_object() || j->value("v", 0) != kRecordVersion) return std::nullopt;
  try {
    PackedRecord out;
    out.name_ = std::string(name);
    out.submitted_at_ = j->value("at", int64_t{0});
    Json& tasks = j->at("tasks");
    if (!tasks.is_array()) return std::nullopt;
    if (tasks.size() > std::numeric_limits<uint32_t>::max() / 2) return std::nullopt;
    out.tasks_.reserve(tasks.size());
    out.spec_ends_.reserve(tasks.size());
    std::map<Route, uint32_t> route_at;
    bool keeps_ids = false;  // a client-chosen id was seen
    for (Json& t : tasks) {
      if (!t.is_object()) return std::nullopt;
      const auto index = static_cast<uint32_t>(out.tasks_.size());
      const std::string generated = tasks::generatedId({out.name_, index});
      if (auto id = t.find("id"); id != t.end() && *id == generated) t.erase(id);
      out.specs_ += dump(t);
      if (out.specs_.size() > std::numeric_limits<uint32_t>::max()) return std::nullopt;
      out.spec_ends_.push_back(static_cast<uint32_t>(out.specs_.size()));
      if (!t.contains("id")) t["id"] = generated;
      auto spec = tasks::specFromJson(t);
      if (!spec) return std::nullopt;

      // Submit allows 0..9 and 1..100; a record beyond what the fields hold is not Drover's.
      if (spec->priority < std::numeric_limits<int16_t>::min() ||
          spec->priority > std::numeric_limits<int16_t>::max() || spec->max_attempts < 0 ||
          spec->max_attempts > std::numeric_limits<uint16_t>::max()) {
        return std::nullopt;
      }
      Task task;
      task.priority = static_cast<int16_t>(spec->priority);
      task.max_attempts = static_cast<uint16_t>(spec->max_attempts);
      task.flags =
          (spec->callback_url.empty() ? 0 : kCallback) | (spec->depends_on.empty() ? 0 : kDepends);
      Route route = routeOf(*spec);
      if (!out.routes_.empty() && out.routes_.back() == route) {
        task.route = static_cast<uint32_t>(out.routes_.size() - 1);
      } else {
        auto [at, fresh] = route_at.try_emplace(route, static_cast<uint32_t>(out.routes_.size()));
        if (fresh) out.routes_.push_back(std::move(route));
        task.route = at->second;
      }
      out.tasks_.push_back(task);

      if (spec->id != generated) {
        if (!keeps_ids) out.id_ends_.assign(index, 0);  // the tasks before: generated ids
        keeps_ids = true;
        out.ids_ += spec->id;
      }
      if (keeps_ids) out.id_ends_.push_back(static_cast<uint32_t>(out.ids_.size()));
    }
    out.specs_.shrink_to_fit();
    out.ids_.shrink_to_fit();
    out.routes_.shrink_to_fit();
    return out;
  } catch (const Json::exception&) {
    return std::nullopt;
  }
}

PackedRecord PackedRecord::pack(const tasks::BatchRecord& record) {
  auto packed = decode(record.name, tasks::encode(record));
  return packed ? std::move(*packed) : PackedRecord{};
}

std::string_view PackedRecord::encoded(uint32_t index) const {
  const uint32_t begin = index == 0 ? 0 : spec_ends_[index - 1];
  return std::string_view(specs_).substr(begin, spec_ends_[index] - begin);
}

bool PackedRecord::customId(uint32_t index) const {
  if (id_ends_.empty()) return false;
  const uint32_t begin = index == 0 ? 0 : id_ends_[index - 1];
  return id_ends_[index] > begin;
}

std::string PackedRecord::id(uint32_t index) const {
  if (!customId(index)) return tasks::generatedId({name_, index});
  const uint32_t begin = index == 0 ? 0 : id_ends_[index - 1];
  return ids_.substr(begin, id_ends_[index] - begin);
}

size_t PackedRecord::specBytes(uint32_t index) const {
  size_t bytes = encoded(index).size();
  if (customId(index)) return bytes;
  // A generated id ("<batch>.<index>") is left out of the stored spec; the chunk's copy carries
  // it as "id":"...", (8 bytes besides the id). Counted, not formatted: this is the assign path.
  size_t digits = 1;
  for (uint32_t n = index; n >= 10; n /= 10) ++digits;
  return bytes + name_.size() + 1 + digits + 8;
}

std::optional<tasks::TaskSpec> PackedRecord::spec(uint32_t index) const {
  auto j = tasks::parseJson(encoded(index));
  if (!j || !j->is_object()) return std::nullopt;
  if (!j->contains("id")) (*j)["id"] = tasks::generatedId({name_, index});
  return tasks::specFromJson(*j);
}

}  // namespace drover::scheduler
