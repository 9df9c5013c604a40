#pragma once

// Free TCP ports on 127.0.0.1 for servers started by tests.
//
// A port is only known to be free when it is checked; another process may take it before the
// server binds it. To make that unlikely: ports come from below the kernel's ephemeral range
// (/proc/sys/net/ipv4/ip_local_port_range), so the source ports of outgoing connections (clients
// reconnecting to a killed server, quorum peers) never land on a port a test will restart a
// server on; they are picked at random, so test binaries running in parallel rarely collide; and
// this process never hands out the same port twice. Callers that can should still retry with new
// ports when a bind fails (ZkCluster does).
//
// Thread-safe.

#include <cstdint>
#include <vector>

namespace drover::local {

// One port that was free (bindable on 127.0.0.1) when checked. Throws std::runtime_error if none
// is found.
uint16_t freePort();

// `n` distinct ports, all held bound at once while choosing them. Throws std::runtime_error if
// not enough are found.
std::vector<uint16_t> freePorts(int n);

// True when something listens on 127.0.0.1:port now (a bind as a server does it, with
// SO_REUSEADDR, fails with EADDRINUSE). A check only: the port may be taken right after.
bool portInUse(uint16_t port);

}  // namespace drover::local
