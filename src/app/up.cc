#include "app/up.h"

#include <dirent.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <iostream>
#include <set>
#include <sstream>
#include <thread>

#include "local/ports.h"
#include "local/process.h"
#include "local/zk_cluster.h"

namespace drover::app {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

// How long the nodes get to stop gracefully (their tasks are stopped: SIGTERM, then SIGKILL after
// the task's kill grace) before they are SIGKILLed.
constexpr auto kNodeStopDeadline = 20s;

// This process's children that it did not start itself: with PR_SET_CHILD_SUBREAPER, the
// processes of a node's tasks become ours when their node dies before them.
std::vector<pid_t> adoptedChildren(const std::set<pid_t>& ours) {
  std::vector<pid_t> out;
  const pid_t self = ::getpid();
  DIR* proc = ::opendir("/proc");
  if (proc == nullptr) return out;
  while (dirent* e = ::readdir(proc)) {
    char* end = nullptr;
    long pid = std::strtol(e->d_name, &end, 10);
    if (end == e->d_name || *end != '\0' || pid <= 0) continue;
    // getline, not an istreambuf_iterator: the read of a process that exits after the open fails
    // with ESRCH, which libstdc++'s filebuf throws through an iterator (it killed `drover up` in
    // an ASan CI run); an istream operation turns it into a failed read.
    std::ifstream f(std::string("/proc/") + e->d_name + "/stat");
    std::string stat;
    if (!std::getline(f, stat)) continue;  // gone meanwhile
    auto paren = stat.rfind(')');
    if (paren == std::string::npos) continue;
    std::istringstream rest(stat.substr(paren + 1));
    char state = 0;
    long ppid = 0;
    rest >> state >> ppid;
    if (ppid == self && !ours.count(static_cast<pid_t>(pid)))
      out.push_back(static_cast<pid_t>(pid));
  }
  ::closedir(proc);
  return out;
}

// Reaps adopted children that have exited, leaving our own (a Process reaps those).
void reapAdopted(const std::set<pid_t>& ours) {
  for (pid_t pid : adoptedChildren(ours)) ::waitpid(pid, nullptr, WNOHANG);
}

// SIGKILLs every adopted child with its process group (a task runs in a group of its own) and
// reaps it, until none is left or `deadline`; their own children come to us in turn. Returns how
// many were killed.
int killAdopted(const std::set<pid_t>& ours, Clock::time_point deadline) {
  int killed = 0;
  while (true) {
    auto left = adoptedChildren(ours);
    if (left.empty() || Clock::now() >= deadline) return killed;
    for (pid_t pid : left) {
      // Unreaped, the child pins its pid and group id: neither can name a stranger here.
      if (::getpgid(pid) == pid) ::kill(-pid, SIGKILL);
      if (::kill(pid, SIGKILL) == 0) ++killed;
      ::waitpid(pid, nullptr, 0);
    }
  }
}

}  // namespace

