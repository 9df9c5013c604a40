// The routing routes of the REST API (docs/ROUTING.md, docs/API.md): queues (settings, pause,
// resume) and draining workers.

#include <fmt/format.h>

#include "api/http.h"
#include "api/http_util.h"
#include "base/ids.h"

namespace drover::api {

using tasks::Json;
using Request = httplib::Request;
using Response = httplib::Response;

namespace {

Json queueJson(const QueueView& q) {
  return {{"name", q.name},
          {"paused", q.settings.paused},
          {"max_running", q.settings.max_running},
          {"workers", q.workers}};
}

}  // namespace

void HttpServer::getQueues(const Request&, Response& res) {
  auto workers = store_.workers();
  if (!workers) return fail(res, workers.error());
  auto queues = store_.queues().list(workers->workers);
  if (!queues) return fail(res, queues.error());
  Json list = Json::array();
  for (const auto& q : *queues) list.push_back(queueJson(q));
  res.set_content(dumpJson({{"queues", std::move(list)}}), kJson);
}

void HttpServer::putQueue(const Request& req, Response& res) {
  if (!isJsonContentType(req.get_header_value("Content-Type"))) {
    return problem(res, 415, "Content-Type must be application/json");
  }
  auto body = parseBody(req.body, options_.max_json_depth);
  if (!body) return problem(res, 400, body.error());
  setQueue(req.matches[1], *body, res);
}

void HttpServer::pauseQueue(const Request& req, Response& res) {
  setQueue(req.matches[1], Json{{"paused", true}}, res);
}

void HttpServer::resumeQueue(const Request& req, Response& res) {
  setQueue(req.matches[1], Json{{"paused", false}}, res);
}

void HttpServer::setQueue(const std::string& name, const Json& patch, Response& res) {
  auto updated = store_.queues().update(name, patch);
  if (!updated) return fail(res, updated.error());
  auto workers = store_.workers();
  if (!workers) return fail(res, workers.error());
  QueueView view{name, *updated, {}};
  for (const auto& w : workers->workers) {
    const auto& q = w.info.queues;
    if (std::find(q.begin(), q.end(), name) != q.end()) view.workers.push_back(w.info.id);
  }
  res.set_content(dumpJson(queueJson(view)), kJson);
}

void HttpServer::drainWorker(const Request& req, Response& res) {
  const std::string id = req.matches[1];
  if (!base::isValidName(id)) return problem(res, 400, fmt::format("worker id {}", kIdRule));
  auto workers = store_.workers();
  if (!workers) return fail(res, workers.error());
  auto r = store_.queues().drain(id, workers->workers);
  if (!r) return fail(res, r.error());
  res.status = 202;
  res.set_content(dumpJson({{"worker", id}, {"draining", true}}), kJson);
}

void HttpServer::undrainWorker(const Request& req, Response& res) {
  const std::string id = req.matches[1];
  if (!base::isValidName(id)) return problem(res, 400, fmt::format("worker id {}", kIdRule));
  auto r = store_.queues().undrain(id);  // idempotent: not draining is the goal
  if (!r) return fail(res, r.error());
  res.set_content(dumpJson({{"worker", id}, {"draining", false}}), kJson);
}

std::optional<std::string> HttpServer::waitingFor(const tasks::TaskSpec& spec) {
  auto why = store_.queues().waitingFor(spec, [this] { return store_.workers(); });
  if (!why) return std::nullopt;
  return *why;
}

}  // namespace drover::api
