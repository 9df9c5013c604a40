#include "api/http.h"

#include <fmt/format.h>
#include <netdb.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstring>

#include "api/http_util.h"
#include "api/openapi.h"
#include "api/tls.h"
#include "base/clock.h"
#include "base/ids.h"
#include "base/metrics.h"

namespace drover::api {
namespace {

using tasks::Json;
using Request = httplib::Request;
using Response = httplib::Response;

constexpr const char* kProblemJson = "application/problem+json";

std::string_view reason(int status) {
  switch (status) {
    case 200:
      return "OK";
    case 202:
      return "Accepted";
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 408:
      return "Request Timeout";
    case 409:
      return "Conflict";
    case 411:
      return "Length Required";
    case 413:
      return "Payload Too Large";
    case 414:
      return "URI Too Long";
    case 415:
      return "Unsupported Media Type";
    case 416:
      return "Range Not Satisfiable";
    case 429:
      return "Too Many Requests";
    case 431:
      return "Request Header Fields Too Large";
    case 500:
      return "Internal Server Error";
    case 503:
      return "Service Unavailable";
    default:
      return status >= 500 ? "Server Error" : "Client Error";
  }
}

int statusOf(Failure f) {
  switch (f) {
    case Failure::kBadRequest:
      return 400;
    case Failure::kNotFound:
      return 404;
    case Failure::kConflict:
      return 409;
    case Failure::kTooLarge:
      return 413;
    case Failure::kTooMany:
      return 429;
    case Failure::kUnavailable:
      return 503;
    case Failure::kInternal:
      return 500;
  }
  return 500;
}

}  // namespace

HttpServer::HttpServer(TaskService& store, EventFeed* events, HttpOptions options)
    : store_(store), events_(events), options_(std::move(options)) {
  if (!options_.tls_cert.empty() || !options_.tls_key.empty()) {
    server_ =
        std::make_unique<httplib::SSLServer>(options_.tls_cert.c_str(), options_.tls_key.c_str());
  } else {
    server_ = std::make_unique<httplib::Server>();
  }
  size_t threads = std::max<size_t>(2, options_.threads);
  server_->new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  server_->set_read_timeout(options_.read_timeout);
  server_->set_write_timeout(options_.write_timeout);
  server_->set_keep_alive_timeout(options_.keep_alive_timeout_s);
  server_->set_keep_alive_max_count(options_.keep_alive_max_requests);
  server_->set_payload_max_length(options_.payload_max_bytes);
  // Small request/response pairs: without TCP_NODELAY, Nagle's algorithm and delayed ACKs add
  // tens of milliseconds to a POST whose header and body go out in separate writes.
  server_->set_tcp_nodelay(true);
  // cpp-httplib's default sets SO_REUSEPORT, with which a second server on the same port binds
  // too and the kernel splits the connections between the two. SO_REUSEADDR alone still lets a
  // restarted node bind over connections in TIME_WAIT, but never beside a live listener.
  server_->set_socket_options([](socket_t sock) {
    int yes = 1;
    ::setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
  });
  server_->set_error_handler(httplib::Server::HandlerWithResponse(
      [this](const Request& req, Response& res) { return onError(req, res); }));
  server_->set_pre_routing_handler(
      [this](const Request& req, Response& res) { return authorize(req, res); });
  server_->set_exception_handler([this](const Request& req, Response& res, std::exception_ptr ep) {
    std::string what = "unknown exception";
    try {
      if (ep) std::rethrow_exception(ep);
    } catch (const std::exception& e) {
      what = e.what();
    } catch (...) {
    }
    spdlog::error("http: {} {} failed: {}", req.method, quote(req.path), what);
    res.body.clear();
    problem(res, 500, "internal error; see the node's log");
  });
  setupRoutes();
}

HttpServer::~HttpServer() { stop(); }

void HttpServer::problem(Response& res, int status, std::string detail) const {
  res.status = status;
  Json body = {{"type", "about:blank"},
               {"title", reason(status)},
               {"status", status},
               {"detail", std::move(detail)}};
  if (status == 503 || status == 429) {
    res.set_header("Retry-After", std::to_string(options_.retry_after_s));
  }
  res.set_content(dumpJson(body), kProblemJson);
}

void HttpServer::fail(Response& res, const Problem& p) const {
  int status = statusOf(p.failure);
  if (status == 500) spdlog::error("http: internal error: {}", p.detail);
  problem(res, status, p.detail);
}

HttpServer::Handler HttpServer::guard(Handler handler) const {
  return [this, handler = std::move(handler)](const Request& req, Response& res) {
    try {
      handler(req, res);
    } catch (const std::exception& e) {
      spdlog::error("http: {} {} failed: {}", req.method, quote(req.path), e.what());
      res = Response();
      problem(res, 500, "internal error; see the node's log");
    } catch (...) {
      spdlog::error("http: {} {} failed with an unknown exception", req.method, quote(req.path));
      res = Response();
      problem(res, 500, "internal error; see the node's log");
    }
  };
}

httplib::Server::HandlerResponse HttpServer::authorize(const Request& req, Response& res) {
  if (!options_.auth || !options_.auth->enabled())
    return httplib::Server::HandlerResponse::Unhandled;
  auto decision = options_.auth->check(req.method, req.path, req.get_header_value("Authorization"),
                                       req.get_param_value("access_token"));
  if (decision.status == 0) return httplib::Server::HandlerResponse::Unhandled;
  if (decision.status == 401) {
    res.set_header("WWW-Authenticate", decision.invalid_token
                                           ? R"(Bearer realm="drover", error="invalid_token")"
                                           : R"(Bearer realm="drover")");
  }
  problem(res, decision.status, std::move(decision.detail));
  return httplib::Server::HandlerResponse::Handled;
}

void HttpServer::route(const std::string& method, const std::string& pattern, Handler handler) {
  if (!roleOfRoute(method, pattern)) {
    throw std::logic_error(fmt::format(
        "route {} {} has no role: add it to the route table in src/api/auth.cc", method, pattern));
  }
  routes_.push_back(Route{method, std::regex(pattern), pattern});
  auto h = guard(std::move(handler));
  if (method == "GET") {
    server_->Get(pattern, h);
  } else if (method == "POST") {
    server_->Post(pattern, h);
  } else if (method == "PUT") {
    server_->Put(pattern, h);
  } else if (method == "PATCH") {
    server_->Patch(pattern, h);
  } else if (method == "DELETE") {
    server_->Delete(pattern, h);
  } else {
    routes_.pop_back();
    throw std::invalid_argument("unsupported HTTP method " + method);
  }
}

std::vector<std::pair<std::string, std::string>> HttpServer::routes() const {
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& r : routes_) out.emplace_back(r.method, r.text);
  return out;
}