int runUp(const UpConfig& config, const std::string& self_exe, const base::StopFlag& stop) {
  // Ctrl-C must reach us only, and we stop the nodes gracefully ourselves.
  local::leaveTerminatingSignalsAlone();
  // Orphaned task processes (their node died first) become ours instead of init's, so that we
  // can stop them too: nothing `drover up` started outlives it.
  if (::prctl(PR_SET_CHILD_SUBREAPER, 1) != 0) {
    spdlog::warn("cannot become a subreaper: {}", std::strerror(errno));
  }
  for (int i = 0; i < config.nodes; ++i) {
    int port = config.http_port + i;
    if (local::portInUse(static_cast<uint16_t>(port))) {
      std::cerr << "drover up: port " << port << " is in use (node " << i + 1
                << "'s API); choose others with --http-port\n";
      return 4;
    }
  }
  std::unique_ptr<local::ZkCluster> zk;
  try {
    local::ZkClusterOptions zo;
    // Sessions expire on tick boundaries, so a dead node is noticed within its session timeout
    // plus one tick; 250 ms keeps that slack small. Sessions of 1-20 s are allowed.
    zo.tick_time_ms = 250;
    zo.min_session_timeout_ms = 1000;
    zo.max_session_timeout_ms = 20000;
    zo.log_level = "warn";
    zo.force_sync = true;  // a local cluster keeps what it acknowledged
    zk = local::ZkCluster::standalone(zo);
  } catch (const std::exception& e) {
    std::cerr << "drover up: cannot start ZooKeeper: " << e.what() << "\n"
              << "  (it needs Debian's 'zookeeper' package and Java: scripts/install-deps.sh)\n";
    return 3;
  }
  spdlog::info("ZooKeeper serving on {} (data in {})", zk->connectString(), zk->dir(0));

  std::string logs = local::makeTempDir("drover-up-logs");
  std::vector<std::unique_ptr<local::Process>> nodes;
  std::set<pid_t> ours;
  for (int i = 0; i < config.nodes; ++i) {
    local::ProcessOptions po;
    po.argv = {self_exe,
               "node",
               "--zk",
               zk->connectString(),
               "--http",
               fmt::format("127.0.0.1:{}", config.http_port + i),
               "--id",
               fmt::format("node-{}", i + 1),
               "--slots",
               std::to_string(config.slots),
               "--session-timeout-ms",
               std::to_string(config.session_timeout_ms)};
    po.stdout_path = fmt::format("{}/node-{}.log", logs, i + 1);
    po.stderr_path = po.stdout_path;
    nodes.push_back(std::make_unique<local::Process>(po));
    ours.insert(nodes.back()->pid());
  }
  ours.insert(zk->pid(0));

  // Stops every node gracefully (SIGTERM: a node stops its tasks and closes its session), SIGKILLs
  // what is left at the deadline, then kills whatever task process outlived its node.
  auto stopAll = [&] {
    for (auto& n : nodes) n->terminate();
    auto deadline = Clock::now() + kNodeStopDeadline;
    for (size_t i = 0; i < nodes.size(); ++i) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
      if (!nodes[i]->wait(std::max(left, 0ms))) {
        spdlog::warn("node-{} did not stop within {} s; killing it", i + 1,
                     std::chrono::duration_cast<std::chrono::seconds>(kNodeStopDeadline).count());
        nodes[i]->kill9();
        nodes[i]->wait(5s);
      }
    }
    if (int n = killAdopted(ours, Clock::now() + 10s); n > 0) {
      spdlog::warn("killed {} task process(es) left behind by stopped nodes", n);
    }
    nodes.clear();
    zk.reset();  // stops the server and removes its folder
    killAdopted({}, Clock::now() + 5s);
  };

  for (int i = 0; i < config.nodes; ++i) {
    if (!nodes[i]->waitForOutput("serving the API", 30s)) {
      auto status = nodes[i]->exitStatus();
      std::string log = nodes[i]->readStdout();
      bool port_taken = (status && status->code == 4) || log.find("is in use") != std::string::npos;
      if (port_taken) {
        std::cerr << "drover up: port " << config.http_port + i << " is in use (node " << i + 1
                  << "'s API); choose others with --http-port\n";
      } else {
        std::cerr << "drover up: node " << i + 1 << " did not start:\n" << log << "\n";
      }
      stopAll();
      std::cerr << "drover up: node logs kept in " << logs << "\n";
      return port_taken ? 4 : 3;
    }
  }
  std::cout << "\nDrover is up: " << config.nodes << " nodes, ZooKeeper at " << zk->connectString()
            << "\n"
            << "  API:        http://127.0.0.1:" << config.http_port << "\n"
            << "  try:        " << self_exe << " submit --wait -- echo hello\n"
            << "  node logs:  " << logs << "\n"
            << "Ctrl-C stops everything.\n"
            << std::flush;

  // Stay up until told to stop; report a node that died on its own.
  std::vector<bool> reported(nodes.size(), false);
  while (!stop.waitFor(200ms)) {
    for (size_t i = 0; i < nodes.size(); ++i) {
      if (!reported[i] && !nodes[i]->alive()) {
        reported[i] = true;
        spdlog::warn("node-{} exited; its log: {}", i + 1, nodes[i]->stdoutPath());
      }
    }
    reapAdopted(ours);
  }
  std::cout << "\nstopping " << nodes.size() << " nodes and ZooKeeper ...\n" << std::flush;
  stopAll();
  std::cout << "stopped; node logs kept in " << logs << "\n" << std::flush;
  return 0;
}

}  // namespace drover::app
