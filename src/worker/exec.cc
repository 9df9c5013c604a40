#include "worker/exec.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <optional>

extern char** environ;

namespace drover::worker {
namespace {

using Clock = std::chrono::steady_clock;

// How long to keep reading after the command exited and its group was killed, for output held
// by processes that left the group (setsid). Past this the pipes are closed unread.
constexpr auto kDrainAfterExit = std::chrono::seconds(1);
// How often the loop looks at the cancel token when no output comes.
constexpr int kPollMs = 20;

// Owns one descriptor.
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() { reset(); }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  void reset(int fd = -1) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
  }

 private:
  int fd_ = -1;
};

bool makePipe(Fd& read_end, Fd& write_end) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return false;
  read_end.reset(fds[0]);
  write_end.reset(fds[1]);
  return true;
}

void setNonBlocking(int fd) {
  int flags = ::fcntl(fd, F_GETFL);
  if (flags >= 0) ::fcntl(fd, F_SETFL, flags | O_NONBLOCK);
}

// Appends what `fd` has to `buf` up to `limit` bytes, discarding the rest. Returns false at EOF
// or on a read error (the stream is done).
bool readSome(int fd, std::string& buf, size_t limit, bool& truncated) {
  std::array<char, 65536> chunk;
  while (true) {
    ssize_t n = ::read(fd, chunk.data(), chunk.size());
    if (n > 0) {
      size_t room = buf.size() < limit ? limit - buf.size() : 0;
      size_t keep = std::min(room, static_cast<size_t>(n));
      buf.append(chunk.data(), keep);
      if (keep < static_cast<size_t>(n)) truncated = true;
      continue;
    }
    if (n == 0) return false;
    if (errno == EINTR) continue;
    return errno == EAGAIN || errno == EWOULDBLOCK;
  }
}

// Blocks SIGPIPE on this thread while it writes to a pipe whose reader may be gone, and
// swallows a SIGPIPE raised meanwhile, so the process never dies of a command closing its stdin.
class SigpipeGuard {
 public:
  SigpipeGuard() {
    sigemptyset(&pipe_);
    sigaddset(&pipe_, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_, &old_);
  }
  ~SigpipeGuard() {
    sigset_t pending;
    sigemptyset(&pending);
    if (sigpending(&pending) == 0 && sigismember(&pending, SIGPIPE) == 1 &&
        sigismember(&old_, SIGPIPE) == 0) {
      timespec zero{0, 0};
      while (sigtimedwait(&pipe_, nullptr, &zero) < 0 && errno == EINTR) {
      }
    }
    pthread_sigmask(SIG_SETMASK, &old_, nullptr);
  }
  SigpipeGuard(const SigpipeGuard&) = delete;
  SigpipeGuard& operator=(const SigpipeGuard&) = delete;

 private:
  sigset_t pipe_;
  sigset_t old_;
};

std::vector<std::string> buildEnv(const std::map<std::string, std::string>& extra) {
  std::vector<std::string> env;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
    std::string_view entry(*e);
    auto eq = entry.find('=');
    std::string name(entry.substr(0, eq));
    if (extra.count(name) == 0) env.emplace_back(entry);
  }
  for (const auto& [name, value] : extra) env.push_back(name + "=" + value);
  return env;
}

// Writes `n` in decimal to `fd` without allocating (the child of a fork may not).
bool writePid(int fd, pid_t n) {
  char buf[24];
  int i = sizeof(buf);
  auto v = static_cast<unsigned long>(n);
  do {
    buf[--i] = static_cast<char>('0' + v % 10);
    v /= 10;
  } while (v != 0 && i > 0);
  auto len = static_cast<size_t>(static_cast<int>(sizeof(buf)) - i);
  return ::write(fd, buf + i, len) == static_cast<ssize_t>(len);
}

// The forked child's steps, then exec. Only async-signal-safe calls: the parent has threads. On
// any failure the errno goes to `report` (close-on-exec, so a successful exec closes it unread).
[[noreturn]] void childSteps(int in_fd, int out_fd, int err_fd, int report, const char* path,
                             char* const* argv, char* const* envp, const char* cwd,
                             const SpawnSetup& setup) {
  const auto fail = [&]() {
    int e = errno;
    (void)!::write(report, &e, sizeof(e));
    ::_exit(127);
  };
  sigset_t empty;
  sigemptyset(&empty);
  for (int sig : {SIGPIPE, SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGCHLD, SIGUSR1, SIGUSR2}) {
    ::signal(sig, SIG_DFL);
  }
  ::sigprocmask(SIG_SETMASK, &empty, nullptr);
  if (::setpgid(0, 0) != 0) fail();
  // Joined first, while still privileged: everything after, the command included, is bounded.
  for (int fd : setup.cgroup_procs) {
    if (!writePid(fd, ::getpid())) fail();
  }
  for (const auto& [resource, value] : setup.rlimits) {
    if (::setrlimit(resource, &value) != 0) fail();
  }
  if (::dup2(in_fd, 0) < 0 || ::dup2(out_fd, 1) < 0 || ::dup2(err_fd, 2) < 0) fail();
  if (setup.user) {
    if (::setgroups(0, nullptr) != 0 || ::setgid(setup.user->second) != 0 ||
        ::setuid(setup.user->first) != 0) {
      fail();
    }
  }
  if (setup.no_new_privs && ::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) fail();
  if (cwd != nullptr && ::chdir(cwd) != 0) fail();
  ::close_range(3, ~0U, CLOSE_RANGE_CLOEXEC);
  ::execve(path, argv, envp);
  fail();
  ::_exit(127);
}