void HttpServer::addRoute(const std::string& method, const std::string& pattern, Handler handler) {
  route(method, pattern, std::move(handler));
}

void HttpServer::setupRoutes() {
  using namespace std::placeholders;
  // The id route takes anything after the prefix ([\s\S]: even newlines), so that a bad id is a
  // 400 from our validation rather than a 404 from the router.
  const std::string id_route = R"(/v1/tasks/([\s\S]+))";
  route("POST", "/v1/tasks", std::bind(&HttpServer::postTask, this, _1, _2));
  route("POST", "/v1/tasks/batch", std::bind(&HttpServer::postBatch, this, _1, _2));
  route("GET", "/v1/tasks", std::bind(&HttpServer::listTasks, this, _1, _2));
  route("GET", id_route, std::bind(&HttpServer::getTask, this, _1, _2));
  route("DELETE", id_route, std::bind(&HttpServer::deleteTask, this, _1, _2));
  route("POST", R"(/v1/tasks/([\s\S]+)/retry)", std::bind(&HttpServer::retryTask, this, _1, _2));
  route("GET", "/v1/workers", std::bind(&HttpServer::getWorkers, this, _1, _2));
  route("POST", kDrainRoute, std::bind(&HttpServer::drainWorker, this, _1, _2));
  route("DELETE", kDrainRoute, std::bind(&HttpServer::undrainWorker, this, _1, _2));
  route("GET", "/v1/queues", std::bind(&HttpServer::getQueues, this, _1, _2));
  route("PUT", kQueueRoute, std::bind(&HttpServer::putQueue, this, _1, _2));
  route("POST", kQueuePauseRoute, std::bind(&HttpServer::pauseQueue, this, _1, _2));
  route("POST", kQueueResumeRoute, std::bind(&HttpServer::resumeQueue, this, _1, _2));
  route("GET", "/v1/cluster", std::bind(&HttpServer::getCluster, this, _1, _2));
  route("POST", "/v1/schedules", std::bind(&HttpServer::postSchedule, this, _1, _2));
  route("GET", "/v1/schedules", std::bind(&HttpServer::listSchedules, this, _1, _2));
  route("GET", kScheduleIdRoute, std::bind(&HttpServer::getSchedule, this, _1, _2));
  route("DELETE", kScheduleIdRoute, std::bind(&HttpServer::deleteSchedule, this, _1, _2));
  route("GET", "/v1/events", std::bind(&HttpServer::getEvents, this, _1, _2));
  route("GET", "/v1/stats/history", std::bind(&HttpServer::statsHistory, this, _1, _2));
  route("GET", "/livez",
        [](const Request&, Response& res) { res.set_content("ok\n", "text/plain"); });
  route("GET", "/readyz", std::bind(&HttpServer::readyz, this, _1, _2));
  route("GET", "/metrics", std::bind(&HttpServer::metrics, this, _1, _2));
  route("GET", "/v1/openapi.json", [](const Request&, Response& res) {
    res.set_content(std::string(openApiDocument()), kJson);
  });
}

