#include "worker/exec.h"

#include <dirent.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <thread>

#include "base/eventually.h"

namespace drover::worker {
namespace {

using namespace std::chrono_literals;

HandlerResult runExecTask(Json payload, ExecLimits limits = {}) {
  TaskContext ctx;
  ctx.id = "x";
  ctx.payload = std::move(payload);
  return execHandler(ctx, limits);
}

int countOpenFds() {
  int n = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator("/proc/self/fd")) ++n;
  return n;
}

// True when `pid` is no longer a live process (gone, or a zombie waiting for its parent).
bool processGone(pid_t pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  if (!stat) return true;
  std::string line;
  std::getline(stat, line);
  auto close = line.rfind(')');
  return close != std::string::npos && close + 2 < line.size() && line[close + 2] == 'Z';
}

// No child of this process is left, zombie or not.
bool noChildren() {
  int status;
  return ::waitpid(-1, &status, WNOHANG) == -1 && errno == ECHILD;
}

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/drover-exec-test-XXXXXX";
    path_ = ::mkdtemp(tmpl);
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// The child learns which task, attempt and worker it is (the task model's contract), and a task's
// own env cannot override them.
TEST(ExecTest, ChildGetsItsTaskIdAttemptAndWorker) {
  TaskContext ctx;
  ctx.id = "job-42";
  ctx.attempt = 3;
  ctx.worker = "worker-7";
  ctx.payload = {{"argv", {"sh", "-c", "echo \"$DROVER_TASK_ID $DROVER_ATTEMPT $DROVER_WORKER\""}},
                 {"env", {{"DROVER_TASK_ID", "spoofed"}}}};
  HandlerResult r = execHandler(ctx, {});
  ASSERT_TRUE(r.ok) << r.error;
  EXPECT_EQ(r.result["stdout"], "job-42 3 worker-7\n");
}

TEST(ExecPayloadTest, Valid) {
  auto r = parseExecPayload(
      Json{{"argv", {"ls", "-l"}}, {"env", {{"A", "1"}}}, {"cwd", "/"}, {"stdin", "x"}});
  ASSERT_TRUE(r.has_value()) << r.error();
  EXPECT_EQ(r->argv, (std::vector<std::string>{"ls", "-l"}));
  EXPECT_EQ(r->env.at("A"), "1");
  EXPECT_EQ(r->cwd, "/");
  EXPECT_EQ(r->stdin_data, "x");
}

TEST(ExecPayloadTest, Invalid) {
  const Json bad[] = {
      Json::array(),
      Json::object(),
      Json{{"argv", Json::array()}},
      Json{{"argv", "ls"}},
      Json{{"argv", {"ls", 1}}},
      Json{{"argv", {""}}},
      Json{{"argv", {std::string("a\0b", 3)}}},
      Json{{"argv", {"ls"}}, {"env", {{"A", 1}}}},
      Json{{"argv", {"ls"}}, {"env", {{"A=B", "1"}}}},
      Json{{"argv", {"ls"}}, {"env", "A=1"}},
      Json{{"argv", {"ls"}}, {"cwd", 5}},
      Json{{"argv", {"ls"}}, {"stdin", {1}}},
      Json{{"argv", {"ls"}}, {"timeout", 1}},
  };
  for (const auto& p : bad) EXPECT_FALSE(parseExecPayload(p).has_value()) << p.dump();
}

TEST(ExecTest, BadPayloadRunsNothing) {
  TempDir dir;
  std::string marker = dir.path() + "/ran";
  auto r = runExecTask(Json{{"argv", {"touch", marker}}, {"env", {{"A", 1}}}});
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.error.find("invalid exec payload"), std::string::npos) << r.error;
  EXPECT_FALSE(std::filesystem::exists(marker));
}