std::vector<char*> pointers(std::vector<std::string>& strings) {
  std::vector<char*> out;
  out.reserve(strings.size() + 1);
  for (auto& s : strings) out.push_back(s.data());
  out.push_back(nullptr);
  return out;
}

}  // namespace

std::string toValidUtf8(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  size_t i = 0;
  const auto byte = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  while (i < s.size()) {
    unsigned char c = byte(i);
    size_t len = 0;
    uint32_t min = 0;
    if (c < 0x80) {
      out.push_back(static_cast<char>(c));
      ++i;
      continue;
    } else if ((c & 0xE0) == 0xC0) {
      len = 2, min = 0x80;
    } else if ((c & 0xF0) == 0xE0) {
      len = 3, min = 0x800;
    } else if ((c & 0xF8) == 0xF0) {
      len = 4, min = 0x10000;
    }
    bool ok = len != 0 && i + len <= s.size();
    uint32_t cp = len == 2 ? (c & 0x1F) : len == 3 ? (c & 0x0F) : (c & 0x07);
    for (size_t k = 1; ok && k < len; ++k) {
      if ((byte(i + k) & 0xC0) != 0x80) {
        ok = false;
      } else {
        cp = (cp << 6) | (byte(i + k) & 0x3F);
      }
    }
    if (ok && (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))) ok = false;
    if (ok) {
      out.append(s.substr(i, len));
      i += len;
    } else {
      out.append("\xEF\xBF\xBD");  // U+FFFD
      ++i;
    }
  }
  return out;
}

tl::expected<ExecRequest, std::string> parseExecPayload(const Json& payload) {
  auto r = tasks::parseExecPayload(payload);
  if (!r) return tl::unexpected(fmt::format("{}: {}", r.error().field, r.error().detail));
  return std::move(*r);
}