httplib::Server::HandlerResponse HttpServer::onError(const Request& req, Response& res) {
  using HR = httplib::Server::HandlerResponse;
  if (!res.body.empty() || res.content_provider_) return HR::Unhandled;  // a handler's own answer
  try {
    switch (res.status) {
      case 404: {
        std::vector<std::string> allowed;
        for (const auto& r : routes_) {
          if (r.method != req.method && std::regex_match(req.path, r.pattern) &&
              std::find(allowed.begin(), allowed.end(), r.method) == allowed.end()) {
            allowed.push_back(r.method);
          }
        }
        if (!allowed.empty()) {
          res.set_header("Allow", fmt::format("{}", fmt::join(allowed, ", ")));
          problem(res, 405,
                  fmt::format("{} is not allowed on {}; allowed: {}", quote(req.method),
                              quote(req.path), fmt::join(allowed, ", ")));
        } else {
          problem(res, 404, fmt::format("no route for {} {}", quote(req.method), quote(req.path)));
        }
        break;
      }
      case 413:
        problem(res, 413,
                fmt::format("the request body exceeds {} bytes", options_.payload_max_bytes));
        break;
      case 414:
        problem(res, 414, "the request URI is too long (an id has at most 128 characters)");
        break;
      case 400:
        problem(res, 400, "malformed HTTP request");
        break;
      default:
        problem(res, res.status, std::string(reason(res.status)));
    }
  } catch (const std::exception& e) {
    spdlog::error("http: error handler failed: {}", e.what());
    return HR::Unhandled;
  }
  return HR::Handled;
}

namespace {

// Counts the tasks of one submit request by how it was answered, when the handler returns
// (drover_tasks_submitted_total, docs/METRICS.md).
class SubmitMetric {
 public:
  explicit SubmitMetric(const Response& res) : res_(res) {}
  ~SubmitMetric() {
    static auto& registry = base::metrics();
    const char* result = res_.status == 202   ? "created"
                         : res_.status == 200 ? "existing"
                         : res_.status == 409 ? "conflict"
                         : res_.status == 503 ? "unavailable"
                         : res_.status >= 500 ? "error"
                                              : "rejected";
    registry
        .counter("drover_tasks_submitted_total", "Tasks submitted to this node's API, by result",
                 {{"result", result}})
        .inc(static_cast<double>(tasks_));
  }
  void setTasks(size_t n) { tasks_ = n; }

