#pragma once

// The REST API v1 (docs/API.md) on cpp-httplib.

#include <httplib.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <regex>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <tl/expected.hpp>
#include <vector>

#include "api/auth.h"
#include "api/event_feed.h"
#include "api/stats_history.h"
#include "api/task_service.h"
#include "tasks/task.h"

namespace drover::api {

class ScheduleStore;

struct HttpOptions {
  std::string host = "127.0.0.1";  // bind address; loopback unless told otherwise
  int port = 8080;                 // 0: any free port (see HttpServer::port())
  // Handler threads. A keep-alive connection holds one for as long as it stays open, as do long
  // polls and event streams: fewer threads than concurrent clients makes the rest wait.
  size_t threads = 64;
  std::chrono::milliseconds read_timeout{5000};   // per read: slow or idle clients time out
  std::chrono::milliseconds write_timeout{5000};  // per write: clients that stop reading
  int keep_alive_timeout_s = 5;
  size_t keep_alive_max_requests = 1000;  // per connection, then it is closed
  // Largest request body; a larger Content-Length is answered 413 without buffering the body.
  size_t payload_max_bytes = 1024 * 1024;
  int max_json_depth = 64;  // deeper nesting is a 400
  tasks::SubmitLimits limits;
  // Which task types the cluster runs (nullptr: any valid name).
  bool (*known_type)(std::string_view) = nullptr;
  // Checks a known type's payload at submit (the validators registered with the handlers, see
  // worker::HandlerRegistry::validate); an error is a 400 naming the field, nothing written.
  // Empty: payloads are not checked. Called on HTTP threads: thread-safe.
  std::function<std::optional<tasks::ValidationError>(std::string_view type,
                                                      const tasks::Json& payload)>
      validate_payload;
  // Body of GET /metrics (Prometheus text). Empty: a minimal built-in exposition.
  std::function<std::string()> metrics;
  std::chrono::milliseconds heartbeat{15000};  // SSE comment interval on /v1/events
  size_t max_event_streams = 0;                // 0: threads / 2
  std::chrono::milliseconds max_wait{300000};  // largest ?wait= on GET /v1/tasks/{id}
  int retry_after_s = 1;                       // Retry-After on 503 and 429
  // Who may call what (api/auth.h): null or without tokens, every call is allowed. Checked before
  // routing, so a refused request reaches no handler.
  std::shared_ptr<const Authenticator> auth;
  // PEM files of the certificate (chain) and its private key: both set, the API speaks HTTPS
  // only; both empty, plain HTTP. start() fails with a clear error for a bad or missing file.
  std::string tls_cert;
  std::string tls_key;
  // This node's throughput history (api/stats_history.h), served at GET /v1/stats/history with
  // the other nodes' summed in; null: that route answers 503. Must outlive the server.
  const StatsRing* stats = nullptr;
  // Cron schedules (api/schedule_store.h), served at /v1/schedules; null: those routes answer
  // 503. Must outlive the server.
  ScheduleStore* schedules = nullptr;
};

// The HTTP front of a node. Routes (see docs/API.md): POST /v1/tasks, POST /v1/tasks/batch,
// GET|DELETE /v1/tasks/{id}, GET /v1/tasks, GET /v1/workers, GET /v1/cluster, GET /v1/events, GET
// /v1/stats/history, GET /v1/openapi.json (api/openapi.h), GET /livez, /readyz, /metrics, plus
// routes added with addRoute().
//
// Every error is application/problem+json {"type":"about:blank","title","status","detail"}.
// Handlers catch every exception at the edge (500, logged): no input crashes the node.
//
// Lifetime: `store` and `events` (may be null: /v1/events answers 503) must outlive the server.
// addRoute() before start(); start()/stop() from one owning thread. Handlers run on the pool.
class HttpServer {
 public:
  using Handler = std::function<void(const httplib::Request&, httplib::Response&)>;