ExecOutcome runExec(const ExecRequest& req, const ExecLimits& limits, const CancelToken& cancel,
                    const std::function<void(pid_t)>& on_start, const SpawnSetup& setup) {
  ExecOutcome outcome;
  if (req.argv.empty()) {
    outcome.error = "argv is empty";
    return outcome;
  }
  if (!req.cwd.empty()) {
    struct stat st;
    if (::stat(req.cwd.c_str(), &st) != 0) {
      outcome.error = fmt::format("cwd '{}': {}", req.cwd, std::strerror(errno));
      return outcome;
    }
    if (!S_ISDIR(st.st_mode)) {
      outcome.error = fmt::format("cwd '{}' is not a directory", req.cwd);
      return outcome;
    }
  }

  Fd in_r, in_w, out_r, out_w, err_r, err_w;
  if (!makePipe(in_r, in_w) || !makePipe(out_r, out_w) || !makePipe(err_r, err_w)) {
    outcome.error = fmt::format("pipe: {}", std::strerror(errno));
    return outcome;
  }

  std::vector<std::string> argv_s = req.argv;
  std::vector<std::string> env_s = setup.env ? *setup.env : buildEnv(req.env);
  std::vector<char*> argv = pointers(argv_s);
  std::vector<char*> envp = pointers(env_s);

  pid_t pid = -1;
  int rc = 0;
  if (setup.forks()) {
    // Found here, from the environment the command gets: the child may not search itself.
    std::string path_var = "/usr/bin:/bin";
    for (const auto& e : env_s) {
      if (e.rfind("PATH=", 0) == 0) path_var = e.substr(5);
    }
    std::string program = findProgram(req.argv[0], path_var);
    Fd report_r, report_w;
    if (program.empty()) {
      rc = ENOENT;
    } else if (!makePipe(report_r, report_w)) {
      rc = errno;
    } else {
      const char* cwd = req.cwd.empty() ? nullptr : req.cwd.c_str();
      pid = ::fork();
      if (pid == 0) {
        childSteps(in_r.get(), out_w.get(), err_w.get(), report_w.get(), program.c_str(),
                   argv.data(), envp.data(), cwd, setup);
      }
      if (pid < 0) {
        rc = errno;
      } else {
        report_w.reset();
        int child_errno = 0;
        ssize_t n;
        while ((n = ::read(report_r.get(), &child_errno, sizeof(child_errno))) < 0 &&
               errno == EINTR) {
        }
        if (n == static_cast<ssize_t>(sizeof(child_errno))) {
          int status;
          while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
          }
          rc = child_errno != 0 ? child_errno : EINVAL;
        }
      }
    }
  } else {
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, in_r.get(), 0);
    posix_spawn_file_actions_adddup2(&actions, out_w.get(), 1);
    posix_spawn_file_actions_adddup2(&actions, err_w.get(), 2);
    posix_spawn_file_actions_addclosefrom_np(&actions, 3);
    if (!req.cwd.empty()) posix_spawn_file_actions_addchdir_np(&actions, req.cwd.c_str());

    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    sigset_t empty, defaults;
    sigemptyset(&empty);
    sigemptyset(&defaults);
    for (int sig : {SIGPIPE, SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGCHLD, SIGUSR1, SIGUSR2}) {
      sigaddset(&defaults, sig);
    }
    posix_spawnattr_setsigmask(&attr, &empty);
    posix_spawnattr_setsigdefault(&attr, &defaults);
    posix_spawnattr_setpgroup(&attr, 0);
    posix_spawnattr_setflags(
        &attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    rc = ::posix_spawnp(&pid, argv[0], &actions, &attr, argv.data(), envp.data());
    posix_spawn_file_actions_destroy(&actions);
    posix_spawnattr_destroy(&attr);
  }
  in_r.reset();
  out_w.reset();
  err_w.reset();
  if (rc != 0) {
    if (rc == ENOENT) {
      outcome.exit_code = 127;
      outcome.error = fmt::format("command not found: {}", req.argv[0]);
    } else if (rc == EACCES || rc == ENOEXEC) {
      outcome.exit_code = 126;
      outcome.error = fmt::format("cannot run {}: {}", req.argv[0], std::strerror(rc));
    } else {
      outcome.error = fmt::format("cannot start {}: {}", req.argv[0], std::strerror(rc));
    }
    return outcome;
  }
  outcome.started = true;
  // Readable once the child exits: the loop wakes at its exit, not at the next poll tick (a
  // short command otherwise waited up to kPollMs after closing its pipes). -1 if unsupported.
  Fd exit_fd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
  if (on_start) on_start(pid);

  SigpipeGuard sigpipe_guard;
  setNonBlocking(out_r.get());
  setNonBlocking(err_r.get());
  setNonBlocking(in_w.get());
  size_t stdin_off = 0;
  if (req.stdin_data.empty()) in_w.reset();

  bool exited = false;
  bool termed = false, killed = false;
  Clock::time_point kill_at{}, drain_until{};
  while (true) {
    if (!exited) {
      // Peek without reaping: while the zombie is there its pid (and group id) cannot be
      // reused, so signalling the group below can never hit a stranger.
      siginfo_t info;
      std::memset(&info, 0, sizeof(info));
      if (::waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOHANG | WNOWAIT) == 0 &&
          info.si_pid == pid) {
        exited = true;
        ::kill(-pid, SIGKILL);  // whatever it left behind in its group
        drain_until = Clock::now() + kDrainAfterExit;
        in_w.reset();
      }
    }
    if (!out_r.valid() && !err_r.valid() && exited) break;
    if (exited && Clock::now() >= drain_until) break;
    if (!exited) {
      if (!termed && cancel.cancelled()) {
        outcome.cancelled = cancel.reason();
        ::kill(-pid, SIGTERM);
        termed = true;
        kill_at = Clock::now() + limits.kill_grace;
      }
      if (termed && !killed && Clock::now() >= kill_at) {
        ::kill(-pid, SIGKILL);
        killed = true;
      }
    }

    std::array<pollfd, 4> fds{};
    nfds_t n = 0;
    if (!exited && exit_fd.valid()) fds[n++] = {exit_fd.get(), POLLIN, 0};
    int out_i = -1, err_i = -1, in_i = -1;
    if (out_r.valid()) fds[out_i = static_cast<int>(n++)] = {out_r.get(), POLLIN, 0};
    if (err_r.valid()) fds[err_i = static_cast<int>(n++)] = {err_r.get(), POLLIN, 0};
    if (in_w.valid()) fds[in_i = static_cast<int>(n++)] = {in_w.get(), POLLOUT, 0};
    int ready = ::poll(fds.data(), n, kPollMs);
    if (ready < 0 && errno != EINTR) break;
    if (ready <= 0) continue;
    if (out_i >= 0 && fds[out_i].revents != 0 &&
        !readSome(out_r.get(), outcome.out, limits.max_output_bytes, outcome.out_truncated)) {
      out_r.reset();
    }
    if (err_i >= 0 && fds[err_i].revents != 0 &&
        !readSome(err_r.get(), outcome.err, limits.max_output_bytes, outcome.err_truncated)) {
      err_r.reset();
    }
    if (in_i >= 0 && fds[in_i].revents != 0) {
      if ((fds[in_i].revents & (POLLERR | POLLHUP)) != 0) {
        in_w.reset();  // the command closed its stdin: the rest is not wanted
      } else {
        ssize_t w = ::write(in_w.get(), req.stdin_data.data() + stdin_off,
                            req.stdin_data.size() - stdin_off);
        if (w > 0) stdin_off += static_cast<size_t>(w);
        if ((w < 0 && errno != EAGAIN && errno != EINTR) || stdin_off >= req.stdin_data.size()) {
          in_w.reset();
        }
      }
    }
  }
  in_w.reset();
  out_r.reset();
  err_r.reset();
  if (!exited) ::kill(-pid, SIGKILL);  // only on a poll failure; reaping below must not hang

  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (WIFEXITED(status)) {
    outcome.exit_code = WEXITSTATUS(status);
  } else if (WIFSIGNALED(status)) {
    outcome.signal = WTERMSIG(status);
    outcome.exit_code = 128 + outcome.signal;
  }
  return outcome;
}