 private:
  const Response& res_;
  size_t tasks_ = 1;
};

// Whether a submitted task names its id (else parseSpec made one up).
bool hasId(const tasks::Json& task) {
  if (!task.is_object()) return false;
  auto it = task.find("id");
  return it != task.end() && !it->is_null();
}

}  // namespace

tl::expected<tasks::TaskSpec, tasks::ValidationError> HttpServer::parseTask(
    const Json& body) const {
  auto spec = tasks::parseSpec(body, options_.limits, options_.known_type);
  if (!spec || !options_.validate_payload) return spec;
  if (auto e = options_.validate_payload(spec->type, spec->payload)) return tl::unexpected(*e);
  return spec;
}

void HttpServer::postTask(const Request& req, Response& res) {
  SubmitMetric metric(res);
  if (!isJsonContentType(req.get_header_value("Content-Type"))) {
    return problem(res, 415, "Content-Type must be application/json");
  }
  auto body = parseBody(req.body, options_.max_json_depth);
  if (!body) return problem(res, 400, body.error());
  if (req.has_header("Idempotency-Key")) {
    std::string key = req.get_header_value("Idempotency-Key");
    if (!base::isValidName(key)) {
      return problem(res, 400, fmt::format("Idempotency-Key {}", kIdRule));
    }
    if (body->is_object()) {
      auto it = body->find("id");
      if (it == body->end() || it->is_null()) {
        (*body)["id"] = key;
      } else if (!it->is_string() || it->get<std::string>() != key) {
        return problem(res, 400, "the Idempotency-Key header and the id field differ");
      }
    }
  }
  auto spec = parseTask(*body);
  if (!spec) {
    const auto& e = spec.error();
    return problem(res, 400, e.field.empty() ? e.detail : fmt::format("{}: {}", e.field, e.detail));
  }
  // A task without an id reaches the store with an empty one: it is named {batch}.{index}.
  if (!hasId(*body)) spec->id.clear();
  auto r = store_.submit(*spec);
  if (!r) return fail(res, r.error());
  res.status = r->created ? 202 : 200;
  res.set_header("Location", "/v1/tasks/" + r->status.spec.id);
  res.set_content(
      dumpJson({{"id", r->status.spec.id}, {"state", tasks::stateName(r->status.state)}}), kJson);
}

void HttpServer::postBatch(const Request& req, Response& res) {
  SubmitMetric metric(res);
  if (!isJsonContentType(req.get_header_value("Content-Type"))) {
    return problem(res, 415, "Content-Type must be application/json");
  }
  auto body = parseBody(req.body, options_.max_json_depth);
  if (!body) return problem(res, 400, body.error());
  if (!body->is_object()) return problem(res, 400, "the body must be {\"tasks\": [...]}");
  for (const auto& [key, value] : body->items()) {
    if (key != "tasks") return problem(res, 400, fmt::format("{}: unknown field", quote(key)));
  }
  auto list = body->find("tasks");
  if (list == body->end() || !list->is_array()) {
    return problem(res, 400, "tasks: is required (an array of tasks)");
  }
  if (list->empty()) return problem(res, 400, "tasks: the batch is empty");
  metric.setTasks(list->size());
  if (list->size() > options_.limits.max_batch) {
    return problem(res, 413,
                   fmt::format("tasks: {} tasks; a batch holds at most {}", list->size(),
                               options_.limits.max_batch));
  }
  std::vector<tasks::TaskSpec> specs;
  specs.reserve(list->size());
  for (size_t i = 0; i < list->size(); ++i) {
    auto spec = parseTask((*list)[i]);
    if (!spec) {
      const auto& e = spec.error();
      return problem(res, 400,
                     e.field.empty() ? fmt::format("tasks[{}]: {}", i, e.detail)
                                     : fmt::format("tasks[{}].{}: {}", i, e.field, e.detail));
    }
    if (!hasId((*list)[i])) spec->id.clear();
    specs.push_back(std::move(*spec));
  }
  auto r = store_.submitBatch(specs);
  if (!r) return fail(res, r.error());
  res.status = r->created ? 202 : 200;
  res.set_content(dumpJson({{"ids", r->ids}}), kJson);
}

