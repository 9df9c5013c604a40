#include "jepsen/fleet.h"

#include <httplib.h>

#include <csignal>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include "base/eventually.h"
#include "local/ports.h"

namespace drover::jepsen {

using namespace std::chrono_literals;

namespace {

std::string readFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

httplib::Client client(const std::string& url, std::chrono::milliseconds timeout) {
  httplib::Client cli(url);
  auto s = std::chrono::duration_cast<std::chrono::seconds>(timeout);
  auto us = std::chrono::duration_cast<std::chrono::microseconds>(timeout - s);
  cli.set_connection_timeout(s.count(), us.count());
  cli.set_read_timeout(s.count(), us.count());
  cli.set_write_timeout(s.count(), us.count());
  cli.set_tcp_nodelay(true);
  return cli;
}

}  // namespace

HttpReply httpGet(const std::string& url, const std::string& path,
                  std::chrono::milliseconds timeout) {
  auto cli = client(url, timeout);
  auto r = cli.Get(path);
  if (!r) return {};
  return {r->status, r->body};
}

HttpReply httpPost(const std::string& url, const std::string& path, const std::string& body,
                   std::chrono::milliseconds timeout) {
  auto cli = client(url, timeout);
  auto r = cli.Post(path, body, "application/json");
  if (!r) return {};
  return {r->status, r->body};
}

Fleet::Fleet(FleetOptions options) : options_(std::move(options)) {
  std::filesystem::create_directories(options_.out + "/nodes");
  local::ZkClusterOptions zo;
  zo.jvm_heap = "192m";
  zk_ = local::ZkCluster::ensemble(3, zo);
  for (uint16_t p : local::freePorts(options_.nodes)) ports_.push_back(p);
  for (int p : ports_) urls_.push_back("http://127.0.0.1:" + std::to_string(p));
  nodes_.assign(options_.nodes, 0);
  current_.assign(options_.nodes, 0);
  for (int i = 0; i < options_.nodes; ++i) launch(i);
  for (int i = 0; i < options_.nodes; ++i) {
    bool up = base::eventually(
        [&] { return current(i).process->readStderr().find(" registered") != std::string::npos; },
        60s, 20ms);
    if (!up) {
      throw std::runtime_error("node " + name(i) + " did not register; log " + current(i).log_path +
                               ":\n" + current(i).process->readStderr());
    }
  }
  if (!base::eventually([&] { return leaderIndex() >= 0; }, 30s, 50ms)) {
    throw std::runtime_error("no leader within 30 s");
  }
}

Fleet::~Fleet() = default;

void Fleet::launch(int i) {
  auto inc = std::make_unique<Incarnation>();
  inc->node = i;
  inc->number = ++nodes_[i];
  inc->log_path = options_.out + "/nodes/" + name(i) + "." + std::to_string(inc->number) + ".log";
  std::vector<std::string> argv;
  if (i == options_.partition_node && options_.partition_uid >= 0) {
    std::string u = std::to_string(options_.partition_uid);
    argv = {"setpriv", "--reuid=" + u, "--regid=" + u, "--clear-groups", "--pdeathsig=KILL"};
  }
  for (std::string a :
       {options_.drover, std::string("node"), std::string("--zk"), zk_->connectString(),
        std::string("--zk-root"), options_.zk_root, std::string("--http"),
        "127.0.0.1:" + std::to_string(ports_[i]), std::string("--slots"),
        std::to_string(options_.slots), std::string("--session-timeout-ms"),
        std::to_string(options_.session_timeout_ms)}) {
    argv.push_back(std::move(a));
  }
  // Tasks append to the execution log, a host file: unsandboxed (docs/ISOLATION.md). The suite
  // checks scheduling under faults, not isolation.
  inc->process = std::make_unique<local::Process>(
      local::ProcessOptions{.argv = argv,
                            .env = {{"DROVER_EXEC_SANDBOX", "false"}},
                            .stdout_path = inc->log_path,
                            .stderr_path = inc->log_path});
  current_[i] = incarnations_.size();
  incarnations_.push_back(std::move(inc));
}

bool Fleet::running(int i) const { return current(i).process->alive(); }
pid_t Fleet::pid(int i) const { return current(i).process->pid(); }

int Fleet::leaderIndex() const {
  for (int i = 0; i < size(); ++i) {
    if (!current(i).process->alive()) continue;
    auto c = httpGet(urls_[i], "/v1/cluster", 1s);
    if (c.status != 200) continue;
    auto cj = Json::parse(c.body, nullptr, false);
    if (!cj.is_object() || !cj["leader"].is_string()) continue;
    if (cj["epoch"].is_number_integer()) {
      max_epoch_seen_ = std::max<int64_t>(max_epoch_seen_, cj["epoch"].get<int64_t>());
    }
    std::string leader = cj["leader"].get<std::string>();
    auto w = httpGet(urls_[i], "/v1/workers", 1s);
    if (w.status != 200) continue;
    auto wj = Json::parse(w.body, nullptr, false);
    if (!wj.is_object() || !wj["workers"].is_array()) continue;
    for (const auto& worker : wj["workers"]) {
      if (worker.value("id", "") != leader) continue;
      std::string http = worker.value("http", "");
      for (int k = 0; k < size(); ++k) {
        if (http == "127.0.0.1:" + std::to_string(ports_[k])) return k;
      }
    }
  }
  return -1;
}

void Fleet::kill9(int i) {
  auto& inc = current(i);
  if (!inc.process->alive()) return;
  inc.ended_by_suite = true;
  inc.process->kill9();
  inc.process->wait(10s);
}

void Fleet::pause(int i) { current(i).process->pause(); }
void Fleet::resume(int i) { current(i).process->resume(); }
void Fleet::signal(int i, int sig) { current(i).process->signal(sig); }

bool Fleet::restart(int i, std::chrono::milliseconds timeout) {
  kill9(i);
  launch(i);
  return base::eventually(
      [&] { return current(i).process->readStderr().find(" registered") != std::string::npos; },
      timeout, 20ms);
}

std::vector<int> Fleet::reapCrashed() {
  std::vector<int> out;
  for (int i = 0; i < size(); ++i) {
    auto& inc = current(i);
    if (!inc.ended_by_suite && !inc.crash_reported && !inc.process->alive()) {
      inc.crash_reported = true;
      out.push_back(i);
    }
  }
  return out;
}

void Fleet::stopAll(std::chrono::milliseconds grace) {
  for (int i = 0; i < size(); ++i) {
    auto& inc = current(i);
    if (!inc.process->alive()) continue;
    inc.ended_by_suite = true;
    inc.graceful_stop = true;
    inc.process->resume();
    inc.process->terminate();
  }
  for (int i = 0; i < size(); ++i) {
    auto& inc = current(i);
    if (!inc.ended_by_suite) continue;
    if (!inc.process->wait(grace)) inc.process->kill9();
    inc.process->wait(5s);
  }
}

std::vector<NodeRun> Fleet::runs() const {
  std::vector<NodeRun> out;
  for (const auto& inc : incarnations_) {
    NodeRun r;
    r.name = name(inc->node) + "#" + std::to_string(inc->number);
    r.pid = inc->process->pid();
    bool alive = inc->process->alive();
    r.ended_by_suite = inc->ended_by_suite;
    if (!alive && inc->process->exitStatus()) {
      const local::ExitStatus st = *inc->process->exitStatus();
      r.exit = st.toString();
      if (inc->graceful_stop && !(st.exited() && st.code == 0)) {
        // A graceful stop that did not end in exit 0: a crash or hang on the way out.
        r.ended_by_suite = false;
        r.exit += " on SIGTERM (a graceful stop must exit 0)";
      }
    }
    r.log_path = inc->log_path;
    r.log_findings = scanLog(readFile(inc->log_path));
    out.push_back(std::move(r));
  }
  return out;
}

}  // namespace drover::jepsen