  HttpServer(TaskService& store, EventFeed* events, HttpOptions options = {});
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Registers an extra route (say the dashboard at "/"). `method` is GET, POST, PUT, PATCH or
  // DELETE; `pattern` is an httplib (std::regex) pattern. Exceptions become 500s. The route must
  // have a row in the route table (api/auth.cc, routeRoles()); else this throws
  // std::logic_error: no route is served without a decided role.
  void addRoute(const std::string& method, const std::string& pattern, Handler handler);

  // Binds and starts serving on a thread of its own. Returns the bound port, or why it failed.
  tl::expected<int, std::string> start();
  // Stops accepting, ends event streams and waits for handlers. Idempotent.
  void stop();
  int port() const { return port_; }
  // Every registered route as (method, pattern), in registration order.
  std::vector<std::pair<std::string, std::string>> routes() const;

 private:
  struct Route {
    std::string method;
    std::regex pattern;
    std::string text;  // the pattern as registered
  };

  void route(const std::string& method, const std::string& pattern, Handler handler);
  Handler guard(Handler handler) const;
  void setupRoutes();
  httplib::Server::HandlerResponse onError(const httplib::Request& req, httplib::Response& res);
  httplib::Server::HandlerResponse authorize(const httplib::Request& req, httplib::Response& res);

  // parseSpec, then the payload check of the task's type.
  tl::expected<tasks::TaskSpec, tasks::ValidationError> parseTask(const tasks::Json& body) const;
  void postTask(const httplib::Request& req, httplib::Response& res);
  void postBatch(const httplib::Request& req, httplib::Response& res);
  void getTask(const httplib::Request& req, httplib::Response& res);
  void deleteTask(const httplib::Request& req, httplib::Response& res);
  void retryTask(const httplib::Request& req, httplib::Response& res);
  void listTasks(const httplib::Request& req, httplib::Response& res);
  void getWorkers(const httplib::Request& req, httplib::Response& res);
  void getCluster(const httplib::Request& req, httplib::Response& res);
  void getEvents(const httplib::Request& req, httplib::Response& res);
  void statsHistory(const httplib::Request& req, httplib::Response& res);
  void readyz(const httplib::Request& req, httplib::Response& res);
  // Routing (http_routing.cc).
  void getQueues(const httplib::Request& req, httplib::Response& res);
  void putQueue(const httplib::Request& req, httplib::Response& res);
  void pauseQueue(const httplib::Request& req, httplib::Response& res);
  void resumeQueue(const httplib::Request& req, httplib::Response& res);
  void setQueue(const std::string& name, const tasks::Json& patch, httplib::Response& res);
  void drainWorker(const httplib::Request& req, httplib::Response& res);
  void undrainWorker(const httplib::Request& req, httplib::Response& res);
  // Schedules (http_schedules.cc).
  void postSchedule(const httplib::Request& req, httplib::Response& res);
  void listSchedules(const httplib::Request& req, httplib::Response& res);
  void getSchedule(const httplib::Request& req, httplib::Response& res);
  void deleteSchedule(const httplib::Request& req, httplib::Response& res);
  // Why a pending task waits; nullopt when that cannot be read now (the task is shown without).
  std::optional<std::string> waitingFor(const tasks::TaskSpec& spec);
  void metrics(const httplib::Request& req, httplib::Response& res);

  // Sets res to the problem for a store failure (503 gets Retry-After).
  void fail(httplib::Response& res, const Problem& problem) const;
  void problem(httplib::Response& res, int status, std::string detail) const;

  TaskService& store_;
  EventFeed* events_;
  const HttpOptions options_;
  std::unique_ptr<httplib::Server> server_;  // an httplib::SSLServer when TLS is configured
  std::vector<Route> routes_;
  std::thread thread_;
  int port_ = 0;
  std::atomic<bool> stopping_{false};
  std::atomic<size_t> streams_{0};
  std::mutex streams_mu_;
  std::set<std::shared_ptr<Subscription>> open_streams_;
};

}  // namespace drover::api
