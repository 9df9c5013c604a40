#pragma once

#include <string>

#include "base/stop_flag.h"

namespace drover::app {

struct UpConfig {
  int nodes = 3;
  int http_port = 8080;  // node i serves on http_port + i
  int slots = 4;
  int session_timeout_ms = 4000;
};

// `drover up`: a local ZooKeeper server (Debian's package, run with the system Java) and N
// nodes, all on loopback. Blocks until `stop` (SIGINT/SIGTERM), then stops the nodes gracefully
// (SIGTERM; SIGKILL past a deadline), kills any task process that outlived its node (this process
// is their subreaper), stops ZooKeeper and waits for all of them; the node logs are kept and
// their folder printed. Children die with it even if it is killed (PR_SET_PDEATHSIG).
// Returns 0 after a stop, 3 when ZooKeeper or a node cannot start, 4 when a node's port is
// taken (nothing is shared: "port P is in use").
int runUp(const UpConfig& config, const std::string& self_exe, const base::StopFlag& stop);

}  // namespace drover::app