void HttpServer::getTask(const Request& req, Response& res) {
  const std::string id = req.matches[1];
  if (!base::isValidName(id)) return problem(res, 400, fmt::format("task id {}", kIdRule));
  tasks::TaskStatus status;
  if (req.has_param("wait")) {
    const std::string raw = req.get_param_value("wait");
    double seconds = 0;
    auto [p, ec] = std::from_chars(raw.data(), raw.data() + raw.size(), seconds);
    double max_s = std::chrono::duration<double>(options_.max_wait).count();
    if (ec != std::errc() || p != raw.data() + raw.size() || !std::isfinite(seconds) ||
        !(seconds > 0) || seconds > max_s) {
      return problem(res, 400,
                     fmt::format("wait: must be a number of seconds, 0 < wait <= {}", max_s));
    }
    auto r = store_.wait(id, std::chrono::milliseconds(static_cast<int64_t>(seconds * 1000)));
    if (!r) return fail(res, r.error());
    status = std::move(*r);
  } else {
    auto r = store_.get(id);
    if (!r) return fail(res, r.error());
    status = std::move(*r);
  }
  Json body = tasks::toJson(status);
  // Why it waits: in a plain GET only, so that a long-poll stays one read per change.
  if (status.state == tasks::State::kPending && !req.has_param("wait")) {
    if (auto why = waitingFor(status.spec)) body["waiting_for"] = *why;
  }
  res.set_content(dumpJson(body), kJson);
}

void HttpServer::deleteTask(const Request& req, Response& res) {
  const std::string id = req.matches[1];
  if (!base::isValidName(id)) return problem(res, 400, fmt::format("task id {}", kIdRule));
  auto r = store_.cancel(id);
  if (!r) return fail(res, r.error());
  res.status = 202;
  res.set_header("Drover-Cancel", r->already_finished ? "already-finished" : "cancelled");
  res.set_content(dumpJson(tasks::toJson(r->status)), kJson);
}

void HttpServer::retryTask(const Request& req, Response& res) {
  const std::string id = req.matches[1];
  if (!base::isValidName(id)) return problem(res, 400, fmt::format("task id {}", kIdRule));
  auto r = store_.retry(id);
  if (!r) return fail(res, r.error());
  res.status = 202;
  res.set_content(dumpJson(Json{{"id", id}, {"state", tasks::stateName(r->state)}}), kJson);
}

