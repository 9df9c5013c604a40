// A leader-election candidate in a process of its own, for the integration tests: it stands for
// election under --root and, while it leads, appends a fenced record to {root}/log every few
// milliseconds. It reports on stdout, one line each, flushed:
//   ready | elected E | lost REASON | watch | write E | fenced E | write-error CODE | session S G
// SIGTERM resigns cleanly and exits 0.
#include <CLI/CLI.hpp>
#include <csignal>
#include <iostream>
#include <mutex>
#include <thread>

#include "base/log.h"
#include "coord/paths.h"
#include "coord/zk/zk_coordination.h"
#include "recipes/election.h"

namespace {

std::mutex g_out;
void say(const std::string& line) {
  std::lock_guard lock(g_out);
  std::cout << line << std::endl;
}

volatile std::sig_atomic_t g_stop = 0;

}  // namespace

int main(int argc, char** argv) {
  using namespace drover;
  CLI::App app{"election candidate (test tool)"};
  std::string zk, root, id;
  int session_ms = 2000, interval_ms = 20;
  app.add_option("--zk", zk)->required();
  app.add_option("--root", root)->required();
  app.add_option("--id", id)->required();
  app.add_option("--session-timeout-ms", session_ms);
  app.add_option("--write-interval-ms", interval_ms);
  CLI11_PARSE(app, argc, argv);
  base::initLogging("warn");
  std::signal(SIGTERM, [](int) { g_stop = 1; });

  auto conn = coord::ZkCoordination::connect({zk, std::chrono::milliseconds(session_ms)});
  if (!conn) {
    std::cerr << conn.error().toString() << "\n";
    return 2;
  }
  auto& c = **conn;
  if (!c.waitConnected(std::chrono::seconds(30))) return 3;
  for (const char* dir : {"/election", "/log"}) {
    if (!coord::ensurePath(c, root + dir)) return 4;
  }
  c.addSessionListener([](const coord::SessionEvent& e) {
    static constexpr const char* kNames[] = {"connecting", "connected", "disconnected", "expired",
                                             "closed"};
    say(fmt::format("session {} {}", kNames[static_cast<int>(e.state)], e.generation));
  });

  recipes::LeaderElection* self = nullptr;
  recipes::LeaderElection election(
      c,
      recipes::ElectionOptions{root + "/election", root + "/epoch", root + "/leader", id,
                               fmt::format(R"({{"id":"{}","epoch":{{epoch}}}})", id)},
      recipes::LeaderElection::Listener{[](int32_t e) { say(fmt::format("elected {}", e)); },
                                        [](const std::string& reason) { say("lost " + reason); },
                                        [] { say("watch"); }});
  self = &election;
  election.start();
  say("ready");

  while (g_stop == 0) {
    std::this_thread::sleep_for(std::chrono::milliseconds(interval_ms));
    if (!self->isLeader()) continue;
    int32_t epoch = self->epoch();
    auto r = c.multi(recipes::fenced(root + "/epoch", epoch,
                                     {coord::CreateOp{root + "/log/w-",
                                                      fmt::format("{} {}", id, epoch),
                                                      coord::CreateMode::kPersistentSequential,
                                                      {}}}))
                 .get();
    if (r) {
      say(fmt::format("write {}", epoch));
    } else if (r.error().code() == coord::Code::kBadVersion && r.error().failedOp() == 0) {
      say(fmt::format("fenced {}", epoch));
      self->stepDown("epoch moved");
    } else {
      say("write-error " + std::string(coord::codeName(r.error().code())));
    }
  }
  election.stop();
  c.close();
  return 0;
}
