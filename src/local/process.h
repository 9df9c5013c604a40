#pragma once

// Child processes for integration tests: real servers, real `drover` binaries, real signals.
//
// Every child runs in its own process group and carries PR_SET_PDEATHSIG(SIGKILL), so a test
// binary that dies in any way (crash, abort, kill -9, ctest timeout) never leaks children. On
// SIGINT, SIGTERM and SIGHUP the test binary kills every live child's process group first and then
// lets the signal take its previous course (Ctrl-C of a test run leaves nothing behind).
//
// Thread safety: a Process object is not synchronized; use it from one thread. Different Process
// objects may be used from different threads. PR_SET_PDEATHSIG is tied to the *thread* that
// created the child: create Process objects from a thread that outlives them (the test's main
// thread, as gtest uses), never from a short-lived helper thread, or the child is killed when
// that thread exits.

#include <sys/types.h>

#include <chrono>
#include <csignal>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace drover::local {

// How a child ended: exactly one of `code` (normal exit) and `signal` (killed) is meaningful.
struct ExitStatus {
  int code = -1;   // exit code when the child exited normally, else -1
  int signal = 0;  // terminating signal when it was killed, else 0

  bool exited() const { return signal == 0; }
  bool signaled() const { return signal != 0; }
  std::string toString() const;  // "exit 3" or "signal 9 (Killed)"
  friend bool operator==(const ExitStatus&, const ExitStatus&) = default;
};

// Meant for designated initializers: Process(ProcessOptions{.argv = {...}, .env = {...}}). The
// explicit `= {}` keeps GCC 12's -Wmissing-field-initializers quiet for omitted fields.
struct ProcessOptions {
  // argv[0] is the program: a path if it contains '/', else looked up in $PATH (in the parent, so
  // a missing program fails in the constructor). Must not be empty.
  std::vector<std::string> argv = {};
  // Added to (or overriding) the test process's environment.
  std::map<std::string, std::string> env = {};
  // Working directory of the child; empty inherits the test's.
  std::string working_dir = {};
  // Files that receive the child's stdout and stderr (created or truncated). Empty: a file in a
  // fresh temp dir owned by the Process (removed by its destructor unless
  // DROVER_KEEP_TEST_DIRS=1). Give both the same path to merge the two streams. stdin is
  // /dev/null.
  std::string stdout_path = {};
  std::string stderr_path = {};
};

class Process {
 public:
  // Starts the child (fork + exec). Throws std::runtime_error when it cannot be started (program
  // not found, exec failure, unwritable output file); no child is left behind then.
  explicit Process(ProcessOptions options);
  // Shorthand: Process({"sleep", "60"}).
  explicit Process(std::vector<std::string> argv);

  // SIGKILLs the child's whole process group and reaps the child if it is still running.
  ~Process();

  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;

  pid_t pid() const { return pid_; }

  // Signals go to the child's process group (the child and anything it spawned that stayed in its
  // group), and only while the child is unreaped, so its PID cannot have been reused. They return
  // false once the child has been reaped (see alive()).
  bool kill9() { return signal(SIGKILL); }
  bool terminate() { return signal(SIGTERM); }
  // Returns once every thread of the child is stopped (a SIGSTOP is acted on asynchronously: a
  // thread running on another core may still finish a request after kill() returns), or after 5 s
  // (false then).
  bool pause();
  bool resume() { return signal(SIGCONT); }
  bool signal(int sig);

  // True while the child has not exited (a stopped child is alive). Once it has exited, whatever
  // is left in its process group is SIGKILLed and the child is reaped; its status is then
  // available from exitStatus().
  bool alive() const;

  // Waits up to `timeout` for the child to exit; its status, or nullopt if it is still running.
  std::optional<ExitStatus> wait(std::chrono::milliseconds timeout);

  // The status once the child has been reaped (by alive(), wait() or the destructor).
  std::optional<ExitStatus> exitStatus() const { return status_; }

  // Output written so far.
  std::string readStdout() const;
  std::string readStderr() const;
  const std::string& stdoutPath() const { return stdout_path_; }
  const std::string& stderrPath() const { return stderr_path_; }

  // Waits until the child's stdout contains `needle` / satisfies `pred` (called with the whole
  // output so far). Returns false at the deadline, or as soon as the child has exited without its
  // final output matching (fail fast instead of waiting out the deadline).
  bool waitForOutput(std::string_view needle, std::chrono::milliseconds timeout);
  bool waitForOutput(const std::function<bool(const std::string&)>& pred,
                     std::chrono::milliseconds timeout);

 private:
  void reap() const;

  pid_t pid_ = -1;
  int slot_ = -1;  // index in the registry of live children used by the signal handlers
  std::string stdout_path_;
  std::string stderr_path_;
  std::string owned_dir_;  // temp dir holding default output files, removed on destruction
  mutable std::optional<ExitStatus> status_;
};

// For a program (not a test) that stops its children itself on SIGINT and SIGTERM, gracefully:
// call before the first Process is created, and the handlers that SIGKILL every child's group on
// those signals are never installed (`drover up` SIGTERMs its nodes so that they stop their
// tasks; a SIGKILL would leave the tasks' processes behind).
void leaveTerminatingSignalsAlone();

// Creates a fresh directory $TMPDIR/<prefix>XXXXXX (or under /tmp); throws std::runtime_error on
// failure. The caller owns it.
std::string makeTempDir(std::string_view prefix);

// True when DROVER_KEEP_TEST_DIRS=1: harness objects keep their temp dirs and print where.
bool keepTestDirs();

// Removes `dir` recursively, or keeps it and prints its path to stderr when keepTestDirs().
// `what` names it in that message.
void removeTestDir(const std::string& dir, std::string_view what);

}  // namespace drover::local