TEST(ExecTest, SuccessCapturesStdout) {
  auto r = runExecTask(Json{{"argv", {"echo", "hello", "world"}}});
  ASSERT_TRUE(r.ok) << r.error;
  EXPECT_EQ(r.result["exit_code"], 0);
  EXPECT_EQ(r.result["stdout"], "hello world\n");
  EXPECT_EQ(r.result["stderr"], "");
  EXPECT_EQ(r.result["stdout_truncated"], false);
  EXPECT_FALSE(r.result.contains("signal"));
}

TEST(ExecTest, NonZeroExitIsAFailureWithOutput) {
  auto r = runExecTask(Json{{"argv", {"sh", "-c", "echo out; echo err >&2; exit 3"}}});
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.error.find("exited with code 3"), std::string::npos) << r.error;
  EXPECT_EQ(r.result["exit_code"], 3);
  EXPECT_EQ(r.result["stdout"], "out\n");
  EXPECT_EQ(r.result["stderr"], "err\n");
}

TEST(ExecTest, OutputIsTruncatedAtTheBoundAndDrained) {
  ExecLimits limits;
  limits.max_output_bytes = 1000;
  // 1 MB on each stream: far past the pipe buffers, so the command would block if not drained.
  auto r = runExecTask(
      Json{{"argv",
            {"sh", "-c", "head -c 1000000 /dev/zero | tr '\\0' a; head -c 1000000 /dev/zero >&2"}}},
      limits);
  ASSERT_TRUE(r.ok) << r.error;
  EXPECT_EQ(r.result["stdout"].get<std::string>(), std::string(1000, 'a'));
  EXPECT_EQ(r.result["stdout_truncated"], true);
  EXPECT_EQ(r.result["stderr"].get<std::string>().size(), 1000u);
  EXPECT_EQ(r.result["stderr_truncated"], true);
}

TEST(ExecTest, OutputAtExactlyTheBoundIsNotTruncated) {
  ExecLimits limits;
  limits.max_output_bytes = 100;
  auto r = runExecTask(Json{{"argv", {"sh", "-c", "head -c 100 /dev/zero | tr '\\0' b"}}}, limits);
  ASSERT_TRUE(r.ok) << r.error;
  EXPECT_EQ(r.result["stdout"].get<std::string>(), std::string(100, 'b'));
  EXPECT_EQ(r.result["stdout_truncated"], false);
}

TEST(ExecTest, EnvCwdAndStdin) {
  TempDir dir;
  ::setenv("DROVER_EXEC_TEST_INHERITED", "from-node", 1);
  auto r = runExecTask(Json{
      {"argv", {"sh", "-c", "echo \"$FOO\"; echo \"$DROVER_EXEC_TEST_INHERITED\"; pwd; cat; echo"}},
      {"env", {{"FOO", "bar baz"}}},
      {"cwd", dir.path()},
      {"stdin", "line1\nline2"}});
  ::unsetenv("DROVER_EXEC_TEST_INHERITED");
  ASSERT_TRUE(r.ok) << r.error;
  EXPECT_EQ(r.result["stdout"], "bar baz\nfrom-node\n" +
                                    std::filesystem::canonical(dir.path()).string() +
                                    "\nline1\nline2\n");
}

TEST(ExecTest, EnvOverridesTheNodesValue) {
  ::setenv("DROVER_EXEC_TEST_OVERRIDE", "node", 1);
  auto r = runExecTask(Json{{"argv", {"sh", "-c", "echo $DROVER_EXEC_TEST_OVERRIDE"}},
                            {"env", {{"DROVER_EXEC_TEST_OVERRIDE", "task"}}}});
  ::unsetenv("DROVER_EXEC_TEST_OVERRIDE");
  ASSERT_TRUE(r.ok) << r.error;
  EXPECT_EQ(r.result["stdout"], "task\n");
}

