#pragma once

// Drover nodes for the end-to-end benches (delay_accuracy, dag_throughput): `count` nodes on
// loopback, free ports, protocol 2, each waited for until its worker registered, then a leader.
// The processes end (by PID) when the value is destroyed.

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "local/process.h"

namespace drover::bench {

struct BenchNodes {
  std::vector<std::unique_ptr<local::Process>> processes;
  std::vector<int> ports;  // their HTTP ports, in the same order
};

// Nodes "{prefix}-{i}" of the `drover` binary on ZooKeeper `zk` under `root`, `slots` each.
// nullopt, after printing why to stderr, when one does not start or no leader is elected.
std::optional<BenchNodes> startBenchNodes(const std::string& drover, const std::string& zk,
                                          const std::string& root, const std::string& prefix,
                                          int count, int slots);

}  // namespace drover::bench