void HttpServer::listTasks(const Request& req, Response& res) {
  std::optional<tasks::State> state;
  if (req.has_param("state") && !req.get_param_value("state").empty()) {
    state = tasks::parseState(req.get_param_value("state"));
    if (!state) {
      return problem(res, 400,
                     fmt::format("state: '{}' is not one of pending, assigned, running, "
                                 "succeeded, failed, cancelled",
                                 quote(req.get_param_value("state"))));
    }
  }
  // Any valid type name filters, known to this node or not: an unknown one lists nothing.
  TaskFilter filter{req.get_param_value("type"), req.get_param_value("queue")};
  if (!filter.type.empty() && !base::isValidName(filter.type)) {
    return problem(res, 400,
                   fmt::format("type: '{}' is not a valid task type name", quote(filter.type)));
  }
  if (!filter.queue.empty() && !base::isValidName(filter.queue)) {
    return problem(res, 400,
                   fmt::format("queue: '{}' is not a valid queue name", quote(filter.queue)));
  }
  int64_t limit = 100;
  if (req.has_param("limit")) {
    auto v = parseInt(req.get_param_value("limit"));
    if (!v || *v < 1 || *v > 1000)
      return problem(res, 400, "limit: must be an integer from 1 to 1000");
    limit = *v;
  }
  std::string order = req.get_param_value("order");
  if (!order.empty() && order != "id" && order != "newest") {
    return problem(res, 400, fmt::format("order: '{}' is not id or newest", quote(order)));
  }
  std::string cursor = req.get_param_value("cursor");
  StoreResult<TaskPage> r;
  if (order == "newest") {
    // The cursor of a newest-first page is "<czxid>-<id>" (TaskService::listNewest).
    std::optional<TaskService::NewestCursor> after;
    if (!cursor.empty()) {
      auto dash = cursor.find('-');
      auto czxid = parseInt(dash == std::string::npos ? std::string() : cursor.substr(0, dash));
      if (dash == std::string::npos || !czxid || *czxid < 0 ||
          !base::isValidName(cursor.substr(dash + 1))) {
        return problem(res, 400, "cursor: must be the 'next' of a page listed with order=newest");
      }
      after = TaskService::NewestCursor{*czxid, cursor.substr(dash + 1)};
    }
    r = store_.listNewest(state, static_cast<size_t>(limit), after, filter);
  } else {
    if (!cursor.empty() && !base::isValidName(cursor)) {
      return problem(res, 400, fmt::format("cursor: {}", kIdRule));
    }
    r = store_.list(state, static_cast<size_t>(limit), cursor, filter);
  }
  if (!r) return fail(res, r.error());
  Json tasks_json = Json::array();
  for (const auto& t : r->tasks) tasks_json.push_back(tasks::toJson(t));
  res.set_content(
      dumpJson({{"tasks", std::move(tasks_json)}, {"next", r->next ? Json(*r->next) : Json()}}),
      kJson);
}

void HttpServer::getWorkers(const Request&, Response& res) {
  auto r = store_.workers();
  if (!r) return fail(res, r.error());
  Json list = Json::array();
  for (const auto& w : r->workers) list.push_back(workerJson(w));
  // The same record /v1/cluster reads: the two always agree on who leads.
  Json leader = r->leader ? Json(r->leader->id) : Json();
  res.set_content(dumpJson({{"workers", std::move(list)}, {"leader", leader}}), kJson);
}

void HttpServer::getCluster(const Request&, Response& res) {
  auto r = store_.cluster();
  if (!r) return fail(res, r.error());
  Json counts = Json::object();
  for (const auto& [state, n] : r->counts) counts[std::string(tasks::stateName(state))] = n;
  static constexpr std::array<std::string_view, 5> kSessionStates = {
      "connecting", "connected", "disconnected", "expired", "closed"};
  const auto& s = r->session;
  Json zk = {{"connected", s.state == coord::SessionState::kConnected},
             {"state", kSessionStates[static_cast<size_t>(s.state)]},
             {"session_id", fmt::format("0x{:x}", s.session_id)},
             {"generation", s.generation},
             {"session_timeout_ms", s.timeout.count()}};
  Json body = {{"leader", r->leader ? Json(r->leader->id) : Json()},
               {"epoch", r->leader ? Json(r->leader->epoch) : Json()},
               {"zookeeper", std::move(zk)},
               {"workers", r->workers},
               {"tasks", std::move(counts)}};
  res.set_content(dumpJson(body), kJson);
}