TEST(ExecTest, LargeStdinIsStreamedAndAnIgnoredStdinIsHarmless) {
  ExecLimits limits;
  limits.max_output_bytes = 10;
  std::string big(2'000'000, 'z');
  auto r = runExecTask(Json{{"argv", {"cat"}}, {"stdin", big}}, limits);
  ASSERT_TRUE(r.ok) << r.error;
  EXPECT_EQ(r.result["stdout"], "zzzzzzzzzz");
  EXPECT_EQ(r.result["stdout_truncated"], true);
  // The command exits without reading: our writes hit a closed pipe, which must not kill us.
  r = runExecTask(Json{{"argv", {"true"}}, {"stdin", big}});
  ASSERT_TRUE(r.ok) << r.error;
}

TEST(ExecTest, CommandNotFound) {
  auto r = runExecTask(Json{{"argv", {"drover-no-such-command-xyz"}}});
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.error.find("command not found"), std::string::npos) << r.error;
  EXPECT_EQ(r.result["exit_code"], 127);
}

TEST(ExecTest, MissingCwdFails) {
  auto r = runExecTask(Json{{"argv", {"true"}}, {"cwd", "/no/such/dir/here"}});
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.error.find("cwd"), std::string::npos) << r.error;
}

TEST(ExecTest, InvalidUtf8OutputIsReplaced) {
  auto r = runExecTask(Json{{"argv", {"printf", "a\\377b"}}});
  ASSERT_TRUE(r.ok) << r.error;
  EXPECT_EQ(r.result["stdout"],
            "a\xEF\xBF\xBD"
            "b");
  EXPECT_NO_THROW(r.result.dump());
}

TEST(ExecTest, KilledBySignalIsAFailure) {
  auto r = runExecTask(Json{{"argv", {"sh", "-c", "kill -9 $$"}}});
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.result["signal"], 9);
  EXPECT_EQ(r.result["exit_code"], 137);
  EXPECT_NE(r.error.find("signal 9"), std::string::npos) << r.error;
}

TEST(ExecTest, CancelTerminatesTheChildAndReapsIt) {
  CancelToken token;
  std::atomic<pid_t> pid{0};
  std::thread canceller([&] {
    // Cancel once the child exists (a SIGTERM before or after its exec ends it the same way).
    EXPECT_TRUE(base::eventually([&] { return pid.load() != 0; }, 5s));
    token.cancel(CancelReason::kTimedOut);
  });
  auto start = std::chrono::steady_clock::now();
  ExecRequest req{{"sleep", "30"}, {}, {}, {}, false, {}};
  ExecOutcome o = runExec(req, ExecLimits{}, token, [&](pid_t p) { pid = p; });
  canceller.join();
  EXPECT_LT(std::chrono::steady_clock::now() - start, 5s);
  EXPECT_TRUE(o.started);
  EXPECT_EQ(o.cancelled, CancelReason::kTimedOut);
  EXPECT_EQ(o.signal, SIGTERM);
  // Reaped: the pid no longer names any process of ours (not even a zombie).
  EXPECT_EQ(::kill(pid.load(), 0), -1);
  EXPECT_EQ(errno, ESRCH);
  EXPECT_TRUE(noChildren());
}

// A fresh path a child shell creates to say it is ready (never a fixed name: tests run in
// parallel).
std::string readyPath(const std::string& tag) {
  static std::atomic<int> n{0};
  return (std::filesystem::temp_directory_path() /
          ("drover-exec-test-" + tag + "-" + std::to_string(getpid()) + "-" + std::to_string(n++)))
      .string();
}

TEST(ExecTest, ChildIgnoringSigtermIsKilledAfterTheGrace) {
  CancelToken token;
  ExecLimits limits;
  limits.kill_grace = 300ms;
  // The shell says when its trap is in place by creating a file; cancel only then.
  std::string ready = readyPath("trap");
  std::thread canceller([&] {
    EXPECT_TRUE(base::eventually([&] { return std::filesystem::exists(ready); }, 10s));
    token.cancel(CancelReason::kCancelled);
  });
  auto start = std::chrono::steady_clock::now();
  ExecRequest req{
      {"sh", "-c", "trap '' TERM; touch \"$1\"; sleep 30", "sh", ready}, {}, {}, {}, false, {}};
  ExecOutcome o = runExec(req, limits, token, nullptr);
  std::filesystem::remove(ready);
  canceller.join();
  auto took = std::chrono::steady_clock::now() - start;
  EXPECT_GE(took, 300ms);
  EXPECT_LT(took, 5s);
  EXPECT_EQ(o.signal, SIGKILL);
  EXPECT_TRUE(noChildren());
}

