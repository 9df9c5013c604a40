#include "app/client.h"

#include <fmt/format.h>
#include <httplib.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <functional>
#include <iostream>
#include <nlohmann/json.hpp>
#include <optional>

#include "app/client_http.h"

namespace drover::app {
// The HTTP helpers are shared with the other client command files (client_http.h).
namespace client_detail {

using Json = nlohmann::json;

// What a transport failure means, for a person: what happened and what to check.
std::string describe(httplib::Error e) {
  switch (e) {
    case httplib::Error::Connection:
      return "could not connect";
    case httplib::Error::ConnectionTimeout:
      return "connecting timed out";
    case httplib::Error::Read:
      return "the connection closed or timed out before the answer";
    case httplib::Error::Write:
      return "the connection closed while sending the request";
    case httplib::Error::SSLConnection:
    case httplib::Error::SSLServerVerification:
    case httplib::Error::SSLLoadingCerts:
      return "the TLS handshake failed (" + httplib::to_string(e) + ")";
    default:
      return httplib::to_string(e);
  }
}

// The value of a flag, else of its environment variable (applied here, not through CLI11's
// envname: the subcommands share ClientOptions, and a variable filled in for a subcommand not run
// would overwrite the flag of the one run).
std::string flagOrEnv(const std::string& flag, const char* variable) {
  if (!flag.empty()) return flag;
  const char* v = std::getenv(variable);
  return v != nullptr ? std::string(v) : std::string();
}

// A client of "http://host:port" or "https://host:port" (the certificate is verified, against
// --ca-file when given), carrying the token when there is one.
httplib::Client makeClient(const ClientOptions& o, const std::string& url, int read_timeout_s) {
  httplib::Client cli(url);
  std::string ca_file = flagOrEnv(o.ca_file, "DROVER_CA_FILE");
  if (!ca_file.empty()) cli.set_ca_cert_path(ca_file.c_str());
  cli.enable_server_certificate_verification(true);
  std::string token = flagOrEnv(o.token, "DROVER_TOKEN");
  if (!token.empty()) cli.set_bearer_token_auth(token.c_str());
  cli.set_connection_timeout(5);
  cli.set_read_timeout(read_timeout_s);
  cli.set_write_timeout(10);
  cli.set_tcp_nodelay(true);
  return cli;
}

Answer call(const ClientOptions& o, const std::string& method, const std::string& path,
            const Json* body = nullptr, int read_timeout_s = 30) {
  ServerUrl server = resolveServer(o.server, std::getenv("DROVER_SERVER"));
  if (!server.error.empty()) return Answer{0, Json(), server.error, true};
  auto cli = makeClient(o, server.url, read_timeout_s);
  httplib::Result res =
      method == "GET"    ? cli.Get(path)
      : method == "POST" ? cli.Post(path, body != nullptr ? body->dump() : "{}", "application/json")
      : method == "PUT"  ? cli.Put(path, body != nullptr ? body->dump() : "{}", "application/json")
                         : cli.Delete(path);
  Answer a;
  if (!res) {
    a.error = fmt::format(
        "no answer from {} ({}).\n"
        "  Is a node running there? Start a local cluster with `drover up`, or point --server\n"
        "  (or DROVER_SERVER) at a node's API address.",
        server.url, describe(res.error()));
    if (res.error() == httplib::Error::SSLServerVerification) {
      a.error += "\n  The server's certificate is not trusted: pass its CA with --ca-file.";
    }
    return a;
  }
  a.status = res->status;
  a.body = Json::parse(res->body, nullptr, false);
  return a;
}

// Reports a non-2xx answer on stderr and maps it to an exit code.
int failure(const Answer& a) {
  if (a.status == 0) {
    std::cerr << "drover: " << a.error << "\n";
    return a.usage ? kExitUsage : kExitUnreachable;
  }
  std::string detail = a.body.is_object() ? a.body.value("detail", a.body.dump()) : "";
  std::cerr << "drover: " << a.status << " " << detail << "\n";
  if (a.status == 401) std::cerr << "drover: give a token with --token or DROVER_TOKEN\n";
  if (a.status == 404) return kExitNotFound;
  if (a.status >= 500) return kExitServerError;
  return kExitRejected;
}

std::string str(const Json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return "-";
  return it->is_string() ? it->get<std::string>() : it->dump();
}

void printTask(const Json& t) {
  std::cout << "id:        " << str(t, "id") << "\n"
            << "type:      " << str(t, "type") << "\n"
            << "state:     " << paint(str(t, "state")) << "\n"
            << "attempts:  " << str(t, "attempts") << " of " << str(t, "max_attempts") << "\n"
            << "worker:    " << str(t, "worker") << "\n";
  if (t.contains("result") && !t["result"].is_null()) {
    std::cout << "result:    " << t["result"].dump() << "\n";
  }
  if (t.contains("error") && !t["error"].is_null()) {
    std::cout << "error:     " << str(t, "error") << "\n";
  }
  if (auto w = t.find("waiting_for"); w != t.end()) {
    std::string why;
    if (w->is_array()) {  // a dependent: the ids it waits on
      for (const auto& id : *w)
        why += (why.empty() ? "" : ", ") + (id.is_string() ? id.get<std::string>() : id.dump());
    } else {
      why = str(t, "waiting_for");
    }
    std::cout << "waits for: " << why << "\n";
  }
  printHistory(t);
}

// A wall-clock time in ms as local "YYYY-MM-DD HH:MM:SS"; "-" when absent.
std::string localTime(const Json& ms) {
  if (!ms.is_number_integer()) return "-";
  std::time_t secs = static_cast<std::time_t>(ms.get<int64_t>() / 1000);
  std::tm tm{};
  if (::localtime_r(&secs, &tm) == nullptr) return "-";
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%d %H:%M:%S", &tm);
  return buf;
}

bool isTerminal(const std::string& state) {
  return state == "succeeded" || state == "failed" || state == "cancelled";
}

// Waits for every id to finish (long-polls, no busy loop). Returns the final tasks.
int waitAll(const ClientOptions& o, const std::vector<std::string>& ids, double timeout_s,
            std::vector<Json>& done) {
  auto deadline = std::chrono::steady_clock::now() +
                  std::chrono::milliseconds(static_cast<int64_t>(timeout_s * 1000));
  bool bar = ids.size() > 1 && ::isatty(STDERR_FILENO) && !o.json;
  size_t finished = 0;
  for (const auto& id : ids) {
    std::string state = "unknown";
    while (true) {
      auto left = std::chrono::duration_cast<std::chrono::seconds>(deadline -
                                                                   std::chrono::steady_clock::now())
                      .count();
      if (timeout_s > 0 && left <= 0) {
        if (bar) std::fprintf(stderr, "\n");
        std::cerr << fmt::format(
            "drover: timed out after {:g} s: task {} is still {} ({} of {} finished)\n", timeout_s,
            id, state, finished, ids.size());
        return kExitTimeout;
      }
      int wait = timeout_s > 0 ? static_cast<int>(std::min<int64_t>(left, 30)) : 30;
      auto a = call(o, "GET", fmt::format("/v1/tasks/{}?wait={}", id, std::max(wait, 1)), nullptr,
                    wait + 10);
      if (a.status != 200) return failure(a);
      state = a.body.value("state", "unknown");
      if (isTerminal(state)) {
        done.push_back(a.body);
        break;
      }
    }
    ++finished;
    if (bar) {
      int width = 30;
      int fill = static_cast<int>(width * finished / ids.size());
      std::fprintf(stderr, "\r[%s%s] %zu/%zu", std::string(fill, '#').c_str(),
                   std::string(width - fill, '.').c_str(), finished, ids.size());
    }
  }
  if (bar) std::fprintf(stderr, "\n");
  return kExitOk;
}

int reportFinished(const ClientOptions& o, const std::vector<Json>& tasks) {
  int code = kExitOk;
  for (const auto& t : tasks) {
    if (t.value("state", "") != "succeeded") code = kExitTaskFailed;
    if (o.json) {
      std::cout << t.dump() << "\n";
    } else if (tasks.size() == 1) {
      printTask(t);
    } else {
      std::cout << str(t, "id") << "  " << paint(str(t, "state")) << "\n";
    }
  }
  return code;
}

// A read command: GET `path`, then print the body as JSON (--json) or with `human`.
int show(const ClientOptions& o, const std::string& path,
         const std::function<void(const Json&)>& human) {
  auto a = call(o, "GET", path);
  if (a.status != 200) return failure(a);
  if (o.json) {
    std::cout << a.body.dump() << "\n";
  } else {
    human(a.body);
  }
  return kExitOk;
}

// queues, queue pause|resume|limit, drain (docs/ROUTING.md); returns the commands that take the
// connection flags.
std::array<CLI::App*, 6> addRoutingCommands(CLI::App& app, ClientOptions& o, int& exit_code) {
  auto* queues = app.add_subcommand("queues", "List queues: paused, limit, serving workers");
  queues->callback([&o, &exit_code] {
    exit_code = show(o, "/v1/queues", [](const Json& body) {
      std::cout << fmt::format("{:<24} {:<7} {:>11}  {}\n", "QUEUE", "STATE", "MAX_RUNNING",
                               "WORKERS");
      for (const auto& q : body.value("queues", Json::array())) {
        int max = q.value("max_running", 0);
        std::cout << fmt::format("{:<24} {:<7} {:>11}  {}\n", str(q, "name"),
                                 q.value("paused", false) ? "paused" : "open",
                                 max > 0 ? std::to_string(max) : "-",
                                 q.value("workers", Json::array()).size());
      }
    });
  });
  auto* queue = app.add_subcommand("queue", "Pause, resume or limit a queue (admin)");
  queue->require_subcommand(1);
  auto name = std::make_shared<std::string>();
  auto limit = std::make_shared<int>(0);
  auto change = [&o, &exit_code, name](const std::string& method, const std::string& path,
                                       const Json* body) {
    auto a = call(o, method, path, body);
    if (a.status != 200) {
      exit_code = failure(a);
      return;
    }
    if (o.json) {
      std::cout << a.body.dump() << "\n";
    } else {
      int max = a.body.value("max_running", 0);
      std::cout << fmt::format("{}: {}, max_running {}\n", *name,
                               a.body.value("paused", false) ? "paused" : "open",
                               max > 0 ? std::to_string(max) : "none");
    }
    exit_code = kExitOk;
  };
  auto* pause = queue->add_subcommand("pause", "Hold the queue's pending tasks");
  pause->add_option("name", *name, "Queue")->required();
  pause->callback([change, name] { change("POST", "/v1/queues/" + *name + "/pause", nullptr); });
  auto* resume = queue->add_subcommand("resume", "Release a paused queue");
  resume->add_option("name", *name, "Queue")->required();
  resume->callback([change, name] { change("POST", "/v1/queues/" + *name + "/resume", nullptr); });
  auto* cap =
      queue->add_subcommand("limit", "Run at most N of the queue's tasks at once (0: none)");
  cap->add_option("name", *name, "Queue")->required();
  cap->add_option("n", *limit, "Tasks at once, cluster-wide")->required();
  cap->callback([change, name, limit] {
    Json body = {{"max_running", *limit}};
    change("PUT", "/v1/queues/" + *name, &body);
  });
  auto* drain = app.add_subcommand(
      "drain", "Drain a worker: it takes nothing new, finishes its tasks, then leaves (admin)");
  auto worker = std::make_shared<std::string>();
  auto undo = std::make_shared<bool>(false);
  drain->add_option("worker", *worker, "Worker id (see drover workers)")->required();
  drain->add_flag("--undo", *undo, "Withdraw the drain if the worker has not left yet");
  drain->callback([&o, &exit_code, worker, undo] {
    auto a = call(o, *undo ? "DELETE" : "POST", "/v1/workers/" + *worker + "/drain");
    if (a.status != 200 && a.status != 202) {
      exit_code = failure(a);
      return;
    }
    std::cout << (o.json ? a.body.dump() : *worker + (*undo ? " no longer draining" : " draining"))
              << "\n";
    exit_code = kExitOk;
  });
  return {queues, pause, resume, cap, drain, queue};
}

}  // namespace client_detail

using namespace client_detail;

ServerUrl resolveServer(const std::string& flag, const char* env) {
  std::string url = !flag.empty()                      ? flag
                    : (env != nullptr && *env != '\0') ? std::string(env)
                                                       : std::string(kDefaultServer);
  const std::string given = url;
  while (url.size() > 1 && url.back() == '/') url.pop_back();
  auto scheme_end = url.find("://");
  std::string scheme = scheme_end == std::string::npos ? "" : url.substr(0, scheme_end);
  std::string rest = scheme_end == std::string::npos ? "" : url.substr(scheme_end + 3);
  if ((scheme != "http" && scheme != "https") || rest.empty() ||
      rest.find_first_of("/?#@ ") != std::string::npos) {
    return {"", fmt::format("--server: '{}' is not an API address like http://127.0.0.1:8080 "
                            "(http:// or https://, a host and an optional port, no path)",
                            given)};
  }
  return {url, ""};
}

void addClientCommands(CLI::App& app, ClientOptions& o, int& exit_code) {
  // submit
  auto* submit = app.add_subcommand("submit", "Submit a task (an exec task by default)");
  submit->footer(
      "Examples:\n"
      "  drover submit -- echo hello\n"
      "  drover submit --wait --timeout 10 -- sh -c 'sleep 1; date'\n"
      "  drover submit --type sleep --payload '{\"ms\": 500}' --priority 9\n"
      "  drover submit --file tasks.jsonl        # one task JSON per line, one batch");
  struct SubmitArgs {
    std::string type, payload, id, file;
    int priority = -1, max_attempts = -1;
    double timeout = 0;
    bool wait = false;
    std::vector<std::string> argv;
    std::string queue;
    std::vector<std::string> labels;
    std::string run_at;
    std::optional<double> delay;
    std::vector<std::string> after;
  };
  auto sa = std::make_shared<SubmitArgs>();
  submit->add_option("--type", sa->type, "Task type (noop, echo, sleep, fail, exec, ...)");
  submit->add_option("--payload", sa->payload, "Task payload as JSON");
  submit->add_option("--id", sa->id, "Task id (default: generated)");
  submit->add_option("--priority", sa->priority, "0-9, higher runs first (default 5)");
  submit->add_option("--max-attempts", sa->max_attempts, "Attempts before failed (default 3)");
  submit->add_option("--timeout", sa->timeout, "Per-attempt timeout in seconds");
  submit->add_option("--queue", sa->queue, "Queue (default: default; docs/ROUTING.md)");
  submit->add_option("--label", sa->labels, "A label the worker must have (repeatable)");
  submit->add_option("--file", sa->file, "Submit every task of a JSON-lines file in one batch");
  submit->add_option("--delay", sa->delay, "Start no sooner than this many seconds from now")
      ->excludes(
          submit->add_option("--run-at", sa->run_at, "Start no sooner than this RFC 3339 time"));
  submit->add_option("--after", sa->after,
                     "Run only after this task succeeded (repeatable; depends_on)");
  submit->add_flag("--wait", sa->wait, "Wait for the task to finish and print it");
  submit->add_option("argv", sa->argv, "Command and arguments of an exec task (after --)");
  submit->callback([&o, &exit_code, sa] {
    if (!sa->file.empty()) {
      std::FILE* f = std::fopen(sa->file.c_str(), "r");
      if (f == nullptr) {
        std::cerr << "drover: cannot open " << sa->file << "\n";
        exit_code = kExitUsage;
        return;
      }
      Json tasks = Json::array();
      char* line = nullptr;
      size_t cap = 0;
      int lineno = 0;
      while (getline(&line, &cap, f) > 0) {
        ++lineno;
        std::string text(line);
        if (text.find_first_not_of(" \t\r\n") == std::string::npos) continue;
        Json t = Json::parse(text, nullptr, false);
        if (t.is_discarded()) {
          std::cerr << "drover: " << sa->file << ":" << lineno << ": not JSON\n";
          std::free(line);
          std::fclose(f);
          exit_code = kExitUsage;
          return;
        }
        tasks.push_back(t);
      }
      std::free(line);
      std::fclose(f);
      Json body = {{"tasks", tasks}};
      auto a = call(o, "POST", "/v1/tasks/batch", &body);
      if (a.status != 200 && a.status != 202) {
        exit_code = failure(a);
        return;
      }
      std::vector<std::string> ids = a.body.value("ids", std::vector<std::string>{});
      if (!sa->wait) {
        for (const auto& id : ids) std::cout << id << "\n";
        exit_code = kExitOk;
        return;
      }
      std::vector<Json> done;
      exit_code = waitAll(o, ids, 0, done);
      if (exit_code == kExitOk) exit_code = reportFinished(o, done);
      return;
    }
    Json body = Json::object();
    if (!sa->argv.empty()) {
      if (!sa->type.empty() && sa->type != "exec") {
        std::cerr << "drover: a command after -- makes an exec task; drop --type\n";
        exit_code = kExitUsage;
        return;
      }
      body["type"] = "exec";
      body["payload"] = {{"argv", sa->argv}};
    } else if (sa->type.empty()) {
      std::cerr << "drover: give a command after -- or a --type\n";
      exit_code = kExitUsage;
      return;
    } else {
      body["type"] = sa->type;
    }
    if (!sa->payload.empty()) {
      Json p = Json::parse(sa->payload, nullptr, false);
      if (p.is_discarded()) {
        std::cerr << "drover: --payload is not JSON\n";
        exit_code = kExitUsage;
        return;
      }
      body["payload"] = p;
    }
    if (!sa->id.empty()) body["id"] = sa->id;
    if (sa->priority >= 0) body["priority"] = sa->priority;
    if (sa->max_attempts >= 0) body["max_attempts"] = sa->max_attempts;
    if (sa->timeout > 0) body["timeout_s"] = sa->timeout;
    if (!sa->queue.empty()) body["queue"] = sa->queue;
    if (!sa->labels.empty()) body["labels"] = sa->labels;
    if (!sa->run_at.empty()) body["run_at"] = sa->run_at;
    if (sa->delay) body["delay_s"] = *sa->delay;
    if (!sa->after.empty()) body["depends_on"] = sa->after;
    auto a = call(o, "POST", "/v1/tasks", &body);
    if (a.status != 200 && a.status != 202) {
      exit_code = failure(a);
      return;
    }
    std::string id = a.body.value("id", "");
    if (!sa->wait) {
      std::cout << (o.json ? a.body.dump() : id) << "\n";
      exit_code = kExitOk;
      return;
    }
    std::vector<Json> done;
    exit_code = waitAll(o, {id}, 0, done);
    if (exit_code == kExitOk) exit_code = reportFinished(o, done);
  });

  // status
  auto* status = app.add_subcommand("status", "Show one task");
  auto status_id = std::make_shared<std::string>();
  status->add_option("id", *status_id, "Task id")->required();
  status->callback(
      [&o, &exit_code, status_id] { exit_code = show(o, "/v1/tasks/" + *status_id, printTask); });

  // wait
  auto* wait = app.add_subcommand("wait", "Wait until tasks finish; exit 1 if any did not succeed");
  wait->footer("Examples:\n  drover wait ID\n  drover wait --timeout 60 ID1 ID2 ID3");
  auto wait_ids = std::make_shared<std::vector<std::string>>();
  auto wait_timeout = std::make_shared<double>(0);
  wait->add_option("ids", *wait_ids, "Task ids")->required();
  wait->add_option("--timeout", *wait_timeout, "Give up after this many seconds (exit 7)");
  wait->callback([&o, &exit_code, wait_ids, wait_timeout] {
    std::vector<Json> done;
    exit_code = waitAll(o, *wait_ids, *wait_timeout, done);
    if (exit_code == kExitOk) exit_code = reportFinished(o, done);
  });

  auto control = addControlCommands(app, o, exit_code);

  // tasks
  auto* list = app.add_subcommand("tasks", "List tasks, newest first");
  list->footer(
      "Examples:\n  drover tasks\n  drover tasks --state failed --limit 20\n"
      "  drover tasks --cursor NEXT      # the page after the one that printed NEXT");
  struct ListArgs {
    std::string state, cursor;
    int limit = 50;
  };
  auto la = std::make_shared<ListArgs>();
  list->add_option("--state", la->state,
                   "Only tasks in this state (pending, assigned, running, succeeded, failed, "
                   "cancelled)");
  list->add_option("--limit", la->limit, "At most this many (1-1000)")->capture_default_str();
  list->add_option("--cursor", la->cursor, "Start after this point: the cursor a page printed");
  list->callback([&o, &exit_code, la] {
    if (la->limit < 1 || la->limit > 1000) {
      std::cerr << "drover: --limit must be from 1 to 1000\n";
      exit_code = kExitUsage;
      return;
    }
    std::string path = fmt::format("/v1/tasks?order=newest&limit={}", la->limit);
    if (!la->state.empty()) path += "&state=" + httplib::detail::encode_query_param(la->state);
    if (!la->cursor.empty()) {
      path += "&cursor=" + httplib::detail::encode_query_param(la->cursor);
    }
    auto a = call(o, "GET", path);
    if (a.status != 200) {
      exit_code = failure(a);
      return;
    }
    exit_code = kExitOk;
    if (o.json) {
      std::cout << a.body.dump() << "\n";
      return;
    }
    Json tasks = a.body.value("tasks", Json::array());
    std::cout << fmt::format("{:<34} {:<8} {:<10} {:>8}  {:<19}  {}\n", "ID", "TYPE", "STATE",
                             "ATTEMPTS", "SUBMITTED", "WORKER");
    for (const auto& t : tasks) {
      std::string state = str(t, "state");
      // Pad before painting: the colour codes would count as width.
      std::string padded = state + std::string(state.size() < 10 ? 10 - state.size() : 0, ' ');
      std::cout << fmt::format("{:<34} {:<8} {} {:>8}  {:<19}  {}\n", str(t, "id"), str(t, "type"),
                               paint(state) + padded.substr(state.size()), str(t, "attempts"),
                               localTime(t.value("submitted_at", Json())), str(t, "worker"));
    }
    // How many there are in all: the retained tasks per state, from GET /v1/cluster.
    std::string total = "?";
    auto c = call(o, "GET", "/v1/cluster");
    if (c.status == 200 && c.body.contains("tasks") && c.body["tasks"].is_object()) {
      size_t n = 0;
      for (const auto& [state, count] : c.body["tasks"].items()) {
        if ((la->state.empty() || state == la->state) && count.is_number_unsigned()) {
          n += count.get<size_t>();
        }
      }
      // The counts are cached by the node for about a second: never fewer than shown here.
      total = std::to_string(std::max(n, tasks.size()));
    }
    std::string what = la->state.empty() ? "tasks" : la->state + " tasks";
    std::cout << fmt::format("showing {} of {} {}, newest first{}\n", tasks.size(), total, what,
                             la->cursor.empty() ? "" : " (after the cursor)");
    if (a.body.contains("next") && a.body["next"].is_string()) {
      std::cout << fmt::format("next page: drover tasks{}{} --cursor {}\n",
                               la->state.empty() ? "" : " --state " + la->state,
                               la->limit == 50 ? "" : fmt::format(" --limit {}", la->limit),
                               a.body["next"].get<std::string>());
    }
  });

  // workers
  auto* workers = app.add_subcommand("workers", "List live workers");
  workers->callback([&o, &exit_code] {
    exit_code = show(o, "/v1/workers", [](const Json& body) {
      std::cout << fmt::format("{:<28} {:>5} {:>7} {:>8}  {:<16}  {:<16}  {}\n", "ID", "SLOTS",
                               "RUNNING", "ASSIGNED", "QUEUES", "LABELS", "ROLE");
      auto joined = [](const Json& list) {
        std::string out;
        for (const auto& l : list) {
          if (l.is_string()) out += (out.empty() ? "" : ",") + l.get<std::string>();
        }
        return out.empty() ? std::string("-") : out;
      };
      for (const auto& w : body.value("workers", Json::array())) {
        std::cout << fmt::format(
            "{:<28} {:>5} {:>7} {:>8}  {:<16}  {:<16}  {}\n", str(w, "id"), str(w, "slots"),
            str(w, "running"), str(w, "assigned"), joined(w.value("queues", Json::array())),
            joined(w.value("labels", Json::array())), w.value("leader", false) ? "leader" : "");
      }
    });
  });

  // cluster
  auto* cluster = app.add_subcommand("cluster", "Show the cluster: leader, epoch, task counts");
  cluster->callback([&o, &exit_code] {
    exit_code = show(o, "/v1/cluster", [](const Json& body) {
      Json zk = body.value("zookeeper", Json::object());
      std::cout << fmt::format("leader:     {} (epoch {})\n", str(body, "leader"),
                               str(body, "epoch"));
      std::cout << fmt::format("zookeeper:  {}, session {}, timeout {} ms\n", str(zk, "state"),
                               str(zk, "session_id"), str(zk, "session_timeout_ms"));
      std::cout << fmt::format("workers:    {}\n", str(body, "workers"));
      std::cout << "tasks:\n";
      Json counts = body.value("tasks", Json::object());
      for (const char* state :
           {"pending", "assigned", "running", "succeeded", "failed", "cancelled"}) {
        std::string padded = std::string(state) + ":";
        padded.resize(12, ' ');
        std::cout << "  " << padded << fmt::format("{:>8}", str(counts, state)) << "\n";
      }
    });
  });

  auto routing = addRoutingCommands(app, o, exit_code);
  auto schedules = addScheduleCommands(app, o, exit_code);

  for (auto* sub : {submit, status, wait, control[0], control[1], list, workers, cluster,
                    routing[0], routing[1], routing[2], routing[3], routing[4], routing[5],
                    schedules[0], schedules[1], schedules[2], schedules[3]}) {
    // Not CLI11's envname: seven subcommands share o.server, and the variable filled in for a
    // subcommand not run would overwrite the flag of the one run. resolveServer() applies it.
    sub->add_option(
        "--server", o.server,
        fmt::format("Drover API URL (default: DROVER_SERVER, else {})", kDefaultServer));
    sub->add_option("--token", o.token, "API token (default: DROVER_TOKEN; docs/SECURITY.md)");
    sub->add_option("--ca-file", o.ca_file,
                    "PEM CA file to verify an https server with (default: DROVER_CA_FILE)");
    sub->add_flag("--json", o.json, "Machine-readable output");
  }
}

}  // namespace drover::app
