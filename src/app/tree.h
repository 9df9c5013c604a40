#pragma once

// The znode tree a node starts on (docs/ZNODES.md): its persistent directories, and the protocol
// that wrote it. Protocol 1 (a znode per task) and protocol 2 (batch records) keep tasks in
// different places, so a node never runs on a tree of the other protocol: it refuses to start
// and says what to do (no data moves between them; a fresh --zk-root is the way).

#include <string>
#include <vector>

#include "coord/coordination.h"
#include "tasks/layout.h"

namespace drover::app {

// The persistent directories of a tree of `protocol` (1 or 2).
std::vector<std::string> treeDirectories(const tasks::Layout& layout, int protocol);

// Creates the directories of `protocol` once (cheap when they exist) and, for protocol 2, the
// /protocol marker. The value is "" when the node may run, else why it must not (the tree was
// written by the other protocol) and what to do. An error is a coordination failure: retry.
// Blocking; not for an event thread.
coord::Result<std::string> prepareTree(coord::Coordination& c, const tasks::Layout& layout,
                                       int protocol);

}  // namespace drover::app