TEST(ExecTest, CancelKillsTheWholeProcessGroup) {
  CancelToken token;
  // The shell starts a grandchild, reports its pid, then creates a file; cancel only then. The
  // grandchild must die with the group.
  std::string ready = readyPath("group");
  std::thread canceller([&] {
    EXPECT_TRUE(base::eventually([&] { return std::filesystem::exists(ready); }, 10s));
    token.cancel(CancelReason::kCancelled);
  });
  ExecRequest req{
      {"sh", "-c", "sleep 30 & echo $!; touch \"$1\"; wait", "sh", ready}, {}, {}, {}, false, {}};
  ExecOutcome o = runExec(req, ExecLimits{}, token, nullptr);
  std::filesystem::remove(ready);
  canceller.join();
  ASSERT_FALSE(o.out.empty());
  pid_t grandchild = std::stoi(o.out);
  EXPECT_TRUE(base::eventually([&] { return processGone(grandchild); }));
}

TEST(ExecTest, LeftoverBackgroundProcessesAreKilledWhenTheCommandExits) {
  // The background sleep keeps stdout open; without the group kill we would wait 30 s for EOF.
  auto start = std::chrono::steady_clock::now();
  auto r = runExecTask(Json{{"argv", {"sh", "-c", "sleep 30 & echo $!"}}});
  ASSERT_TRUE(r.ok) << r.error;
  EXPECT_LT(std::chrono::steady_clock::now() - start, 5s);
  pid_t grandchild = std::stoi(r.result["stdout"].get<std::string>());
  EXPECT_TRUE(base::eventually([&] { return processGone(grandchild); }));
}

TEST(ExecTest, NoZombieAndNoLeakedDescriptor) {
  int before = countOpenFds();
  for (int i = 0; i < 20; ++i) {
    auto r = runExecTask(Json{{"argv", {"sh", "-c", i % 2 == 0 ? "echo x" : "exit 1"}}});
    EXPECT_EQ(r.ok, i % 2 == 0);
  }
  runExecTask(Json{{"argv", {"drover-no-such-command-xyz"}}});
  EXPECT_EQ(countOpenFds(), before);
  EXPECT_TRUE(noChildren());
}

TEST(ExecTest, ChildSeesOnlyStdio) {
  // Descriptors of this process (say a ZooKeeper socket) must not leak into commands.
  auto r = runExecTask(Json{{"argv", {"sh", "-c", "ls /proc/self/fd | wc -l"}}});
  ASSERT_TRUE(r.ok) << r.error;
  // 0, 1, 2 and the one ls opens to read the directory.
  EXPECT_EQ(std::stoi(r.result["stdout"].get<std::string>()), 4);
}

TEST(Utf8Test, KeepsValidAndReplacesInvalid) {
  EXPECT_EQ(toValidUtf8("plain"), "plain");
  EXPECT_EQ(toValidUtf8("h\xC3\xA9llo \xE2\x82\xAC \xF0\x9F\x98\x80"),
            "h\xC3\xA9llo \xE2\x82\xAC \xF0\x9F\x98\x80");
  EXPECT_EQ(toValidUtf8("\xC3"), "\xEF\xBF\xBD");
  EXPECT_EQ(toValidUtf8("\xC0\xAF"), "\xEF\xBF\xBD\xEF\xBF\xBD");                  // overlong
  EXPECT_EQ(toValidUtf8("\xED\xA0\x80"), "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");  // surrogate
}

}  // namespace
}  // namespace drover::worker