void HttpServer::getEvents(const Request& req, Response& res) {
  if (events_ == nullptr) return problem(res, 503, "this node does not serve events");
  std::string filter = req.get_param_value("id");
  if (!filter.empty() && !base::isValidName(filter)) {
    return problem(res, 400, fmt::format("id: {}", kIdRule));
  }
  size_t max_streams = options_.max_event_streams != 0 ? options_.max_event_streams
                                                       : std::max<size_t>(1, options_.threads / 2);
  if (streams_.fetch_add(1) >= max_streams) {
    streams_.fetch_sub(1);
    return problem(res, 503, fmt::format("too many event streams (at most {})", max_streams));
  }
  std::optional<EventPosition> after;
  if (req.has_header("Last-Event-ID")) {
    after = parseEventPosition(req.get_header_value("Last-Event-ID"));
    if (!after) {
      streams_.fetch_sub(1);
      return problem(res, 400,
                     "Last-Event-ID: expected an event id of this stream (\"{record}.{index}\", "
                     "as sent in its id: lines)");
    }
  }
  auto sub = after ? events_->subscribe(filter, *after) : events_->subscribe(filter);
  {
    std::lock_guard lock(streams_mu_);
    open_streams_.insert(sub);
  }
  if (stopping_) sub->close();
  auto released = std::make_shared<std::atomic<bool>>(false);
  auto next_beat = std::make_shared<std::chrono::steady_clock::time_point>(
      std::chrono::steady_clock::now() + options_.heartbeat);
  auto started = std::make_shared<bool>(false);
  res.set_header("Cache-Control", "no-cache");
  res.set_chunked_content_provider(
      "text/event-stream",
      [this, sub, next_beat, started](size_t, httplib::DataSink& sink) {
        try {
          if (!*started) {
            *started = true;
            static constexpr std::string_view kHello = ": drover events\nretry: 1000\n\n";
            if (!sink.write(kHello.data(), kHello.size())) return false;
            if (sub->gap()) {
              static constexpr std::string_view kGap =
                  "event: gap\ndata: {\"reason\":\"the event log no longer holds the events "
                  "after Last-Event-ID; re-read the tasks you follow\"}\n\n";
              return sink.write(kGap.data(), kGap.size());
            }
            return true;
          }
          auto now = std::chrono::steady_clock::now();
          auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(*next_beat - now);
          auto event = sub->next(std::max(wait, std::chrono::milliseconds(0)));
          if (event) {
            std::string frame =
                fmt::format("id: {}\nevent: task\ndata: {}\n\n", event->position.text(),
                            dumpJson(tasks::toJson(static_cast<const tasks::TaskEvent&>(*event))));
            return sink.write(frame.data(), frame.size());
          }
          if (sub->closed() || stopping_) {
            if (sub->dropped()) {
              static constexpr std::string_view kDropped =
                  "event: dropped\ndata: {\"reason\":\"the client fell too far behind\"}\n\n";
              sink.write(kDropped.data(), kDropped.size());
            }
            sink.done();
            return true;
          }
          if (std::chrono::steady_clock::now() >= *next_beat) {
            *next_beat = std::chrono::steady_clock::now() + options_.heartbeat;
            static constexpr std::string_view kBeat = ": heartbeat\n\n";
            return sink.write(kBeat.data(), kBeat.size());
          }
          return true;
        } catch (const std::exception& e) {
          spdlog::error("http: event stream failed: {}", e.what());
          return false;
        }
      },
      [this, sub, released](bool) {
        if (released->exchange(true)) return;  // Response copies share the releaser
        sub->close();
        {
          std::lock_guard lock(streams_mu_);
          open_streams_.erase(sub);
        }
        streams_.fetch_sub(1);
      });
}

// ?scope=node: this node's own counts (what peers ask each other for); else the cluster's, summed
// here from every node this one can reach (the answer's "nodes" says which answered).
void HttpServer::statsHistory(const Request& req, Response& res) {
  if (!options_.stats) return problem(res, 503, "this node keeps no throughput history");
  std::string scope = req.get_param_value("scope");
  if (!scope.empty() && scope != "node" && scope != "cluster") {
    return problem(res, 400, fmt::format("scope: '{}' is not node or cluster", quote(scope)));
  }
  std::string self = fmt::format("{}:{}", options_.host, port_);
  if (scope == "node") {
    int64_t now = base::wallMillis();
    Json j = historyJson(options_.stats->window(now), options_.stats->stepMs(), now);
    j["nodes"] = Json::array({{{"http", self}, {"ok", true}}});
    j["complete"] = true;
    return res.set_content(dumpJson(j), kJson);
  }
  // Without the worker list (no ZooKeeper) this node still answers for itself, marked partial.
  auto workers = store_.workers();
  std::vector<std::string> peers;
  if (workers) {
    for (const auto& w : workers->workers) {
      if (!w.info.http.empty() && w.info.http != self) peers.push_back(w.info.http);
    }
  }
  Json j = clusterHistory(*options_.stats, self, peers, !options_.tls_cert.empty(),
                          req.get_header_value("Authorization"), std::chrono::milliseconds(1500));
  bool complete = workers.has_value();
  for (const auto& n : j["nodes"]) complete = complete && n["ok"].get<bool>();
  j["complete"] = complete;
  if (!workers) j["error"] = workers.error().detail;
  res.set_content(dumpJson(j), kJson);
}

