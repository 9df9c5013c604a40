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
// nodes, all on loopback. Blocks until `stop` (SIGINT/SIGTERM), then stops every process it
// started and waits for them. Children die with it even if it is killed (PR_SET_PDEATHSIG).
int runUp(const UpConfig& config, const std::string& self_exe, const base::StopFlag& stop);

}  // namespace drover::app
