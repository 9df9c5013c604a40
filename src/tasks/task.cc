#include "tasks/task.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>

#include "base/clock.h"
#include "base/ids.h"
#include "base/rfc3339.h"
#include "tasks/callback_url.h"

namespace drover::tasks {
namespace {

constexpr std::array<std::string_view, 7> kStateNames = {
    "pending", "assigned", "running", "succeeded", "failed", "cancelled", "waiting"};

tl::unexpected<ValidationError> invalid(std::string field, std::string detail) {
  return tl::unexpected(ValidationError{std::move(field), std::move(detail)});
}

// Reads an optional integer field in [lo, hi]; a float with no fraction counts as an integer.
tl::expected<void, ValidationError> readInt(const Json& body, const char* key, int lo, int hi,
                                            int& out) {
  auto it = body.find(key);
  if (it == body.end()) return {};
  if (!it->is_number_integer() && !it->is_number_unsigned()) {
    return invalid(key, fmt::format("must be an integer from {} to {}", lo, hi));
  }
  auto v = it->get<int64_t>();
  if (v < lo || v > hi) return invalid(key, fmt::format("must be from {} to {}", lo, hi));
  out = static_cast<int>(v);
  return {};
}

template <class T>
T valueOr(const Json& j, const char* key, T fallback) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return fallback;
  return it->get<T>();
}

// `run_at` (RFC 3339) or `delay_s` (seconds from now), at most kMaxDelayMs ahead.
tl::expected<void, ValidationError> readRunAt(const Json& body, int64_t now, int64_t& out) {
  auto at = body.find("run_at");
  auto delay = body.find("delay_s");
  const bool has_at = at != body.end() && !at->is_null();
  const bool has_delay = delay != body.end() && !delay->is_null();
  if (has_at && has_delay) return invalid("run_at", "give run_at or delay_s, not both");
  if (has_at) {
    auto ms = at->is_string() ? base::parseRfc3339(at->get<std::string>()) : std::nullopt;
    if (!ms) {
      return invalid("run_at", "must be an RFC 3339 time with a zone, e.g. 2026-01-02T15:04:05Z");
    }
    if (*ms - now > kMaxDelayMs) return invalid("run_at", "is more than a year ahead");
    out = std::max<int64_t>(*ms, 1);  // a time in the past is due now (still recorded)
  } else if (has_delay) {
    if (!delay->is_number()) return invalid("delay_s", "must be a number of seconds");
    const double s = delay->get<double>();
    if (!(s >= 0 && s * 1000 <= static_cast<double>(kMaxDelayMs))) {
      return invalid("delay_s", "must be from 0 to a year (31622400)");
    }
    out = now + static_cast<int64_t>(s * 1000);
  }
  return {};
}

}  // namespace

bool sameTask(const TaskSpec& a, const TaskSpec& b) {
  TaskSpec x = a;
  x.run_at = b.run_at;
  return x == b;
}

std::string_view stateName(State state) { return kStateNames[static_cast<size_t>(state)]; }

std::optional<State> parseState(std::string_view name) {
  for (size_t i = 0; i < kStateNames.size(); ++i) {
    if (kStateNames[i] == name) return static_cast<State>(i);
  }
  return std::nullopt;
}

tl::expected<RetryPolicy, ValidationError> parseRetryPolicy(const Json& j) {
  if (!j.is_object()) {
    return invalid("retry", "must be an object {backoff_base_s, backoff_cap_s, jitter}");
  }
  RetryPolicy p;
  for (const auto& [key, value] : j.items()) {
    if (key != "backoff_base_s" && key != "backoff_cap_s" && key != "jitter") {
      return invalid("retry." + key, "unknown field");
    }
    if (!value.is_number()) return invalid("retry." + key, "must be a number");
  }
  p.backoff_base_s = j.value("backoff_base_s", p.backoff_base_s);
  p.backoff_cap_s = j.value("backoff_cap_s", std::max(p.backoff_cap_s, p.backoff_base_s));
  p.jitter = j.value("jitter", p.jitter);
  if (!(p.backoff_base_s > 0 && p.backoff_base_s <= 86400)) {
    return invalid("retry.backoff_base_s", "must be more than 0 and at most 86400 seconds");
  }
  if (!(p.backoff_cap_s >= p.backoff_base_s && p.backoff_cap_s <= 86400)) {
    return invalid("retry.backoff_cap_s", "must be from backoff_base_s to 86400 seconds");
  }
  if (!(p.jitter >= 0 && p.jitter <= 1)) return invalid("retry.jitter", "must be from 0 to 1");
  return p;
}