void HttpServer::readyz(const Request&, Response& res) {
  if (!store_.connected()) return problem(res, 503, "not connected to ZooKeeper");
  res.set_content("ready\n", "text/plain");
}

void HttpServer::metrics(const Request&, Response& res) {
  std::string body;
  if (options_.metrics) {
    body = options_.metrics();
  } else {
    body = fmt::format(
        "# HELP drover_up 1 while the node serves.\n# TYPE drover_up gauge\ndrover_up 1\n"
        "# HELP drover_zookeeper_connected 1 while the ZooKeeper session is connected.\n"
        "# TYPE drover_zookeeper_connected gauge\ndrover_zookeeper_connected {}\n"
        "# HELP drover_http_event_streams Open /v1/events streams.\n"
        "# TYPE drover_http_event_streams gauge\ndrover_http_event_streams {}\n",
        store_.connected() ? 1 : 0, streams_.load());
  }
  res.set_content(body, "text/plain; version=0.0.4; charset=utf-8");
}

namespace {

// Why binding host:port failed, found by trying it again the way start() does (the library does
// not report errno): "port 8080 is in use" for EADDRINUSE.
std::string bindFailure(const std::string& host, int port) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE;
  addrinfo* found = nullptr;
  std::string service = std::to_string(port);
  if (::getaddrinfo(host.c_str(), service.c_str(), &hints, &found) != 0 || found == nullptr) {
    return fmt::format("cannot resolve {}", host);
  }
  int err = 0;
  for (addrinfo* a = found; a != nullptr && err != EADDRINUSE; a = a->ai_next) {
    int fd = ::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) {
      err = errno;
      continue;
    }
    int yes = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
    if (::bind(fd, a->ai_addr, a->ai_addrlen) != 0 || ::listen(fd, 1) != 0) err = errno;
    ::close(fd);
  }
  ::freeaddrinfo(found);
  if (err == EADDRINUSE) return fmt::format("port {} is in use", port);
  if (err != 0) return fmt::format("cannot bind {}:{}: {}", host, port, std::strerror(err));
  return fmt::format("cannot bind {}:{}", host, port);
}

}  // namespace

tl::expected<int, std::string> HttpServer::start() {
  if (thread_.joinable()) return tl::unexpected(std::string("already started"));
  if (!options_.tls_cert.empty() || !options_.tls_key.empty()) {
    if (auto bad = checkTlsFiles(options_.tls_cert, options_.tls_key)) return tl::unexpected(*bad);
    if (!server_->is_valid()) {
      return tl::unexpected(
          fmt::format("cannot set up TLS with {} and {}", options_.tls_cert, options_.tls_key));
    }
  }
  int port = options_.port;
  if (port == 0) {
    port = server_->bind_to_any_port(options_.host);
    if (port < 0) return tl::unexpected(fmt::format("cannot bind {}:0", options_.host));
  } else if (!server_->bind_to_port(options_.host, port)) {
    return tl::unexpected(bindFailure(options_.host, port));
  }
  port_ = port;
  thread_ = std::thread([this] { server_->listen_after_bind(); });
  // stop() is a no-op until the server runs: wait for it so a quick stop() cannot hang.
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (!server_->is_running() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return port_;
}

void HttpServer::stop() {
  stopping_ = true;
  store_.interruptWaits();
  {
    std::lock_guard lock(streams_mu_);
    for (const auto& s : open_streams_) s->close();
  }
  server_->stop();
  if (thread_.joinable()) thread_.join();
}

}  // namespace drover::api
