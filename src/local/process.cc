#include "local/process.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <sstream>
#include <stdexcept>
#include <thread>

extern char** environ;

namespace drover::local {
namespace {

using Clock = std::chrono::steady_clock;

// Registry of live children (their PIDs, which are also their PGIDs) for the signal handlers.
// Lock-free and trivially destructible so that handlers and exit-time destructors can use it.
constexpr int kMaxLive = 1024;
std::atomic<pid_t> g_live[kMaxLive];

constexpr int kHandledSignals[] = {SIGINT, SIGTERM, SIGHUP};
struct sigaction g_previous[NSIG];
std::once_flag g_install_once;

int registerLive(pid_t pid) {
  for (int i = 0; i < kMaxLive; ++i) {
    pid_t expected = 0;
    if (g_live[i].compare_exchange_strong(expected, pid)) return i;
  }
  return -1;  // Registry full: the child is still covered by PR_SET_PDEATHSIG.
}

void unregisterLive(int slot) {
  if (slot >= 0) g_live[slot].store(0);
}

// Async-signal-safe: kills every live child's group, then lets the signal take its previous course
// (default: terminate the test binary). If a previous handler returns, ours is re-armed.
void onTerminatingSignal(int sig) {
  const int saved_errno = errno;
  for (auto& slot : g_live) {
    const pid_t pid = slot.load();
    if (pid > 0) ::kill(-pid, SIGKILL);
  }
  struct sigaction ours;
  ::sigaction(sig, &g_previous[sig], &ours);
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, sig);
  ::sigprocmask(SIG_UNBLOCK, &set, nullptr);
  ::raise(sig);
  ::sigaction(sig, &ours, nullptr);
  errno = saved_errno;
}

void installSignalHandlers() {
  for (int sig : kHandledSignals) {
    struct sigaction previous;
    if (::sigaction(sig, nullptr, &previous) != 0) continue;
    // A signal the test binary ignores stays ignored: it is not asking to die.
    if (!(previous.sa_flags & SA_SIGINFO) && previous.sa_handler == SIG_IGN) continue;
    g_previous[sig] = previous;
    struct sigaction ours {};
    ours.sa_handler = onTerminatingSignal;
    sigemptyset(&ours.sa_mask);
    for (int other : kHandledSignals) sigaddset(&ours.sa_mask, other);
    ours.sa_flags = SA_RESTART;
    ::sigaction(sig, &ours, nullptr);
  }
}

std::string errnoText(std::string_view what, int err) {
  return std::string(what) + ": " + std::strerror(err);
}

// Resolves argv[0] in the parent: execve in the child then needs no allocation or PATH search.
std::string resolveProgram(const std::string& name) {
  if (name.find('/') != std::string::npos) return name;
  const char* path_env = std::getenv("PATH");
  std::string path = path_env != nullptr ? path_env : "/usr/local/bin:/usr/bin:/bin";
  std::stringstream dirs(path);
  std::string dir;
  while (std::getline(dirs, dir, ':')) {
    if (dir.empty()) dir = ".";
    std::string candidate = dir + "/" + name;
    if (::access(candidate.c_str(), X_OK) == 0 && !std::filesystem::is_directory(candidate)) {
      return candidate;
    }
  }
  throw std::runtime_error("Process: program '" + name + "' not found in PATH");
}

std::string readFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream out;
  out << in.rdbuf();
  return out.str();
}

ExitStatus decodeStatus(int status) {
  ExitStatus result;
  if (WIFEXITED(status)) {
    result.code = WEXITSTATUS(status);
  } else if (WIFSIGNALED(status)) {
    result.signal = WTERMSIG(status);
  }
  return result;
}

// What the child reports through the exec-error pipe when it cannot exec.
struct ChildError {
  int stage;
  int err;
};
constexpr const char* kStages[] = {"prctl(PR_SET_PDEATHSIG)",
                                   "parent died before exec",
                                   "setpgid",
                                   "open /dev/null",
                                   "open stdout file",
                                   "open stderr file",
                                   "dup2",
                                   "chdir",
                                   "execve"};

[[noreturn]] void childFail(int fd, int stage) {
  ChildError error{stage, errno};
  ssize_t ignored = ::write(fd, &error, sizeof error);
  (void)ignored;
  ::_exit(127);
}

}  // namespace

std::string ExitStatus::toString() const {
  if (signaled()) {
    const char* name = ::strsignal(signal);
    return "signal " + std::to_string(signal) + " (" + (name ? name : "?") + ")";
  }
  return "exit " + std::to_string(code);
}