tl::expected<TaskSpec, ValidationError> parseSpec(const Json& body, const SubmitLimits& limits,
                                                  bool (*known_type)(std::string_view),
                                                  int64_t now_ms) {
  if (!body.is_object()) return invalid("", "a task must be a JSON object");
  static constexpr std::array<std::string_view, 13> kKnown = {
      "id",     "type",         "payload", "priority", "max_attempts", "timeout_s", "queue",
      "labels", "callback_url", "retry",   "run_at",   "delay_s",      "depends_on"};
  for (const auto& [key, value] : body.items()) {
    if (std::find(kKnown.begin(), kKnown.end(), key) == kKnown.end()) {
      return invalid(key, "unknown field");
    }
  }
  TaskSpec spec;
  if (auto it = body.find("id"); it != body.end() && !it->is_null()) {
    if (!it->is_string()) return invalid("id", "must be a string");
    spec.id = it->get<std::string>();
    if (!base::isValidName(spec.id)) {
      return invalid("id", "must be 1-128 characters of A-Z a-z 0-9 . _ - and not . or ..");
    }
  } else {
    spec.id = base::randomHex(16);
  }
  auto type = body.find("type");
  if (type == body.end() || !type->is_string()) return invalid("type", "is required (a string)");
  spec.type = type->get<std::string>();
  if (spec.type.size() > 64 || !base::isValidName(spec.type)) {
    return invalid("type", "must be 1-64 characters of A-Z a-z 0-9 . _ -");
  }
  if (known_type != nullptr && !known_type(spec.type)) {
    return invalid("type", fmt::format("unknown task type '{}'", spec.type));
  }
  if (auto it = body.find("payload"); it != body.end() && !it->is_null()) {
    spec.payload = *it;
    size_t size = spec.payload.dump().size();
    if (size > limits.max_payload_bytes) {
      return invalid("payload",
                     fmt::format("is {} bytes; the limit is {}", size, limits.max_payload_bytes));
    }
  }
  if (auto r = readInt(body, "priority", 0, 9, spec.priority); !r) return tl::unexpected(r.error());
  if (auto r = readInt(body, "max_attempts", 1, 100, spec.max_attempts); !r) {
    return tl::unexpected(r.error());
  }
  if (auto it = body.find("timeout_s"); it != body.end() && !it->is_null()) {
    if (!it->is_number()) return invalid("timeout_s", "must be a number of seconds");
    spec.timeout_s = it->get<double>();
    if (!(spec.timeout_s >= 0 && spec.timeout_s <= 86400)) {
      return invalid("timeout_s", "must be from 0 (none) to 86400");
    }
  }
  if (auto it = body.find("queue"); it != body.end() && !it->is_null()) {
    if (!it->is_string() || it->get<std::string>().size() > 64 ||
        !base::isValidName(it->get<std::string>())) {
      return invalid("queue", "must be 1-64 characters of A-Z a-z 0-9 . _ -");
    }
    spec.queue = it->get<std::string>();
  }
  if (auto it = body.find("labels"); it != body.end() && !it->is_null()) {
    if (!it->is_array()) return invalid("labels", "must be an array of label names");
    if (it->size() > kMaxTaskLabels) {
      return invalid("labels", fmt::format("at most {} labels", kMaxTaskLabels));
    }
    for (const auto& l : *it) {
      if (!l.is_string() || l.get<std::string>().size() > 64 ||
          !base::isValidName(l.get<std::string>())) {
        return invalid("labels", "each label must be 1-64 characters of A-Z a-z 0-9 . _ -");
      }
      spec.labels.push_back(l.get<std::string>());
    }
    std::sort(spec.labels.begin(), spec.labels.end());
    spec.labels.erase(std::unique(spec.labels.begin(), spec.labels.end()), spec.labels.end());
  }
  if (auto it = body.find("callback_url"); it != body.end() && !it->is_null()) {
    if (!it->is_string()) return invalid("callback_url", "must be a string (an http(s) URL)");
    spec.callback_url = it->get<std::string>();
    if (auto url = parseCallbackUrl(spec.callback_url); !url) {
      return invalid("callback_url", url.error());
    }
  }
  if (auto it = body.find("retry"); it != body.end() && !it->is_null()) {
    auto policy = parseRetryPolicy(*it);
    if (!policy) return tl::unexpected(policy.error());
    spec.retry = *policy;
  }
  if (auto r = readRunAt(body, now_ms == 0 ? base::wallMillis() : now_ms, spec.run_at); !r) {
    return tl::unexpected(r.error());
  }
  if (auto it = body.find("depends_on"); it != body.end() && !it->is_null()) {
    // Shape only here; references and cycles are tasks/dag.h's, existence the store's.
    if (!it->is_array()) return invalid("depends_on", "must be an array of task ids");
    if (it->size() > kMaxDependsOn) {
      return invalid("depends_on", fmt::format("at most {} dependencies", kMaxDependsOn));
    }
    for (const auto& d : *it) {
      const std::string ref = d.is_string() ? d.get<std::string>() : std::string();
      const bool index_ref = ref.size() > 1 && ref[0] == '#';
      if (!index_ref && !base::isValidName(ref)) {
        return invalid("depends_on",
                       "each entry must be a task id (1-128 characters of A-Z a-z 0-9 . _ -) "
                       "or #N (the batch's N-th task)");
      }
      spec.depends_on.push_back(ref);
    }
  }
  return spec;
}

