#include "base/stop_flag.h"

#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <string>

namespace drover::base {

StopFlag::StopFlag() {
  int fds[2];
  if (::pipe2(fds, O_NONBLOCK | O_CLOEXEC) != 0) {
    throw std::runtime_error(std::string("StopFlag: pipe2: ") + std::strerror(errno));
  }
  read_fd_ = fds[0];
  write_fd_ = fds[1];
}

StopFlag::~StopFlag() {
  ::close(read_fd_);
  ::close(write_fd_);
}

void StopFlag::request() noexcept {
  int saved = errno;  // a signal handler must leave errno as it found it
  flag_.store(true, std::memory_order_release);
  // The byte is never read: once requested, the pipe stays readable and every wait returns.
  // A full pipe (EAGAIN) already wakes waiters, so the result does not matter.
  [[maybe_unused]] ssize_t n = ::write(write_fd_, "x", 1);
  errno = saved;
}

bool StopFlag::waitFor(std::chrono::milliseconds timeout) const {
  if (requested()) return true;
  pollfd p{read_fd_, POLLIN, 0};
  int ms = static_cast<int>(std::max<int64_t>(0, timeout.count()));
  while (::poll(&p, 1, ms) < 0 && errno == EINTR) {
    if (requested()) return true;
  }
  return requested();
}

}  // namespace drover::base