HandlerResult execHandler(TaskContext& ctx, const ExecLimits& limits) {
  auto req = parseExecPayload(ctx.payload);
  if (!req) return HandlerResult::failure("invalid exec payload: " + req.error());
  ExecOutcome o;
  std::optional<PreparedExec> prepared;
  if (limits.isolation) {
    auto p = limits.isolation->prepare(*req, {ctx.id, ctx.attempt, ctx.worker});
    if (!p) return HandlerResult::failure(p.error());
    prepared.emplace(std::move(*p));
    ExecRequest run = *req;
    run.argv = prepared->argv;
    run.cwd = prepared->cwd;
    o = runExec(run, limits, ctx.cancel, {}, prepared->setup);
  } else {
    // Who is running, for the command's own logs and idempotence (the task model's contract).
    // Set last, so a task's `env` cannot pass itself off as another task or attempt.
    req->env["DROVER_TASK_ID"] = ctx.id;
    req->env["DROVER_ATTEMPT"] = std::to_string(ctx.attempt);
    req->env["DROVER_WORKER"] = ctx.worker;
    o = runExec(*req, limits, ctx.cancel);
  }
  // Read before the cgroup goes (with `prepared`, at return).
  bool oom = prepared && prepared->cgroup && prepared->cgroup->oomKilled();
  bool pids_hit = prepared && prepared->cgroup && prepared->cgroup->pidsLimitHit();
  if (!o.started) {
    Json detail;
    if (o.exit_code >= 0) {
      detail = {{"exit_code", o.exit_code}, {"stdout", ""}, {"stderr", ""}};
    }
    return HandlerResult::failure(o.error, std::move(detail));
  }
  Json result = {{"exit_code", o.exit_code},
                 {"stdout", toValidUtf8(o.out)},
                 {"stderr", toValidUtf8(o.err)},
                 {"stdout_truncated", o.out_truncated},
                 {"stderr_truncated", o.err_truncated}};
  if (o.signal != 0) result["signal"] = o.signal;
  if (o.cancelled != CancelReason::kNone) {
    std::string why(cancelReasonName(o.cancelled));
    if (pids_hit) why += fmt::format(" (process limit {} reached)", prepared->limits.pids);
    return HandlerResult::failure(why, std::move(result));
  }
  if (oom && o.exit_code != 0) {
    result["limit"] = "memory";
    return HandlerResult::failure(
        fmt::format("killed: memory limit {}", mebibytes(prepared->limits.memory_mb)),
        std::move(result));
  }
  if (o.signal != 0) {
    const char* name = ::sigabbrev_np(o.signal);
    return HandlerResult::failure(
        fmt::format("killed by signal {} (SIG{})", o.signal, name != nullptr ? name : "?"),
        std::move(result));
  }
  if (o.exit_code != 0) {
    std::string why = fmt::format("exited with code {}", o.exit_code);
    if (pids_hit) why += fmt::format(" (process limit {} reached)", prepared->limits.pids);
    return HandlerResult::failure(why, std::move(result));
  }
  return HandlerResult::success(std::move(result));
}

}  // namespace drover::worker
