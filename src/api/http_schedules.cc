// The schedule routes of the REST API (docs/WORKFLOWS.md "Schedules", docs/API.md):
// POST/GET /v1/schedules, GET/DELETE /v1/schedules/{id}.

#include <fmt/format.h>

#include <ctime>

#include "api/http.h"
#include "api/http_util.h"
#include "api/schedule_store.h"
#include "base/ids.h"

namespace drover::api {

using tasks::Json;
using Request = httplib::Request;
using Response = httplib::Response;

namespace {

std::string rfc3339(int64_t unix_s) {
  std::time_t t = static_cast<std::time_t>(unix_s);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

Json scheduleJson(const ScheduleView& v) {
  Json j = scheduler::toJson(v.spec);
  j["next_firing"] = v.next ? Json{{"slot", *v.next}, {"at", rfc3339(*v.next)}} : Json(nullptr);
  j["last_firing"] = v.state.last_slot ? Json{{"slot", *v.state.last_slot},
                                              {"at", rfc3339(*v.state.last_slot)},
                                              {"task", v.state.last_task}}
                                       : Json(nullptr);
  j["fired"] = v.state.fired;
  j["skipped"] = v.state.skipped;
  return j;
}

}  // namespace

void HttpServer::postSchedule(const Request& req, Response& res) {
  if (!options_.schedules) return problem(res, 503, "schedules are not served by this node");
  if (!isJsonContentType(req.get_header_value("Content-Type"))) {
    return problem(res, 415, "Content-Type must be application/json");
  }
  auto body = parseBody(req.body, options_.max_json_depth);
  if (!body) return problem(res, 400, body.error());
  auto spec = scheduler::parseSchedule(
      *body, [this](const Json& task) -> tl::expected<Json, tasks::ValidationError> {
        auto s = parseTask(task);
        if (!s) return tl::unexpected(s.error());
        if (s->run_at != 0) {  // an absolute time in a template would hold every firing
          return tl::unexpected(tasks::ValidationError{
              "run_at", "a schedule's task takes no run_at or delay_s: the schedule says when"});
        }
        return tasks::toJson(*s);
      });
  if (!spec) {
    const auto& e = spec.error();
    return problem(res, 400, e.field.empty() ? e.detail : fmt::format("{}: {}", e.field, e.detail));
  }
  auto r = options_.schedules->create(*spec);
  if (!r) return fail(res, r.error());
  res.status = r->created ? 201 : 200;
  res.set_header("Location", "/v1/schedules/" + spec->id);
  res.set_content(dumpJson(scheduleJson(r->view)), kJson);
}

void HttpServer::listSchedules(const Request&, Response& res) {
  if (!options_.schedules) return problem(res, 503, "schedules are not served by this node");
  auto r = options_.schedules->list();
  if (!r) return fail(res, r.error());
  Json list = Json::array();
  for (const auto& v : *r) list.push_back(scheduleJson(v));
  res.set_content(dumpJson({{"schedules", std::move(list)}}), kJson);
}

void HttpServer::getSchedule(const Request& req, Response& res) {
  if (!options_.schedules) return problem(res, 503, "schedules are not served by this node");
  const std::string id = req.matches[1];
  if (!base::isValidName(id)) return problem(res, 400, fmt::format("schedule id {}", kIdRule));
  auto r = options_.schedules->get(id);
  if (!r) return fail(res, r.error());
  res.set_content(dumpJson(scheduleJson(*r)), kJson);
}

void HttpServer::deleteSchedule(const Request& req, Response& res) {
  if (!options_.schedules) return problem(res, 503, "schedules are not served by this node");
  const std::string id = req.matches[1];
  if (!base::isValidName(id)) return problem(res, 400, fmt::format("schedule id {}", kIdRule));
  auto r = options_.schedules->remove(id);
  if (!r) return fail(res, r.error());
  res.status = 204;
}

}  // namespace drover::api