Json toJson(const TaskSpec& spec) {
  Json j = {{"id", spec.id},
            {"type", spec.type},
            {"payload", spec.payload},
            {"priority", spec.priority},
            {"max_attempts", spec.max_attempts}};
  if (spec.timeout_s > 0) j["timeout_s"] = spec.timeout_s;
  j["queue"] = spec.queue;
  j["labels"] = spec.labels;
  if (!spec.callback_url.empty()) j["callback_url"] = spec.callback_url;
  if (spec.run_at != 0) j["run_at"] = base::formatRfc3339(spec.run_at);
  if (!spec.depends_on.empty()) j["depends_on"] = spec.depends_on;
  if (spec.retry) j["retry"] = toJson(*spec.retry);
  return j;
}

Json toJson(const RetryPolicy& p) {
  return {{"backoff_base_s", p.backoff_base_s},
          {"backoff_cap_s", p.backoff_cap_s},
          {"jitter", p.jitter}};
}

Json toJson(const AttemptRecord& a) {
  Json j = {{"attempt", a.attempt}, {"state", stateName(a.state)}};
  j["worker"] = a.worker.empty() ? Json() : Json(a.worker);
  j["started_at"] = a.started_at == 0 ? Json() : Json(a.started_at);
  j["finished_at"] = a.finished_at == 0 ? Json() : Json(a.finished_at);
  j["error"] = a.error.empty() ? Json() : Json(a.error);
  return j;
}

Json toJson(const TaskStatus& status) {
  Json j = toJson(status.spec);
  j["state"] = stateName(status.state);
  j["attempts"] = status.attempts;
  j["worker"] = status.worker.empty() ? Json() : Json(status.worker);
  j["result"] = status.result;
  j["error"] = status.error.empty() ? Json() : Json(status.error);
  j["submitted_at"] = status.submitted_at;
  j["started_at"] = status.started_at == 0 ? Json() : Json(status.started_at);
  j["finished_at"] = status.finished_at == 0 ? Json() : Json(status.finished_at);
  if (!status.history.empty()) {
    Json h = Json::array();
    for (const auto& a : status.history) h.push_back(toJson(a));
    j["history"] = std::move(h);
  }
  if (!status.waiting_for.empty()) j["waiting_for"] = status.waiting_for;
  return j;
}

std::optional<TaskSpec> specFromJson(const Json& j) {
  try {
    TaskSpec spec;
    spec.id = j.at("id").get<std::string>();
    spec.type = j.at("type").get<std::string>();
    spec.payload = j.value("payload", Json::object());
    spec.priority = j.value("priority", 5);
    spec.max_attempts = j.value("max_attempts", 3);
    spec.timeout_s = valueOr<double>(j, "timeout_s", 0);
    spec.queue = valueOr<std::string>(j, "queue", "default");
    spec.labels = j.value("labels", std::vector<std::string>{});
    spec.callback_url = valueOr<std::string>(j, "callback_url", "");
    if (auto it = j.find("retry"); it != j.end() && !it->is_null()) {
      auto policy = parseRetryPolicy(*it);
      if (!policy) return std::nullopt;
      spec.retry = *policy;
    }
    if (auto it = j.find("run_at"); it != j.end() && !it->is_null()) {
      auto ms = base::parseRfc3339(it->get<std::string>());
      if (!ms) return std::nullopt;
      spec.run_at = *ms;
    }
    spec.depends_on = j.value("depends_on", std::vector<std::string>{});
    return spec;
  } catch (const Json::exception&) {
    return std::nullopt;
  }
}

std::optional<TaskStatus> statusFromJson(const Json& j) {
  try {
    auto spec = specFromJson(j);
    if (!spec) return std::nullopt;
    auto state = parseState(j.at("state").get<std::string>());
    if (!state) return std::nullopt;
    TaskStatus s;
    s.spec = std::move(*spec);
    s.state = *state;
    s.attempts = j.value("attempts", 0);
    s.worker = valueOr<std::string>(j, "worker", "");
    s.result = j.value("result", Json());
    s.error = valueOr<std::string>(j, "error", "");
    s.submitted_at = valueOr<int64_t>(j, "submitted_at", 0);
    s.started_at = valueOr<int64_t>(j, "started_at", 0);
    s.finished_at = valueOr<int64_t>(j, "finished_at", 0);
    return s;
  } catch (const Json::exception&) {
    return std::nullopt;
  }
}

std::optional<Json> parseJson(std::string_view data) {
  Json j = Json::parse(data, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return std::nullopt;
  return j;
}

}  // namespace drover::tasks
