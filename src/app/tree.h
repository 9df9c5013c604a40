#pragma once

// The znode tree a node starts on (docs/ZNODES.md): its persistent directories, and the protocol
// that wrote it. A node runs only on a tree of protocol 2 (batch records): a tree of another
// protocol (protocol 1, a znode per task, was removed) makes it refuse to start and say what to
// do (no data moves between them; a fresh --zk-root is the way).

#include <string>
#include <vector>

#include "coord/coordination.h"
#include "tasks/layout.h"

namespace drover::app {

// Creates the directories once (cheap when they exist) and the /protocol marker. The value is ""
// when the node may run, else why it must not (the tree was written by another protocol) and
// what to do. An error is a coordination failure: retry. Blocking; not for an event thread.
coord::Result<std::string> prepareTree(coord::Coordination& c, const tasks::Layout& layout);

}  // namespace drover::app
