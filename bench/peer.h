// The peer of `make bench`: another task queue measured in the same run on the same machine, so
// that Drover's rates can be read as ratios to it (machine noise moves both). Today one peer,
// Celery 5 with a Redis broker (bench/celery_peer.py); docs/PERFORMANCE.md, "The Celery peer".
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace drover::bench {

// The sizes the peer runs, copied from drover_bench's own scenarios so both measure the same.
struct PeerOptions {
  std::string script;  // bench/celery_peer.py
  int batch_tasks = 0;
  int batch_clients = 0;
  int single_tasks = 0;
  int single_clients = 0;
  double light_rate = 0;
  double latency_seconds = 0;
  int concurrency = 0;                   // worker processes: Drover's nodes x slots
  std::vector<std::string> persistence;  // "everysec" and/or "none" (Redis AOF or nothing)
  std::vector<std::string> only;         // scenario name prefixes, as drover_bench's --only
  int stall_seconds = 30;
};

// What the peer run gave. `ok` false: a scenario failed or the script could not run (`detail`);
// `skipped`: the packages are missing (exit 77), not a failure. `doc`: the script's JSON.
struct PeerResult {
  bool ok = false;
  bool skipped = false;
  std::string detail;
  nlohmann::json doc;
};

// Runs the script (its progress lines pass through to stderr) and reads its JSON. Blocking.
PeerResult runCeleryPeer(const PeerOptions& options);

// Per persistence run and scenario: Drover's figure, the peer's, and Drover / peer. Rates
// (e2e_rate, submit_rate): above 1 means Drover is faster. Latencies (submit_to_done p50/p99):
// below 1 means Drover is faster. Figures missing on either side are left out.
nlohmann::json ratiosToPeer(const nlohmann::json& drover_scenarios, const nlohmann::json& peer);

// One line per figure, for the driver's console output.
std::string ratiosText(const nlohmann::json& ratios);

}  // namespace drover::bench