void leaveTerminatingSignalsAlone() {
  std::call_once(g_install_once, [] {});
}

bool keepTestDirs() {
  const char* keep = std::getenv("DROVER_KEEP_TEST_DIRS");
  return keep != nullptr && std::string_view(keep) == "1";
}

std::string makeTempDir(std::string_view prefix) {
  const char* tmp = std::getenv("TMPDIR");
  std::string pattern = (tmp != nullptr && *tmp != '\0') ? tmp : "/tmp";
  pattern += "/";
  pattern += prefix;
  pattern += "XXXXXX";
  if (::mkdtemp(pattern.data()) == nullptr) {
    throw std::runtime_error(errnoText("mkdtemp " + pattern, errno));
  }
  return pattern;
}

void removeTestDir(const std::string& dir, std::string_view what) {
  if (dir.empty()) return;
  if (keepTestDirs()) {
    std::fprintf(stderr, "drover: kept %.*s in %s\n", static_cast<int>(what.size()), what.data(),
                 dir.c_str());
    return;
  }
  std::error_code ignored;
  std::filesystem::remove_all(dir, ignored);
}

Process::Process(std::vector<std::string> argv)
    : Process(ProcessOptions{.argv = std::move(argv)}) {}

Process::Process(ProcessOptions options) {
  if (options.argv.empty()) throw std::invalid_argument("Process: empty argv");
  std::call_once(g_install_once, installSignalHandlers);

  const std::string program = resolveProgram(options.argv[0]);
  stdout_path_ = options.stdout_path;
  stderr_path_ = options.stderr_path;
  if (stdout_path_.empty() || stderr_path_.empty()) {
    owned_dir_ = makeTempDir("drover-proc-");
    if (stdout_path_.empty()) stdout_path_ = owned_dir_ + "/stdout";
    if (stderr_path_.empty()) stderr_path_ = owned_dir_ + "/stderr";
  }
  const bool merged = stdout_path_ == stderr_path_;

  // Everything the child needs is built here: after fork() in a possibly multi-threaded parent the
  // child may only call async-signal-safe functions.
  std::vector<char*> argv;
  for (auto& arg : options.argv) argv.push_back(arg.data());
  argv.push_back(nullptr);
  std::vector<std::string> env_strings;
  for (char** e = environ; *e != nullptr; ++e) {
    std::string_view entry(*e);
    auto eq = entry.find('=');
    if (options.env.contains(std::string(entry.substr(0, eq)))) continue;
    env_strings.emplace_back(entry);
  }
  for (const auto& [key, value] : options.env) env_strings.push_back(key + "=" + value);
  std::vector<char*> envp;
  for (auto& e : env_strings) envp.push_back(e.data());
  envp.push_back(nullptr);

  int error_pipe[2];
  if (::pipe2(error_pipe, O_CLOEXEC) != 0) {
    removeTestDir(owned_dir_, "process output");
    throw std::runtime_error(errnoText("Process: pipe2", errno));
  }

  // Block signals across fork so the child never runs the parent's handlers (ours would kill the
  // parent's other children) before it resets them.
  sigset_t all, old_mask;
  sigfillset(&all);
  ::pthread_sigmask(SIG_SETMASK, &all, &old_mask);
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid == 0) {
    const int fd = error_pipe[1];
    for (int sig = 1; sig < NSIG; ++sig) {
      if (sig == SIGKILL || sig == SIGSTOP) continue;
      struct sigaction dfl {};
      dfl.sa_handler = SIG_DFL;
      ::sigaction(sig, &dfl, nullptr);  // fails harmlessly for the signals glibc reserves
    }
    if (::prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) childFail(fd, 0);
    // The parent may have died before prctl: then nobody would ever kill us.
    if (::getppid() != parent) childFail(fd, 1);
    if (::setpgid(0, 0) != 0) childFail(fd, 2);
    const int in = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (in < 0) childFail(fd, 3);
    const int out = ::open(stdout_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (out < 0) childFail(fd, 4);
    const int err =
        merged ? out : ::open(stderr_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (err < 0) childFail(fd, 5);
    if (::dup2(in, 0) < 0 || ::dup2(out, 1) < 0 || ::dup2(err, 2) < 0) childFail(fd, 6);
    if (!options.working_dir.empty() && ::chdir(options.working_dir.c_str()) != 0) {
      childFail(fd, 7);
    }
    // Descriptors the test binary leaked without O_CLOEXEC (sockets, files) must not reach the
    // child: it could hold a port or a ZooKeeper session open.
    ::close_range(3, ~0U, CLOSE_RANGE_CLOEXEC);
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    ::execve(program.c_str(), argv.data(), envp.data());
    childFail(fd, 8);
  }
  const int fork_errno = errno;
  if (pid > 0) {
    pid_ = pid;
    slot_ = registerLive(pid);
    ::setpgid(pid, pid);  // Also here, so the group exists before we return whatever the timing.
  }
  ::pthread_sigmask(SIG_SETMASK, &old_mask, nullptr);
  ::close(error_pipe[1]);
  if (pid < 0) {
    ::close(error_pipe[0]);
    removeTestDir(owned_dir_, "process output");
    throw std::runtime_error(errnoText("Process: fork", fork_errno));
  }

  ChildError error{};
  ssize_t n;
  do {
    n = ::read(error_pipe[0], &error, sizeof error);
  } while (n < 0 && errno == EINTR);
  ::close(error_pipe[0]);
  if (n > 0) {
    reap();
    removeTestDir(owned_dir_, "process output");
    const bool known = error.stage >= 0 && error.stage < static_cast<int>(std::size(kStages));
    throw std::runtime_error("Process: cannot start " + program + ": " +
                             (known ? kStages[error.stage] : "child setup") + ": " +
                             std::strerror(error.err));
  }
}

Process::~Process() {
  if (!status_) {
    ::kill(-pid_, SIGKILL);
    reap();
  }
  removeTestDir(owned_dir_, "process output");
}

bool Process::signal(int sig) {
  if (!alive()) return false;
  // The child is unreaped here, so its PID (= PGID) still names our group.
  return ::kill(-pid_, sig) == 0;
}

namespace {
// True when every thread of `pid` is in the stopped state ('T') or gone.
bool allThreadsStopped(pid_t pid) {
  std::error_code ec;
  for (const auto& task :
       std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/task", ec)) {
    std::ifstream stat(task.path() / "stat");
    std::string line;
    if (!std::getline(stat, line)) continue;  // the thread ended meanwhile
    auto close = line.rfind(')');
    if (close == std::string::npos || close + 2 >= line.size()) continue;
    char state = line[close + 2];
    if (state != 'T' && state != 't' && state != 'Z' && state != 'X') return false;
  }
  return !ec;
}
}  // namespace

bool Process::pause() {
  if (!signal(SIGSTOP)) return false;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (!allThreadsStopped(pid_)) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return true;
}

void Process::reap() const {
  unregisterLive(slot_);
  // Leftovers in the group die with the child; the unreaped child pins the PGID, so this cannot hit
  // a stranger.
  ::kill(-pid_, SIGKILL);
  int status = 0;
  pid_t r;
  do {
    r = ::waitpid(pid_, &status, 0);
  } while (r < 0 && errno == EINTR);
  status_ = r == pid_ ? decodeStatus(status) : ExitStatus{};
}

bool Process::alive() const {
  if (status_) return false;
  siginfo_t info{};
  // WNOWAIT: look without reaping, so the group can be cleaned up before the PID is released.
  if (::waitid(P_PID, pid_, &info, WEXITED | WNOHANG | WNOWAIT) == 0 && info.si_pid == 0) {
    return true;
  }
  reap();
  return false;
}

std::optional<ExitStatus> Process::wait(std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  const int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid_, 0));
  while (alive()) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) break;
    if (pidfd >= 0) {
      // Readable when the child exits: no polling delay.
      struct pollfd p {
        pidfd, POLLIN, 0
      };
      ::poll(&p, 1, static_cast<int>(std::min<int64_t>(left.count(), 1000)));
    } else {
      std::this_thread::sleep_for(std::min(left, std::chrono::milliseconds(2)));
    }
  }
  if (pidfd >= 0) ::close(pidfd);
  return status_;
}

std::string Process::readStdout() const { return readFile(stdout_path_); }
std::string Process::readStderr() const { return readFile(stderr_path_); }

bool Process::waitForOutput(std::string_view needle, std::chrono::milliseconds timeout) {
  return waitForOutput(
      [needle](const std::string& out) { return out.find(needle) != std::string::npos; }, timeout);
}

bool Process::waitForOutput(const std::function<bool(const std::string&)>& pred,
                            std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  while (true) {
    const bool was_alive = alive();
    // Read after checking liveness: a child that has exited has written everything it will.
    if (pred(readStdout())) return true;
    if (!was_alive || Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

}  // namespace drover::local
