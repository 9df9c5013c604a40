// Tests of the integration-test harness itself, against real processes and real ZooKeeper servers.

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <regex>
#include <set>
#include <sstream>
#include <string>

#include "base/eventually.h"
#include "local/ports.h"
#include "local/process.h"
#include "local/zk_cluster.h"

namespace drover::local {
namespace {

using namespace std::chrono_literals;
using base::eventually;

// --- Helper mode ---------------------------------------------------------------------------------
// Some checks need a parent process that dies or takes a signal. The test binary re-executes
// itself with DROVER_HARNESS_HELPER=<mode>; this runs before gtest and never returns.

std::atomic<bool> g_helper_handler_ran{false};

int runHelper(std::string_view mode) {
  if (mode == "chain") {
    // A SIGTERM handler of the test binary's own, installed before the harness's: the harness must
    // kill its children and then hand the signal on to it.
    signal(SIGTERM, [](int) { g_helper_handler_ran = true; });
  }
  // Output to /dev/null: a helper that dies without destructors must not leave an output dir.
  Process child(ProcessOptions{
      .argv = {"sleep", "60"}, .stdout_path = "/dev/null", .stderr_path = "/dev/null"});
  std::printf("child %d\n", static_cast<int>(child.pid()));
  std::fflush(stdout);
  if (mode == "orphan") {
    _exit(0);  // No destructors: only PR_SET_PDEATHSIG can end the child now.
  } else if (mode == "chain") {
    raise(SIGTERM);
    const auto status = child.wait(10s);
    std::printf("handler %d status %s\n", g_helper_handler_ran.load() ? 1 : 0,
                status ? status->toString().c_str() : "running");
    std::fflush(stdout);
    return 0;
  } else if (mode == "wait-for-signal") {
    while (true) ::pause();  // Until the test's SIGTERM, with the default disposition behind it.
  }
  return 2;
}

[[maybe_unused]] const int kHelperInit = [] {
  if (const char* mode = std::getenv("DROVER_HARNESS_HELPER")) _exit(runHelper(mode));
  return 0;
}();

std::string selfExe() { return std::filesystem::read_symlink("/proc/self/exe").string(); }

// Makes this test process the reaper of orphaned descendants, so a test can observe how a
// grandchild died after its parent is gone (and reap it, so nothing is left).
class SubreaperScope {
 public:
  SubreaperScope() { EXPECT_EQ(prctl(PR_SET_CHILD_SUBREAPER, 1), 0); }
  ~SubreaperScope() { prctl(PR_SET_CHILD_SUBREAPER, 0); }
};

// Waits for `pid`, a (possibly re-parented) child of this process, to end; its decoded status.
// ECHILD just means the orphan has not been re-parented to us yet.
std::optional<ExitStatus> reapOrphan(pid_t pid, std::chrono::milliseconds timeout) {
  std::optional<ExitStatus> result;
  eventually(
      [&] {
        int status = 0;
        if (waitpid(pid, &status, WNOHANG) != pid) return false;
        result = WIFSIGNALED(status) ? ExitStatus{-1, WTERMSIG(status)}
                                     : ExitStatus{WEXITSTATUS(status), 0};
        return true;
      },
      timeout);
  return result;
}

// The orphan is ours once re-parented: if a check failed, end it rather than leak it.
void killOrphan(pid_t pid) {
  if (kill(pid, SIGKILL) == 0) reapOrphan(pid, 5s);
}

pid_t parseChildPid(const std::string& out) {
  std::smatch m;
  if (!std::regex_search(out, m, std::regex("child (\\d+)\n"))) return -1;
  return std::stoi(m[1]);
}

char procState(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const auto paren = stat.rfind(')');
  return paren == std::string::npos || paren + 2 >= stat.size() ? '?' : stat[paren + 2];
}

// PIDs of processes whose command line mentions `needle`.
std::vector<pid_t> processesMentioning(const std::string& needle) {
  std::vector<pid_t> found;
  for (const auto& entry : std::filesystem::directory_iterator("/proc")) {
    const std::string name = entry.path().filename();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::ifstream in(entry.path() / "cmdline", std::ios::binary);
    // Through a stream, not an istreambuf_iterator: a process that exits after the open makes
    // the read fail with ESRCH, which libstdc++ throws through an iterator.
    std::ostringstream text;
    text << in.rdbuf();
    const std::string cmdline = text.str();
    if (cmdline.find(needle) != std::string::npos) found.push_back(std::stoi(name));
  }
  return found;
}

// --- Process -------------------------------------------------------------------------------------

TEST(ProcessTest, ReportsExitCodes) {
  Process p({"sh", "-c", "exit 3"});
  const auto status = p.wait(10s);
  ASSERT_TRUE(status.has_value());
  EXPECT_EQ(*status, (ExitStatus{3, 0}));
  EXPECT_FALSE(p.alive());
  EXPECT_EQ(p.exitStatus(), status);
  EXPECT_FALSE(p.kill9()) << "a reaped child must not be signalled";
}

TEST(ProcessTest, Kill9AndTerminateReportTheSignal) {
  Process a({"sleep", "60"});
  Process b({"sleep", "60"});
  EXPECT_FALSE(a.wait(50ms).has_value()) << "still running";
  EXPECT_TRUE(a.alive());
  EXPECT_TRUE(a.kill9());
  EXPECT_TRUE(b.terminate());
  EXPECT_EQ(a.wait(10s), (ExitStatus{-1, SIGKILL}));
  EXPECT_EQ(b.wait(10s), (ExitStatus{-1, SIGTERM}));
  EXPECT_EQ(a.exitStatus()->toString(), "signal 9 (Killed)");
}

TEST(ProcessTest, PauseAndResume) {
  Process p({"sleep", "60"});
  ASSERT_TRUE(p.pause());
  EXPECT_TRUE(eventually([&] { return procState(p.pid()) == 'T'; }, 5s));
  EXPECT_TRUE(p.alive()) << "a stopped child is alive";
  EXPECT_FALSE(p.wait(20ms).has_value());
  ASSERT_TRUE(p.resume());
  EXPECT_TRUE(eventually([&] { return procState(p.pid()) == 'S'; }, 5s));
  EXPECT_TRUE(p.kill9());
  EXPECT_EQ(p.wait(10s), (ExitStatus{-1, SIGKILL}));
}

TEST(ProcessTest, CapturesOutputWithEnvAndWorkingDir) {
  const std::string dir = makeTempDir("drover-harness-test-");
  {
    Process p(ProcessOptions{
        .argv = {"sh", "-c", "echo \"foo=$FOO\"; pwd; echo oops >&2; echo done"},
        .env = {{"FOO", "bar baz"}},
        .working_dir = dir,
    });
    ASSERT_TRUE(p.waitForOutput("done\n", 10s)) << p.readStdout();
    EXPECT_EQ(p.readStdout(), "foo=bar baz\n" + dir + "\ndone\n");
    EXPECT_EQ(p.wait(10s), (ExitStatus{0, 0}));
    EXPECT_EQ(p.readStderr(), "oops\n");
  }
  std::filesystem::remove_all(dir);
}

TEST(ProcessTest, MergesStreamsIntoOneFile) {
  const std::string dir = makeTempDir("drover-harness-test-");
  {
    Process p(ProcessOptions{.argv = {"sh", "-c", "echo one; echo two >&2; echo three"},
                             .stdout_path = dir + "/out",
                             .stderr_path = dir + "/out"});
    ASSERT_TRUE(p.wait(10s).has_value());
    EXPECT_EQ(p.readStdout(), "one\ntwo\nthree\n");
    EXPECT_EQ(p.stdoutPath(), dir + "/out");
  }
  std::filesystem::remove_all(dir);
}

TEST(ProcessTest, WaitForOutputWithPredicateAndFailsFastWhenTheChildExits) {
  Process lines({"sh", "-c", "for i in 1 2 3; do echo line$i; done; exec sleep 60"});
  EXPECT_TRUE(lines.waitForOutput(
      [](const std::string& out) { return std::count(out.begin(), out.end(), '\n') == 3; }, 10s));
  EXPECT_TRUE(lines.alive());

  Process quitter({"sh", "-c", "echo bye"});
  const auto start = std::chrono::steady_clock::now();
  EXPECT_FALSE(quitter.waitForOutput("never printed", 60s));
  EXPECT_LT(std::chrono::steady_clock::now() - start, 10s) << "must not wait out the deadline";
}

TEST(ProcessTest, ThrowsWhenTheChildCannotStart) {
  EXPECT_THROW(Process({"/nonexistent/program"}), std::runtime_error);
  EXPECT_THROW(Process({"drover-no-such-program-in-path"}), std::runtime_error);
  EXPECT_THROW(Process(ProcessOptions{.argv = {"true"}, .working_dir = "/nonexistent/dir"}),
               std::runtime_error);
  EXPECT_THROW(Process(std::vector<std::string>{}), std::invalid_argument);
}

TEST(ProcessTest, DestructorKillsTheWholeProcessGroup) {
  SubreaperScope subreaper;
  pid_t grandchild = -1;
  {
    Process p({"sh", "-c", "sleep 60 & echo \"child $!\"; wait"});
    ASSERT_TRUE(p.waitForOutput("\n", 10s));
    grandchild = parseChildPid(p.readStdout());
    ASSERT_GT(grandchild, 0) << p.readStdout();
  }
  // The shell was reaped by the destructor; its background sleep, re-parented to us, was killed.
  const auto status = reapOrphan(grandchild, 10s);
  if (!status) killOrphan(grandchild);
  EXPECT_EQ(status, (ExitStatus{-1, SIGKILL}));
}

TEST(ProcessTest, LeftoversOfAnExitedChildAreKilled) {
  SubreaperScope subreaper;
  Process p({"sh", "-c", "sleep 60 & echo \"child $!\""});
  EXPECT_EQ(p.wait(10s), (ExitStatus{0, 0}));
  const pid_t grandchild = parseChildPid(p.readStdout());
  ASSERT_GT(grandchild, 0) << p.readStdout();
  const auto status = reapOrphan(grandchild, 10s);
  if (!status) killOrphan(grandchild);
  EXPECT_EQ(status, (ExitStatus{-1, SIGKILL}));
}

TEST(ProcessTest, ChildDiesWhenItsParentDies) {
  SubreaperScope subreaper;
  // The helper starts `sleep 60` through Process and _exit()s without running destructors. The
  // sleep is in its own process group, so nothing but PR_SET_PDEATHSIG can kill it.
  Process helper(ProcessOptions{.argv = {selfExe()}, .env = {{"DROVER_HARNESS_HELPER", "orphan"}}});
  ASSERT_EQ(helper.wait(30s), (ExitStatus{0, 0})) << helper.readStderr();
  const pid_t orphan = parseChildPid(helper.readStdout());
  ASSERT_GT(orphan, 0) << helper.readStdout();
  const auto status = reapOrphan(orphan, 10s);
  if (!status) killOrphan(orphan);
  EXPECT_EQ(status, (ExitStatus{-1, SIGKILL}));
}

TEST(ProcessTest, SigtermKillsChildrenThenRunsThePreviousHandler) {
  // The helper survives its SIGTERM (its own handler returns), so the child's SIGKILL can only
  // come from the harness's handler, not from PR_SET_PDEATHSIG.
  Process helper(ProcessOptions{.argv = {selfExe()}, .env = {{"DROVER_HARNESS_HELPER", "chain"}}});
  ASSERT_EQ(helper.wait(30s), (ExitStatus{0, 0})) << helper.readStderr();
  EXPECT_NE(helper.readStdout().find("handler 1 status signal 9 (Killed)\n"), std::string::npos)
      << helper.readStdout();
}

TEST(ProcessTest, SigtermWithDefaultDispositionKillsChildrenAndTheTestBinary) {
  SubreaperScope subreaper;
  Process helper(
      ProcessOptions{.argv = {selfExe()}, .env = {{"DROVER_HARNESS_HELPER", "wait-for-signal"}}});
  ASSERT_TRUE(helper.waitForOutput("\n", 30s)) << helper.readStderr();
  const pid_t child = parseChildPid(helper.readStdout());
  ASSERT_GT(child, 0) << helper.readStdout();
  ASSERT_TRUE(helper.terminate());
  EXPECT_EQ(helper.wait(10s), (ExitStatus{-1, SIGTERM})) << "the signal is re-raised";
  const auto status = reapOrphan(child, 10s);
  if (!status) killOrphan(child);
  EXPECT_EQ(status, (ExitStatus{-1, SIGKILL}));
}

// --- Ports ---------------------------------------------------------------------------------------

TEST(PortsTest, FreePortsAreDistinctAndBindable) {
  const auto ports = freePorts(10);
  ASSERT_EQ(ports.size(), 10u);
  EXPECT_EQ(std::set<uint16_t>(ports.begin(), ports.end()).size(), 10u);
  const uint16_t another = freePort();
  EXPECT_EQ(std::count(ports.begin(), ports.end(), another), 0) << "never handed out twice";
  for (uint16_t port : ports) {
    const int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(port);
    EXPECT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0) << port;
    close(fd);
  }
}

TEST(PortsTest, UniqueRootsAreFreshPaths) {
  const std::string a = uniqueRoot();
  EXPECT_TRUE(std::regex_match(a, std::regex("/t-[0-9a-f]{16}"))) << a;
  EXPECT_NE(a, uniqueRoot());
}

// --- ZkCluster -----------------------------------------------------------------------------------

TEST(ZkClusterTest, StandaloneServes) {
  ZkCluster::Options options;
  options.min_session_timeout_ms = 1000;
  options.max_session_timeout_ms = 4000;
  options.extra_config = {"maxClientCnxns=77"};
  auto zk = ZkCluster::standalone(options);
  ASSERT_EQ(zk->size(), 1);
  EXPECT_FALSE(zk->isEnsemble());
  EXPECT_EQ(zk->connectString(), "127.0.0.1:" + std::to_string(zk->clientPort(0)));
  EXPECT_EQ(zk->mode(0), "standalone");
  EXPECT_EQ(zk->leaderIndex(), 0);
  EXPECT_TRUE(zk->isRunning(0));
  EXPECT_GT(zk->pid(0), 0);
  EXPECT_EQ(fourLetterWord(zk->clientPort(0), "ruok"), "imok");
  EXPECT_NE(zk->mntr(0).find("zk_server_state\tstandalone"), std::string::npos) << zk->mntr(0);
  EXPECT_NE(zk->srvr(0).find("Mode: standalone"), std::string::npos);

  std::ifstream in(zk->configPath(0));
  const std::string cfg((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  for (const char* line :
       {"tickTime=500\n", "clientPortAddress=127.0.0.1\n", "admin.enableServer=false\n",
        "minSessionTimeout=1000\n", "maxSessionTimeout=4000\n", "maxClientCnxns=77\n"}) {
    EXPECT_NE(cfg.find(line), std::string::npos) << line << " missing in\n" << cfg;
  }
  // The options reach the server (its log states what it runs with).
  EXPECT_TRUE(eventually(
      [&] {
        std::ifstream log(zk->logPath(0));
        const std::string text((std::istreambuf_iterator<char>(log)),
                               std::istreambuf_iterator<char>());
        return text.find("tickTime 500 ms minSessionTimeout 1000 ms maxSessionTimeout 4000 ms") !=
               std::string::npos;
      },
      5s))
      << zk->logPath(0);
}

TEST(ZkClusterTest, StandaloneStopAndRestart) {
  auto zk = ZkCluster::standalone();
  zk->stop(0);
  EXPECT_FALSE(zk->isRunning(0));
  EXPECT_EQ(zk->mode(0), "");
  EXPECT_EQ(fourLetterWord(zk->clientPort(0), "srvr", 1s), "") << "the port is closed";
  EXPECT_FALSE(zk->waitUntilServing(100ms));
  zk->restart(0);
  EXPECT_EQ(zk->mode(0), "standalone");
  EXPECT_TRUE(zk->waitUntilServing(1s));
}

TEST(ZkClusterTest, StartupFailureThrowsWithoutWaitingOutTheTimeout) {
  ZkCluster::Options options;
  options.extra_config = {"tickTime=not-a-number"};
  const auto start = std::chrono::steady_clock::now();
  try {
    ZkCluster::standalone(options);
    FAIL() << "a server with a broken config cannot serve";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("exited with"), std::string::npos) << e.what();
  }
  EXPECT_LT(std::chrono::steady_clock::now() - start, 30s);
}

TEST(ZkClusterTest, EnsembleElectsOneLeader) {
  auto zk = ZkCluster::ensemble(3);
  ASSERT_EQ(zk->size(), 3);
  EXPECT_TRUE(zk->isEnsemble());
  EXPECT_TRUE(std::regex_match(
      zk->connectString(),
      std::regex("127\\.0\\.0\\.1:\\d+,127\\.0\\.0\\.1:\\d+,127\\.0\\.0\\.1:\\d+")))
      << zk->connectString();
  int leaders = 0;
  int followers = 0;
  for (int i = 0; i < 3; ++i) {
    const std::string mode = zk->mode(i);
    leaders += mode == "leader";
    followers += mode == "follower";
  }
  EXPECT_EQ(leaders, 1);
  EXPECT_EQ(followers, 2);
  const int leader = zk->leaderIndex();
  ASSERT_GE(leader, 0);
  EXPECT_NE(zk->mntr(leader).find("zk_synced_followers\t2"), std::string::npos) << zk->mntr(leader);

  for (int i = 0; i < 3; ++i) {
    std::ifstream in(zk->configPath(i));
    const std::string cfg((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    EXPECT_NE(cfg.find("quorumListenOnAllIPs=false\n"), std::string::npos) << cfg;
    std::istringstream lines(cfg);
    int server_lines = 0;
    for (std::string line; std::getline(lines, line);) {
      server_lines +=
          std::regex_match(line, std::regex("server\\.[123]=127\\.0\\.0\\.1:\\d+:\\d+"));
    }
    EXPECT_EQ(server_lines, 3) << cfg;
    std::ifstream myid(zk->dataDir(i) + "/myid");
    int id = 0;
    myid >> id;
    EXPECT_EQ(id, i + 1);
  }
}

TEST(ZkClusterTest, EnsembleSurvivesLeaderKill9AndTheOldLeaderRejoinsAsFollower) {
  auto zk = ZkCluster::ensemble(3);
  const int old_leader = zk->leaderIndex();
  ASSERT_GE(old_leader, 0);
  zk->kill9(old_leader);
  EXPECT_FALSE(zk->isRunning(old_leader));
  EXPECT_EQ(zk->mode(old_leader), "");

  const auto start = std::chrono::steady_clock::now();
  ASSERT_TRUE(zk->waitUntilServing(60s));
  std::fprintf(stderr, "new leader elected %.2f s after kill -9\n",
               std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  const int new_leader = zk->leaderIndex();
  ASSERT_GE(new_leader, 0);
  EXPECT_NE(new_leader, old_leader);

  zk->restart(old_leader);
  EXPECT_TRUE(zk->waitUntilServing(60s));
  EXPECT_EQ(zk->mode(old_leader), "follower");
  EXPECT_EQ(zk->leaderIndex(), new_leader);
}

TEST(ZkClusterTest, PausedFollowerStopsAnsweringAndRecoversOnResume) {
  auto zk = ZkCluster::ensemble(3);
  const int leader = zk->leaderIndex();
  ASSERT_GE(leader, 0);
  const int follower = (leader + 1) % 3;
  zk->pause(follower);
  EXPECT_TRUE(zk->isPaused(follower));
  EXPECT_TRUE(zk->isRunning(follower));
  EXPECT_TRUE(eventually([&] { return procState(zk->pid(follower)) == 'T'; }, 5s));
  EXPECT_EQ(fourLetterWord(zk->clientPort(follower), "srvr", 500ms), "")
      << "a stopped JVM answers nothing";
  EXPECT_EQ(zk->mode(follower), "");
  EXPECT_TRUE(zk->waitUntilServing(30s)) << "two of three keep a quorum";
  EXPECT_EQ(zk->leaderIndex(), leader);

  zk->resume(follower);
  EXPECT_FALSE(zk->isPaused(follower));
  EXPECT_TRUE(zk->waitUntilServing(follower, 60s));
  EXPECT_EQ(zk->mode(follower), "follower");
  EXPECT_TRUE(zk->waitUntilServing(30s));
}

TEST(ZkClusterTest, DestructionLeavesNoServerProcessesOrDirs) {
  auto zk = ZkCluster::ensemble(3);
  std::vector<std::string> dirs;
  for (int i = 0; i < zk->size(); ++i) {
    dirs.push_back(zk->dir(i));
    EXPECT_EQ(processesMentioning(zk->configPath(i)).size(), 1u) << "one java per server";
  }
  zk->pause(1);  // A stopped process must be killed too.
  zk.reset();
  for (const std::string& dir : dirs) {
    EXPECT_TRUE(processesMentioning(dir).empty()) << dir;
    if (!keepTestDirs()) {
      EXPECT_FALSE(std::filesystem::exists(dir)) << dir;
    }
  }
}

TEST(ZkClusterTest, SharedStandaloneIsStartedOnce) {
  ZkCluster& a = ZkCluster::sharedStandalone();
  ZkCluster& b = ZkCluster::sharedStandalone();
  EXPECT_EQ(&a, &b);
  EXPECT_EQ(a.mode(0), "standalone");
}

}  // namespace
}  // namespace drover::local
