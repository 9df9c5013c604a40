#include "local/ports.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <mutex>
#include <random>
#include <set>
#include <stdexcept>
#include <string>

namespace drover::local {
namespace {

constexpr int kLowestPort = 10000;

std::mutex g_mu;
// Every port handed out by this process; leaked on purpose (usable from exit-time destructors).
std::set<uint16_t>& handedOut() {
  static auto* ports = new std::set<uint16_t>;
  return *ports;
}

int ephemeralLow() {
  std::ifstream in("/proc/sys/net/ipv4/ip_local_port_range");
  int low = 32768;
  int high = 60999;
  in >> low >> high;
  return low;
}

// Binds 127.0.0.1:port (0: the kernel chooses) without SO_REUSEADDR, so ports in TIME_WAIT are
// refused too. Returns the bound fd and sets `port`, or -1.
int tryBind(uint16_t& port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(port);
  socklen_t len = sizeof addr;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    ::close(fd);
    return -1;
  }
  port = ntohs(addr.sin_port);
  return fd;
}

}  // namespace

std::vector<uint16_t> freePorts(int n) {
  std::lock_guard lock(g_mu);
  auto& used = handedOut();
  static std::mt19937 rng(std::random_device{}() ^ static_cast<unsigned>(::getpid()));
  const int high = ephemeralLow();  // exclusive
  std::vector<uint16_t> ports;
  std::vector<int> fds;
  auto fresh = [&](uint16_t p) {
    return !used.contains(p) && std::find(ports.begin(), ports.end(), p) == ports.end();
  };
  if (high - kLowestPort >= 1000) {
    std::uniform_int_distribution<int> pick(kLowestPort, high - 1);
    for (int attempt = 0; attempt < 200 * n && static_cast<int>(ports.size()) < n; ++attempt) {
      uint16_t port = static_cast<uint16_t>(pick(rng));
      if (!fresh(port)) continue;
      const int fd = tryBind(port);
      if (fd < 0) continue;
      fds.push_back(fd);
      ports.push_back(port);
    }
  }
  // Unusual port range configuration: let the kernel choose.
  for (int attempt = 0; attempt < 100 * n && static_cast<int>(ports.size()) < n; ++attempt) {
    uint16_t port = 0;
    const int fd = tryBind(port);
    if (fd < 0) continue;
    fds.push_back(fd);
    if (fresh(port)) ports.push_back(port);
  }
  for (int fd : fds) ::close(fd);
  if (static_cast<int>(ports.size()) < n) {
    throw std::runtime_error("freePorts: found only " + std::to_string(ports.size()) + " of " +
                             std::to_string(n) + " free ports");
  }
  used.insert(ports.begin(), ports.end());
  return ports;
}

uint16_t freePort() { return freePorts(1).front(); }

bool portInUse(uint16_t port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  int yes = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bool in_use =
      ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 && errno == EADDRINUSE;
  ::close(fd);
  return in_use;
}

}  // namespace drover::local
