// The checker's inputs as data: the history's and the fault log's JSON lines, the execution
// log's lines, the dumped tree's JSON, and the scan of node logs for crash reports.
#include <sstream>

#include "jepsen/checker.h"

namespace drover::jepsen {

Json toJson(const Request& r) {
  return {{"client", r.client},
          {"kind", r.kind},
          {"id", r.id},
          {"body", r.body},
          {"node", r.node},
          {"start_ms", r.start_ms},
          {"end_ms", r.end_ms},
          {"status", r.status},
          {"outcome", r.acknowledged() ? "ok"
                      : r.unknown()    ? "unknown"
                                       : "rejected"}};
}

std::optional<Request> requestFromJson(const Json& j) {
  if (!j.is_object()) return std::nullopt;
  try {
    Request r;
    r.client = j.at("client").get<int>();
    r.kind = j.at("kind").get<std::string>();
    r.id = j.at("id").get<std::string>();
    r.body = j.at("body");
    r.node = j.value("node", "");
    r.start_ms = j.at("start_ms").get<int64_t>();
    r.end_ms = j.at("end_ms").get<int64_t>();
    r.status = j.at("status").get<int>();
    return r;
  } catch (const Json::exception&) {
    return std::nullopt;
  }
}

std::optional<Execution> parseExecution(std::string_view line) {
  std::istringstream in{std::string(line)};
  Execution e;
  if (!(in >> e.id >> e.attempt >> e.worker >> e.token)) return std::nullopt;
  e.line = std::string(line);
  return e;
}

Json toJson(const Tree& tree) {
  Json statuses = Json::array();
  for (const auto& s : tree.statuses) {
    statuses.push_back({{"bucket", s.bucket},
                        {"id", s.id},
                        {"status", s.status ? tasks::toJson(*s.status) : Json(nullptr)}});
  }
  Json jobs = Json::array();
  for (const auto& [b, id] : tree.jobs) jobs.push_back({{"bucket", b}, {"id", id}});
  Json workers = Json::object();
  for (const auto& [id, info] : tree.workers) workers[id] = tasks::toJson(info);
  Json events = Json::array();
  for (const auto& r : tree.events) {
    Json list = Json::array();
    for (const auto& e : r.events) list.push_back(tasks::toJson(e));
    events.push_back({{"seq", r.seq}, {"events", list}});
  }
  return {{"protocol", tree.protocol},
          {"statuses", statuses},
          {"jobs", jobs},
          {"assignments", tree.assignments},
          {"workers", workers},
          {"election", tree.election},
          {"events", events},
          {"epoch", tree.epoch},
          {"bucket_sizes", tree.bucket_sizes}};
}

std::vector<std::string> scanLog(std::string_view text, size_t max) {
  static const std::vector<std::string_view> kPatterns = {"ERROR: AddressSanitizer",
                                                          "runtime error:",
                                                          "WARNING: ThreadSanitizer",
                                                          "double free",
                                                          "Aborted",
                                                          "free(): ",
                                                          "corrupted size",
                                                          "malloc(): "};
  std::vector<std::string> out;
  size_t pos = 0;
  while (pos < text.size() && out.size() < max) {
    size_t nl = text.find('\n', pos);
    if (nl == std::string_view::npos) nl = text.size();
    std::string_view line = text.substr(pos, nl - pos);
    for (auto p : kPatterns) {
      if (line.find(p) != std::string_view::npos) {
        std::string quote(line.substr(0, 200));
        if (line.size() > 200) quote += "...";
        out.push_back(std::move(quote));
        break;
      }
    }
    pos = nl + 1;
  }
  return out;
}

Json toJson(const Fault& f) {
  Json j = {{"kind", f.kind},
            {"target", f.target},
            {"start_ms", f.start_ms},
            {"heal_ms", f.heal_ms >= 0 ? Json(f.heal_ms) : Json(nullptr)}};
  if (!f.skipped.empty()) j["skipped"] = f.skipped;
  return j;
}

}  // namespace drover::jepsen
