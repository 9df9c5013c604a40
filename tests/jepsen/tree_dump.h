#pragma once

// Reading the tree for the fault suite: how many tokens are left (the drain), whether membership
// and the event log have settled, the full dump the checker judges (after a `sync`, so a fresh
// session sees every committed write), and the planted violations of the checker's self-test.
// The tree is protocol 2's, the nodes' default (docs/ZNODES.md "Protocol v2"): batch records,
// result records, pending states and chunks.
//
// All calls block, each request with a 30 s deadline; errors come back as text.

#include <functional>
#include <string>
#include <tl/expected.hpp>
#include <vector>

#include "coord/coordination.h"
#include "jepsen/checker.h"
#include "tasks/layout.h"

namespace drover::jepsen {

// Tasks waiting in pending states plus tasks held in chunks: the tasks that are not terminal yet
// (the token rule, per batch).
tl::expected<int64_t, std::string> countTokens(coord::Coordination& c, const tasks::Layout& l);

// True once /workers and /election each hold exactly `nodes` children and /events is within the
// leader's bound of 1,000 records.
tl::expected<bool, std::string> settled(coord::Coordination& c, const tasks::Layout& l, int nodes);

// Everything the checker reads: every task of every batch record with its outcomes (history) as
// `statuses`, waiting tasks as `jobs`, chunks' tasks as `assignments`, workers, election, events
// (both record shapes), epoch, and the sizes of /batches/{t} and /pending/{t}.
tl::expected<Tree, std::string> dumpTree(coord::Coordination& c, const tasks::Layout& l);

// Damages the run on purpose so the check must fail. On the first acknowledged task: "lost"
// deletes the result records holding its outcomes (the other tasks of those records go too),
// "phantom" writes a batch record and a result record with a copy of it under an id nobody
// submitted, "leftover" puts it back waiting in its batch's pending state after it finished;
// "crash" calls `crash(SIGABRT)` (a node dies on its own).
// Returns what it did (naming the task), or why it could not.
std::string plant(coord::Coordination& c, const tasks::Layout& l, const std::string& kind,
                  const std::vector<Request>& history, const std::function<void(int)>& crash);

}  // namespace drover::jepsen
