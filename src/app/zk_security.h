#pragma once

// The node's startup check of the ZooKeeper tree's ACLs (docs/SECURITY.md): a tree is either
// protected all through, by this node's digest identity, or open all through. A mix (a tree made
// by nodes without credentials, now opened with them, or the other way round) is refused with
// what to do, never run half-protected.

#include <string>
#include <vector>

#include "coord/zk/zk_coordination.h"

namespace drover::app {

// The id a digest ACL entry holds for `credential` ("user:password"):
// "user:" + base64(SHA-1("user:password")), as ZooKeeper's DigestAuthenticationProvider makes it.
std::string digestId(const std::string& credential);

// "" when every path in `paths` is protected for exactly the identity of `credential` (no
// world:anyone entry, a digest entry of that identity), or, with an empty credential, open to
// world:anyone; else what is wrong and how to fix it. ZooKeeper errors are reported as such.
std::string checkTreeAcl(coord::ZkCoordination& zk, const std::vector<std::string>& paths,
                         const std::string& credential);

}  // namespace drover::app
