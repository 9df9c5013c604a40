// Routing through real `drover node` processes on a real ZooKeeper (docs/ROUTING.md): 1,000
// tasks of mixed queues, labels and types over four differently configured workers each run
// only where they may; an unroutable task waits and says why, then runs when a capable worker
// joins; a queue's limit is never exceeded (judged from the tasks' own start/end log); a paused
// queue holds its tasks until resumed; a drained worker finishes its task, takes no new one and
// leaves.
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <sys/stat.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "base/eventually.h"
#include "base/ids.h"
#include "local/ports.h"
#include "local/process.h"
#include "local/zk_cluster.h"

namespace drover {
namespace {

using namespace std::chrono_literals;
using Json = nlohmann::json;
namespace fs = std::filesystem;

// One worker's routing, as configured and as the test expects the leader to honour it.
struct WorkerSpec {
  std::string id;
  std::vector<std::string> queues;
  std::vector<std::string> labels;
  bool exec = true;
};

bool mayRun(const WorkerSpec& w, const std::string& queue, const std::vector<std::string>& labels,
            const std::string& type) {
  auto has = [](const std::vector<std::string>& v, const std::string& s) {
    return std::find(v.begin(), v.end(), s) != v.end();
  };
  if (!has(w.queues, queue)) return false;
  for (const auto& l : labels) {
    if (!has(w.labels, l)) return false;
  }
  return type != "exec" || w.exec;
}

class RoutingNodeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/drover-routing-XXXXXX";
    dir_ = ::mkdtemp(tmpl);
    root_ = "/routing-" + base::randomHex(4);
  }
  void TearDown() override {
    nodes_.clear();  // SIGKILLs each node's process group
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  // Starts a node (worker and leader candidate) with `w`'s routing; waits until it registered.
  int start(const WorkerSpec& w, int slots = 4) {
    int port = local::freePort();
    std::vector<std::string> argv = {DROVER_BINARY,
                                     "node",
                                     "--zk",
                                     local::ZkCluster::sharedStandalone().connectString(),
                                     "--zk-root",
                                     root_,
                                     "--http",
                                     "127.0.0.1:" + std::to_string(port),
                                     "--id",
                                     w.id,
                                     "--slots",
                                     std::to_string(slots),
                                     "--prefetch",
                                     "0",
                                     "--session-timeout-ms",
                                     "2000"};
    std::string queues;
    for (const auto& q : w.queues) queues += (queues.empty() ? "" : ",") + q;
    argv.insert(argv.end(), {"--queues", queues});
    for (const auto& l : w.labels) argv.insert(argv.end(), {"--label", l});
    auto p = std::make_unique<local::Process>(local::ProcessOptions{
        .argv = argv,
        .env = {{"DROVER_EXEC", w.exec ? "true" : "false"}, {"DROVER_EXEC_SANDBOX", "false"}}});
    bool up = base::eventually(
        [&] { return p->readStderr().find("worker " + w.id + " registered") != std::string::npos; },
        30s);
    EXPECT_TRUE(up) << p->readStderr();
    nodes_[w.id] = std::move(p);
    ports_[w.id] = port;
    if (port_ == 0) port_ = port;
    return port;
  }

  Json call(const std::string& method, const std::string& path, const Json& body = nullptr,
            int port = 0) {
    httplib::Client cli("127.0.0.1", port != 0 ? port : port_);
    cli.set_read_timeout(60);
    std::string data = body.is_null() ? "" : body.dump();
    auto r = method == "POST"     ? cli.Post(path, data, "application/json")
             : method == "PUT"    ? cli.Put(path, data, "application/json")
             : method == "DELETE" ? cli.Delete(path)
                                  : cli.Get(path);
    if (!r) return Json{{"http_error", httplib::to_string(r.error())}};
    Json j = Json::parse(r->body, nullptr, false);
    if (j.is_discarded()) j = Json::object();
    if (j.is_object()) j["http_status"] = r->status;
    return j;
  }

  std::vector<std::string> submitBatch(const Json& tasks) {
    Json r = call("POST", "/v1/tasks/batch", Json{{"tasks", tasks}});
    EXPECT_EQ(r.value("http_status", 0), 202) << r.dump();
    return r.value("ids", std::vector<std::string>{});
  }

  Json task(const std::string& id) { return call("GET", "/v1/tasks/" + id); }

  bool allTerminal(const std::vector<std::string>& ids) {
    for (const auto& id : ids) {
      std::string s = task(id).value("state", "");
      if (s != "succeeded" && s != "failed" && s != "cancelled") return false;
    }
    return true;
  }

  // An exec task that appends "start NS" and "end NS" lines to `log`, `ms` apart.
  Json logged(const std::string& queue, const std::string& log, int ms) {
    std::string sh =
        fmt::format("echo start $(date +%s%N) >> {0}; sleep {1}; echo end $(date +%s%N) >> {0}",
                    log, ms / 1000.0);
    return Json{{"type", "exec"}, {"queue", queue}, {"payload", {{"argv", {"sh", "-c", sh}}}}};
  }

  std::string dir_;
  std::string root_;
  std::map<std::string, std::unique_ptr<local::Process>> nodes_;
  std::map<std::string, int> ports_;
  int port_ = 0;
};

TEST_F(RoutingNodeTest, AThousandMixedTasksRunOnlyWhereTheyMayAndAnUnroutableOneWaitsForItsWorker) {
  const std::vector<WorkerSpec> fleet = {
      {"plain", {"default"}, {}, false},
      {"ssd", {"default", "etl"}, {"ssd"}, true},
      {"gpu", {"ml"}, {"gpu"}, true},
      {"big", {"default", "ml"}, {"gpu", "ssd"}, false},
  };
  for (const auto& w : fleet) start(w);
  struct Route {
    std::string queue;
    std::vector<std::string> labels;
    std::string type;
  };
  const std::vector<Route> routes = {
      {"default", {}, "noop"}, {"default", {"ssd"}, "noop"},   {"etl", {}, "exec"},
      {"ml", {"gpu"}, "noop"}, {"ml", {"gpu", "ssd"}, "echo"}, {"default", {}, "exec"},
      {"ml", {"gpu"}, "exec"}, {"default", {"gpu"}, "noop"},
  };
  std::map<std::string, size_t> route_of;
  std::vector<std::string> ids;
  for (int b = 0; b < 4; ++b) {
    Json batch = Json::array();
    for (int i = 0; i < 250; ++i) {
      const Route& r = routes[(b * 250 + i) % routes.size()];
      Json t = {{"type", r.type}, {"queue", r.queue}, {"labels", r.labels}};
      if (r.type == "exec") t["payload"] = {{"argv", {"true"}}};
      if (r.type == "echo") t["payload"] = {{"n", i}};
      batch.push_back(t);
    }
    auto got = submitBatch(batch);
    ASSERT_EQ(got.size(), 250u);
    for (size_t i = 0; i < got.size(); ++i) route_of[got[i]] = (b * 250 + i) % routes.size();
    ids.insert(ids.end(), got.begin(), got.end());
  }
  // Nobody has label "arm": it waits, says why, and holds up nothing.
  Json arm = call("POST", "/v1/tasks", Json{{"type", "noop"}, {"labels", {"arm"}}});
  ASSERT_EQ(arm.value("http_status", 0), 202) << arm.dump();
  const std::string arm_id = arm["id"];

  ASSERT_TRUE(base::eventually([&] { return allTerminal(ids); }, 120s));
  std::map<std::string, int> ran_on;
  for (const auto& id : ids) {
    Json t = task(id);
    const Route& r = routes[route_of[id]];
    ASSERT_EQ(t["state"], "succeeded") << t.dump();
    const std::string worker = t["worker"];
    ++ran_on[worker];
    auto w =
        std::find_if(fleet.begin(), fleet.end(), [&](const auto& f) { return f.id == worker; });
    ASSERT_NE(w, fleet.end()) << worker;
    EXPECT_TRUE(mayRun(*w, r.queue, r.labels, r.type))
        << id << " (" << r.queue << ", " << r.type << ") ran on " << worker;
  }
  EXPECT_EQ(ran_on.size(), fleet.size());  // every worker took part
  Json waiting = task(arm_id);
  EXPECT_EQ(waiting["state"], "pending") << waiting.dump();
  EXPECT_TRUE(base::eventually([&] {
    return task(arm_id).value("waiting_for", "") ==
           "no live worker of queue 'default' has labels [arm]";
  })) << task(arm_id).dump();

  start({"pi", {"default"}, {"arm"}, false}, 1);
  ASSERT_TRUE(
      base::eventually([&] { return task(arm_id).value("state", "") == "succeeded"; }, 30s));
  EXPECT_EQ(task(arm_id)["worker"], "pi");
  // The worker list shows what each serves.
  Json workers = call("GET", "/v1/workers");
  bool plain_has_no_exec = false;
  for (const auto& w : workers["workers"]) {
    if (w["id"] == "plain") {
      auto types = w.value("types", std::vector<std::string>{});
      plain_has_no_exec = std::find(types.begin(), types.end(), "exec") == types.end() &&
                          std::find(types.begin(), types.end(), "noop") != types.end();
    }
  }
  EXPECT_TRUE(plain_has_no_exec) << workers.dump();
}

TEST_F(RoutingNodeTest, AQueueLimitIsNeverExceededAndPauseHoldsUntilResume) {
  start({"a", {"default", "lim"}, {}, true}, 4);
  start({"b", {"default", "lim"}, {}, true}, 4);
  Json set = call("PUT", "/v1/queues/lim", Json{{"max_running", 2}});
  ASSERT_EQ(set.value("http_status", 0), 200) << set.dump();
  EXPECT_EQ(set["max_running"], 2);
  const std::string log = dir_ + "/lim.log";
  Json batch = Json::array();
  for (int i = 0; i < 12; ++i) batch.push_back(logged("lim", log, 150));
  auto ids = submitBatch(batch);
  ASSERT_TRUE(base::eventually([&] { return allTerminal(ids); }, 60s));
  // Replay the tasks' own log: at no instant were more than 2 running, and 2 did run together.
  std::ifstream in(log);
  std::vector<std::pair<int64_t, int>> marks;
  std::string what;
  int64_t at = 0;
  while (in >> what >> at) marks.emplace_back(at, what == "start" ? 1 : -1);
  ASSERT_EQ(marks.size(), 24u);
  std::sort(marks.begin(), marks.end());  // an end and a start at one ns: the end sorts first
  int running = 0;
  int peak = 0;
  for (const auto& [t, d] : marks) peak = std::max(peak, running += d);
  EXPECT_LE(peak, 2);
  EXPECT_EQ(peak, 2);

  // Pause: new tasks of the queue wait and say so; other queues go on; resume releases them.
  ASSERT_EQ(call("POST", "/v1/queues/lim/pause").value("http_status", 0), 200);
  auto held = submitBatch(Json::array(
      {Json{{"type", "noop"}, {"queue", "lim"}}, Json{{"type", "noop"}, {"queue", "lim"}}}));
  auto other = submitBatch(Json::array({Json{{"type", "noop"}}}));
  ASSERT_TRUE(base::eventually([&] { return allTerminal(other); }, 30s));
  EXPECT_FALSE(base::eventually([&] { return allTerminal(held); }, 500ms));
  EXPECT_EQ(task(held[0])["state"], "pending");
  // The API reads what waiting_for needs at most once a second.
  EXPECT_TRUE(base::eventually([&] {
    return task(held[0]).value("waiting_for", "") == "queue 'lim' is paused";
  })) << task(held[0]).dump();
  Json queues = call("GET", "/v1/queues");
  bool listed = false;
  for (const auto& q : queues["queues"]) {
    if (q["name"] == "lim") listed = q["paused"] == true && q["max_running"] == 2;
  }
  EXPECT_TRUE(listed) << queues.dump();
  ASSERT_EQ(call("POST", "/v1/queues/lim/resume").value("http_status", 0), 200);
  EXPECT_TRUE(base::eventually([&] { return allTerminal(held); }, 30s));
  // Bad input changes nothing.
  EXPECT_EQ(call("PUT", "/v1/queues/lim", Json{{"max_running", -1}}).value("http_status", 0), 400);
  EXPECT_EQ(call("PUT", "/v1/queues/lim", Json{{"speed", 1}}).value("http_status", 0), 400);
  EXPECT_EQ(call("GET", "/v1/queues")["queues"][1].value("max_running", -1), 2);
}

TEST_F(RoutingNodeTest, ADrainedWorkerFinishesItsTaskTakesNothingNewAndLeaves) {
  start({"old", {"default"}, {}, true}, 2);
  const std::string log = dir_ + "/drain.log";
  Json first = call("POST", "/v1/tasks", logged("default", log, 1500));
  ASSERT_EQ(first.value("http_status", 0), 202);
  const std::string first_id = first["id"];
  ASSERT_TRUE(
      base::eventually([&] { return task(first_id).value("state", "") == "running"; }, 30s));
  ASSERT_EQ(call("POST", "/v1/workers/old/drain").value("http_status", 0), 202);
  EXPECT_EQ(call("POST", "/v1/workers/nobody/drain").value("http_status", 0), 404);
  start({"new", {"default"}, {}, true}, 2);
  auto later = submitBatch(Json::array({Json{{"type", "noop"}}, Json{{"type", "noop"}}}));
  ASSERT_TRUE(base::eventually([&] { return allTerminal(later); }, 30s));
  for (const auto& id : later) EXPECT_EQ(task(id)["worker"], "new");
  ASSERT_TRUE(base::eventually([&] { return allTerminal({first_id}); }, 30s));
  EXPECT_EQ(task(first_id)["state"], "succeeded");
  EXPECT_EQ(task(first_id)["worker"], "old");
  // Once it holds nothing it leaves /workers; its process keeps serving.
  ASSERT_TRUE(base::eventually(
      [&] {
        Json w = call("GET", "/v1/workers");
        return w.contains("workers") && w["workers"].size() == 1 && w["workers"][0]["id"] == "new";
      },
      30s));
  EXPECT_TRUE(nodes_["old"]->alive());
  EXPECT_NE(nodes_["old"]->readStderr().find("worker old drained"), std::string::npos);
}

}  // namespace
}  // namespace drover
