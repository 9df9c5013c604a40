#pragma once

// Whole-tree reads of protocol v2 for tests and the benchmark (docs/ZNODES.md "Protocol v2"):
// the outcomes of many tasks at once, and every task not yet terminal. They read the records
// directly, independently of the API's reader, so a test can check what the nodes wrote against
// what the API says. Pipelined, blocking; not for a node's hot path.

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "coord/coordination.h"
#include "tasks/layout.h"
#include "tasks/task.h"

namespace drover::tasks::inspect {

// The recorded outcome of each of `ids` that has one (the latest outcome of its index, by result
// record sequence). Client-chosen ids are looked up in their id entries; submitted_at is the
// batch's (from its name). nullopt on a coordination failure.
std::optional<std::map<std::string, TaskStatus>> outcomes(coord::Coordination& c,
                                                          const Layout& layout,
                                                          const std::vector<std::string>& ids);

// The ids of every task that waits in a pending state or is held in a chunk. nullopt on a
// coordination failure or an unreadable record.
std::optional<std::vector<std::string>> unfinished(coord::Coordination& c, const Layout& layout);

}  // namespace drover::tasks::inspect
