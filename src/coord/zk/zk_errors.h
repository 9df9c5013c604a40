#pragma once

// The ZooKeeper C client's return codes as our Code. Internal to src/coord/zk/ (the only place
// that may include the C client's header).

#include "coord/error.h"

namespace drover::coord {

// Maps a ZOO_ERRORS value (ZOK, ZNONODE, ...) to a Code. Codes we do not distinguish become
// kSystemError; ZINVALIDSTATE (the handle is expired or auth-failed) becomes kSessionExpired.
Code toCode(int rc);

}  // namespace drover::coord
