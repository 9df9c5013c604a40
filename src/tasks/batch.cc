#include "tasks/batch.h"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <limits>

namespace drover::tasks {

namespace {

constexpr int kVersion = 2;
constexpr size_t kTimeDigits = 11;
constexpr size_t kRandomDigits = 5;

std::string dump(const Json& j) { return j.dump(-1, ' ', false, Json::error_handler_t::replace); }

bool isLowerHex(std::string_view s) {
  return std::all_of(s.begin(), s.end(),
                     [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

template <typename T>
std::optional<T> parseNumber(std::string_view s, int base = 10) {
  T value{};
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), value, base);
  if (ec != std::errc() || end != s.data() + s.size() || s.empty()) return std::nullopt;
  return value;
}

// Calls f(lo, hi, value) for each run of consecutive keys of `m` whose values are equal.
template <typename V, typename F>
void forRuns(const std::map<uint32_t, V>& m, F&& f) {
  auto it = m.begin();
  while (it != m.end()) {
    uint32_t lo = it->first;
    uint32_t hi = lo;
    const V& value = it->second;
    auto next = std::next(it);
    while (next != m.end() && next->first == hi + 1 && next->second == value) {
      hi = next->first;
      ++next;
    }
    f(lo, hi, value);
    it = next;
  }
}

// Reads [[lo, hi], ...] (or plain indices) into `out`; false on bad data or a huge range.
template <typename F>
bool readRanges(const Json& arr, F&& out) {
  if (!arr.is_array()) return false;
  for (const auto& r : arr) {
    uint32_t lo = 0;
    uint32_t hi = 0;
    if (r.is_number_unsigned()) {
      lo = hi = r.get<uint32_t>();
    } else if (r.is_array() && r.size() == 2 && r[0].is_number_unsigned() &&
               r[1].is_number_unsigned()) {
      lo = r[0].get<uint32_t>();
      hi = r[1].get<uint32_t>();
    } else {
      return false;
    }
    if (hi < lo || hi - lo > 1'000'000) return false;
    for (uint32_t i = lo;; ++i) {
      out(i);
      if (i == hi) break;
    }
  }
  return true;
}

Json range(uint32_t lo, uint32_t hi) { return lo == hi ? Json(lo) : Json::array({lo, hi}); }

}  // namespace

// --- Names ---

std::string makeBatchName(int64_t submitted_ms, uint32_t random) {
  return fmt::format("{:011x}{:05x}", static_cast<uint64_t>(std::max<int64_t>(submitted_ms, 0)),
                     random & 0xfffffu);
}

bool isBatchName(std::string_view name) {
  return name.size() == kTimeDigits + kRandomDigits && isLowerHex(name);
}

int64_t batchTime(std::string_view batch_name) {
  auto ms = parseNumber<int64_t>(batch_name.substr(0, kTimeDigits), 16);
  return ms.value_or(0);
}

std::string generatedId(const TaskRef& ref) { return fmt::format("{}.{}", ref.batch, ref.index); }

std::optional<TaskRef> parseGeneratedId(std::string_view id) {
  auto dot = id.find('.');
  if (dot == std::string_view::npos || !isBatchName(id.substr(0, dot))) return std::nullopt;
  std::string_view digits = id.substr(dot + 1);
  if (digits.size() > 1 && digits.front() == '0') return std::nullopt;  // one spelling per id
  auto index = parseNumber<uint32_t>(digits);
  if (!index) return std::nullopt;
  return TaskRef{std::string(id.substr(0, dot)), *index};
}

std::string makeChunkName(int32_t epoch, int64_t n) {
  return fmt::format("c-{:010}-{:010}", std::max(epoch, 0), std::max<int64_t>(n, 0));
}

// --- Batch record ---

std::string encode(const BatchRecord& batch) {
  Json tasks = Json::array();
  for (size_t i = 0; i < batch.tasks.size(); ++i) {
    Json spec = toJson(batch.tasks[i]);
    if (spec["id"] == generatedId({batch.name, static_cast<uint32_t>(i)})) spec.erase("id");
    tasks.push_back(std::move(spec));
  }
  return dump({{"v", kVersion}, {"at", batch.submitted_at}, {"tasks", std::move(tasks)}});
}

std::optional<BatchRecord> decodeBatch(std::string_view name, std::string_view data) {
  auto j = parseJson(data);
  if (!j || !j->is_object() || j->value("v", 0) != kVersion) return std::nullopt;
  try {
    BatchRecord batch;
    batch.name = std::string(name);
    batch.submitted_at = j->value("at", int64_t{0});
    const Json& tasks = j->at("tasks");
    if (!tasks.is_array()) return std::nullopt;
    for (const Json& t : tasks) {
      Json spec = t;
      if (!spec.contains("id")) {
        spec["id"] = generatedId({batch.name, static_cast<uint32_t>(batch.tasks.size())});
      }
      auto decoded = specFromJson(spec);
      if (!decoded) return std::nullopt;
      batch.tasks.push_back(std::move(*decoded));
    }
    return batch;
  } catch (const Json::exception&) {
    return std::nullopt;
  }
}

// --- Pending state ---

PendingState::WaitingView::iterator& PendingState::WaitingView::iterator::operator++() {
  if (index_ == run_->second.last) {
    ++run_;
    index_ = run_ == end_ ? 0 : run_->first;
  } else {
    ++index_;
  }
  return *this;
}

void PendingState::stopWaiting(uint32_t index) {
  auto it = waiting_.upper_bound(index);
  if (it == waiting_.begin()) return;
  --it;
  const uint32_t first = it->first;
  Run& run = it->second;
  if (index > run.last) return;
  --waiting_count_;
  if (index < run.last) waiting_.emplace(index + 1, Run{run.last, run.w});
  if (index == first) {
    waiting_.erase(it);
  } else {
    run.last = index - 1;
  }
}

void PendingState::wait(uint32_t index, Waiting w) {
  held_.erase(index);
  stopWaiting(index);
  ++waiting_count_;
  // Joins the run ending at index - 1 and the one starting at index + 1 when their values match.
  auto after = waiting_.end();
  if (index != std::numeric_limits<uint32_t>::max()) {
    auto it = waiting_.find(index + 1);
    if (it != waiting_.end() && it->second.w == w) after = it;
  }
  auto before = waiting_.lower_bound(index);
  if (before != waiting_.begin()) {
    --before;
    if (before->second.last + 1 == index && before->second.w == w) {
      before->second.last = after == waiting_.end() ? index : after->second.last;
      if (after != waiting_.end()) waiting_.erase(after);
      return;
    }
  }
  uint32_t last = index;
  if (after != waiting_.end()) {
    last = after->second.last;
    waiting_.erase(after);
  }
  waiting_.emplace(index, Run{last, std::move(w)});
}

void PendingState::hold(uint32_t index, Held h) {
  stopWaiting(index);
  held_[index] = std::move(h);
}

void PendingState::erase(uint32_t index) {
  stopWaiting(index);
  held_.erase(index);
}

const Waiting* PendingState::waitingAt(uint32_t index) const {
  auto it = waiting_.upper_bound(index);
  if (it == waiting_.begin()) return nullptr;
  --it;
  return index <= it->second.last ? &it->second.w : nullptr;
}

const Held* PendingState::heldAt(uint32_t index) const {
  auto it = held_.find(index);
  return it == held_.end() ? nullptr : &it->second;
}

void PendingState::forgetChunk(std::string_view worker, std::string_view chunk) {
  std::erase_if(held_, [&](const auto& kv) {
    return kv.second.worker == worker && kv.second.chunk == chunk;
  });
}

std::string encode(const PendingState& state) {
  Json plain = Json::array();  // waiting with default values: ranges
  Json special = Json::array();
  state.forWaitingRuns([&](uint32_t lo, uint32_t hi, const Waiting& w) {
    if (w == Waiting{}) {
      plain.push_back(range(lo, hi));
      return;
    }
    Json j = {{"r", range(lo, hi)}, {"a", w.attempt}};
    if (w.not_before != 0) j["nb"] = w.not_before;
    if (!w.error.empty()) j["e"] = w.error;
    special.push_back(std::move(j));
  });
  Json held = Json::array();
  forRuns(state.held(), [&](uint32_t lo, uint32_t hi, const Held& h) {
    held.push_back({{"r", range(lo, hi)}, {"w", h.worker}, {"c", h.chunk}});
  });
  Json j = {{"v", kVersion}, {"w", std::move(plain)}};
  if (!special.empty()) j["ws"] = std::move(special);
  if (!held.empty()) j["h"] = std::move(held);
  return dump(j);
}

std::optional<PendingState> decodePending(std::string_view data) {
  auto j = parseJson(data);
  if (!j || !j->is_object() || j->value("v", 0) != kVersion) return std::nullopt;
  try {
    PendingState state;
    if (!readRanges(j->at("w"), [&](uint32_t i) { state.wait(i, Waiting{}); })) {
      return std::nullopt;
    }
    for (const Json& s : j->value("ws", Json::array())) {
      Waiting w{s.at("a").get<int>(), s.value("nb", int64_t{0}), s.value("e", "")};
      if (!readRanges(Json::array({s.at("r")}), [&](uint32_t i) { state.wait(i, w); })) {
        return std::nullopt;
      }
    }
    for (const Json& h : j->value("h", Json::array())) {
      Held held{h.at("w").get<std::string>(), h.at("c").get<std::string>()};
      if (!readRanges(Json::array({h.at("r")}), [&](uint32_t i) { state.hold(i, held); })) {
        return std::nullopt;
      }
    }
    return state;
  } catch (const Json::exception&) {
    return std::nullopt;
  }
}

// --- Chunk ---

const ChunkItem* Chunk::find(const TaskRef& ref) const {
  for (const auto& item : items) {
    if (item.ref == ref) return &item;
  }
  return nullptr;
}

Chunk Chunk::without(const std::vector<TaskRef>& refs) const {
  Chunk rest;
  for (const auto& item : items) {
    if (std::find(refs.begin(), refs.end(), item.ref) == refs.end()) rest.items.push_back(item);
  }
  return rest;
}

std::string encode(const Chunk& chunk) {
  Json items = Json::array();
  for (const auto& item : chunk.items) {
    Json j = {{"b", item.ref.batch}, {"i", item.ref.index}, {"a", item.attempt}};
    if (!item.id.empty() && item.id != generatedId(item.ref)) j["id"] = item.id;
    if (item.submitted_at != 0) j["at"] = item.submitted_at;
    if (!item.error.empty()) j["e"] = item.error;
    if (item.spec) {
      Json spec = toJson(*item.spec);
      spec.erase("id");  // the item's own id
      j["s"] = std::move(spec);
    }
    items.push_back(std::move(j));
  }
  return dump({{"v", kVersion}, {"items", std::move(items)}});
}

std::optional<Chunk> decodeChunk(std::string_view data) {
  auto j = parseJson(data);
  if (!j || !j->is_object() || j->value("v", 0) != kVersion) return std::nullopt;
  try {
    Chunk chunk;
    for (const Json& i : j->at("items")) {
      ChunkItem item;
      item.ref.batch = i.at("b").get<std::string>();
      item.ref.index = i.at("i").get<uint32_t>();
      if (!isBatchName(item.ref.batch)) return std::nullopt;
      item.attempt = i.value("a", 1);
      item.submitted_at = i.value("at", int64_t{0});
      item.error = i.value("e", "");
      item.id = i.value("id", generatedId(item.ref));
      if (i.contains("s")) {
        Json spec = i.at("s");
        if (!spec.contains("id")) spec["id"] = item.id;
        item.spec = specFromJson(spec);
        if (!item.spec) return std::nullopt;
      }
      chunk.items.push_back(std::move(item));
    }
    return chunk;
  } catch (const Json::exception&) {
    return std::nullopt;
  }
}

// --- Result record ---

const Outcome* ResultRecord::find(uint32_t index) const {
  for (const auto& o : outcomes) {
    if (o.index == index) return &o;
  }
  return nullptr;
}

std::string encode(const ResultRecord& record) {
  Json outcomes = Json::array();
  for (const auto& o : record.outcomes) {
    Json j = {{"i", o.index}, {"s", stateName(o.state)}, {"a", o.attempt}};
    if (!o.id.empty()) j["id"] = o.id;
    if (!o.worker.empty()) j["w"] = o.worker;
    if (o.started_at != 0) j["st"] = o.started_at;
    j["f"] = o.finished_at;
    if (!o.error.empty()) j["e"] = o.error.size() > 4096 ? o.error.substr(0, 4096) : o.error;
    if (!o.result.is_null()) {
      std::string r = dump(o.result);
      j["r"] = r.size() <= kMaxResultBytes
                   ? o.result
                   : Json{{"truncated", true}, {"note", "the result was too large to record"}};
    }
    outcomes.push_back(std::move(j));
  }
  return dump({{"v", kVersion}, {"o", std::move(outcomes)}});
}

std::optional<ResultRecord> decodeResults(std::string_view data) {
  auto j = parseJson(data);
  if (!j || !j->is_object() || j->value("v", 0) != kVersion) return std::nullopt;
  try {
    ResultRecord record;
    for (const Json& o : j->at("o")) {
      auto state = parseState(o.at("s").get<std::string>());
      // pending: the attempt's end when the task waits again (a retry), not a final state.
      if (!state || !(isTerminal(*state) || *state == State::kPending)) return std::nullopt;
      Outcome out;
      out.index = o.at("i").get<uint32_t>();
      out.id = o.value("id", "");
      out.state = *state;
      out.attempt = o.value("a", 0);
      out.worker = o.value("w", "");
      out.started_at = o.value("st", int64_t{0});
      out.finished_at = o.value("f", int64_t{0});
      out.error = o.value("e", "");
      out.result = o.value("r", Json());
      record.outcomes.push_back(std::move(out));
    }
    return record;
  } catch (const Json::exception&) {
    return std::nullopt;
  }
}

std::string resultPrefix(const ResultRecord& record) {
  uint32_t lo = UINT32_MAX;
  uint32_t hi = 0;
  for (const auto& o : record.outcomes) {
    lo = std::min(lo, o.index);
    hi = std::max(hi, o.index);
  }
  if (record.outcomes.empty()) lo = 0;
  return fmt::format("r-{}-{}-", lo, hi);
}

std::optional<std::pair<uint32_t, uint32_t>> resultRange(std::string_view child_name) {
  if (!child_name.starts_with("r-")) return std::nullopt;
  std::string_view rest = child_name.substr(2);
  auto a = rest.find('-');
  if (a == std::string_view::npos) return std::nullopt;
  auto b = rest.find('-', a + 1);
  if (b == std::string_view::npos) return std::nullopt;
  auto lo = parseNumber<uint32_t>(rest.substr(0, a));
  auto hi = parseNumber<uint32_t>(rest.substr(a + 1, b - a - 1));
  if (!lo || !hi || *hi < *lo) return std::nullopt;
  return std::pair{*lo, *hi};
}

std::optional<uint64_t> resultSeq(std::string_view child_name) {
  if (!resultRange(child_name)) return std::nullopt;
  auto dash = child_name.rfind('-');
  return parseNumber<uint64_t>(child_name.substr(dash + 1));
}

std::vector<std::string> resultsInOrder(std::vector<std::string> children) {
  std::vector<std::pair<uint64_t, std::string>> keyed;
  for (auto& c : children) {
    if (auto seq = resultSeq(c)) keyed.emplace_back(*seq, std::move(c));
  }
  std::sort(keyed.begin(), keyed.end());
  std::vector<std::string> out;
  out.reserve(keyed.size());
  for (auto& [seq, c] : keyed) out.push_back(std::move(c));
  return out;
}

// --- Id entry ---

std::string encode(const TaskRef& ref) { return dump({{"b", ref.batch}, {"i", ref.index}}); }

std::optional<TaskRef> decodeRef(std::string_view data) {
  auto j = parseJson(data);
  if (!j || !j->is_object()) return std::nullopt;
  try {
    TaskRef ref{j->at("b").get<std::string>(), j->at("i").get<uint32_t>()};
    if (!isBatchName(ref.batch)) return std::nullopt;
    return ref;
  } catch (const Json::exception&) {
    return std::nullopt;
  }
}

// --- Waiting count ---

std::string encode(const WaitingCount& count) {
  return dump({{"waiting", count.waiting},
               {"at", count.at},
               {"delayed", count.delayed},
               {"held", count.held},
               {"blocked", count.blocked}});
}

std::optional<WaitingCount> decodeWaiting(std::string_view data) {
  auto j = parseJson(data);
  if (!j || !j->is_object()) return std::nullopt;
  try {
    // delayed, held and blocked came later: a count written without them reads as zero of each.
    return WaitingCount{j->at("waiting").get<uint64_t>(), j->at("at").get<int64_t>(),
                        j->value("delayed", uint64_t{0}), j->value("held", uint64_t{0}),
                        j->value("blocked", uint64_t{0})};
  } catch (const Json::exception&) {
    return std::nullopt;
  }
}

// --- Events ---

std::vector<TaskEvent> EventGroup::expand() const {
  std::vector<TaskEvent> out;
  out.reserve(indices.size());
  for (uint32_t i : indices) {
    auto id = ids.find(i);
    out.push_back(TaskEvent{id != ids.end() ? id->second : generatedId({batch, i}), state, attempt,
                            worker, at});
  }
  return out;
}

Json toJson(const EventGroup& g) {
  std::map<uint32_t, bool> set;
  for (uint32_t i : g.indices) set[i] = true;
  Json ranges = Json::array();
  forRuns(set, [&](uint32_t lo, uint32_t hi, bool) { ranges.push_back(range(lo, hi)); });
  Json j = {{"b", g.batch},
            {"r", std::move(ranges)},
            {"s", stateName(g.state)},
            {"a", g.attempt},
            {"at", g.at}};
  if (!g.worker.empty()) j["w"] = g.worker;
  if (!g.ids.empty()) {
    Json ids = Json::object();
    for (const auto& [i, id] : g.ids) ids[std::to_string(i)] = id;
    j["ids"] = std::move(ids);
  }
  return j;
}

std::optional<EventGroup> eventGroupFromJson(const Json& j) {
  try {
    EventGroup g;
    g.batch = j.at("b").get<std::string>();
    auto state = parseState(j.at("s").get<std::string>());
    if (!state || !isBatchName(g.batch)) return std::nullopt;
    g.state = *state;
    g.attempt = j.value("a", 0);
    g.at = j.value("at", int64_t{0});
    g.worker = j.value("w", "");
    if (!readRanges(j.at("r"), [&](uint32_t i) { g.indices.push_back(i); })) return std::nullopt;
    const Json ids = j.value("ids", Json::object());
    for (const auto& [k, v] : ids.items()) {
      auto i = parseNumber<uint32_t>(k);
      if (!i) return std::nullopt;
      g.ids[*i] = v.get<std::string>();
    }
    return g;
  } catch (const Json::exception&) {
    return std::nullopt;
  }
}

}  // namespace drover::tasks
