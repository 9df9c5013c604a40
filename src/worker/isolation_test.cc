// The exec sandbox and the container type on this machine's real bubblewrap, cgroups and
// podman (scripts/install-deps.sh installs them). Each case runs tasks through the same handler a
// node uses, and checks from outside (the host's files, sockets and cgroups) what the task could
// and could not do. The node's own survival is checked by running more work after each limit hit.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "base/eventually.h"
#include "worker/container.h"
#include "worker/exec.h"
#include "worker/sandbox.h"

namespace drover::worker {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/drover-iso-test-XXXXXX";
    path_ = ::mkdtemp(tmpl);
  }
  ~TempDir() { fs::remove_all(path_); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

std::string readFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// One shared probe of the machine: cgroups are detected once per process, like a node does.
const CgroupSystem& machineCgroups() {
  static const CgroupSystem* c = new CgroupSystem(CgroupSystem::detect());
  return *c;
}

class IsolationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(::access("/usr/bin/bwrap", X_OK), 0)
        << "bubblewrap is missing: scripts/install-deps.sh installs it";
    // Sandboxed tasks run as another uid: the way to their work dirs must be open to it.
    ::chmod(work_root_.path().c_str(), 0711);
    policy_.work_root = work_root_.path() + "/work";
  }

  ExecLimits limits() const {
    ExecLimits l;
    l.isolation = std::make_shared<ExecIsolation>(policy_, machineCgroups());
    return l;
  }

  HandlerResult run(Json payload, const std::string& id = "t1", CancelToken cancel = {}) {
    TaskContext ctx;
    ctx.id = id;
    ctx.attempt = 1;
    ctx.worker = "w1";
    ctx.payload = std::move(payload);
    ctx.cancel = cancel;
    return execHandler(ctx, limits());
  }

  void requireCgroups() {
    if (machineCgroups().mode() == CgroupMode::kNone) {
      GTEST_SKIP() << "no writable cgroups here (" << machineCgroups().whyNot()
                   << "): the limit tests need root on a machine with cgroups";
    }
  }

  // The cgroup folders of the running task `id` (attempt 1), one per controller.
  std::vector<std::string> taskCgroups(const std::string& id) const {
    std::vector<std::string> out;
    for (const auto& [controller, parent] : machineCgroups().parents()) {
      std::error_code ec;
      for (const auto& e : fs::directory_iterator(parent, ec)) {
        if (e.path().filename().string().rfind(id + "-1-", 0) == 0) out.push_back(e.path());
      }
    }
    return out;
  }

  ExecPolicy policy_;
  TempDir work_root_;
};

TEST_F(IsolationTest, RunsAsAnUnprivilegedUidWithNoNewPrivileges) {
  auto r = run(Json{{"argv", {"sh", "-c", "id -u; id -g; grep NoNewPrivs /proc/self/status"}}});
  ASSERT_TRUE(r.ok) << r.error << r.result.dump();
  std::istringstream out(r.result["stdout"].get<std::string>());
  int uid = -1, gid = -1;
  out >> uid >> gid;
  if (::geteuid() == 0) {
    EXPECT_EQ(uid, 65534);
    EXPECT_EQ(gid, 65534);
  } else {
    EXPECT_EQ(uid, static_cast<int>(::geteuid()));
  }
  EXPECT_NE(uid, 0);
  EXPECT_NE(r.result["stdout"].get<std::string>().find("NoNewPrivs:\t1"), std::string::npos);
}

TEST_F(IsolationTest, CannotSeeTheNodesProcesses) {
  // This test process (the "node") and its other children are invisible: the task's /proc lists
  // its own pid namespace only (bwrap as 1, the shell, ls).
  auto r = run(Json{{"argv", {"sh", "-c", "ls /proc | grep -E '^[0-9]+$'"}}});
  ASSERT_TRUE(r.ok) << r.error << r.result.dump();
  std::istringstream out(r.result["stdout"].get<std::string>());
  std::vector<int> pids;
  for (int p; out >> p;) pids.push_back(p);
  ASSERT_FALSE(pids.empty());
  EXPECT_LE(pids.size(), 5u) << r.result["stdout"];
  for (int p : pids) EXPECT_NE(p, static_cast<int>(::getpid()));
  EXPECT_LT(*std::max_element(pids.begin(), pids.end()), 10) << r.result["stdout"];
}

TEST_F(IsolationTest, CannotWriteOutsideItsWorkDir) {
  // A host folder anyone may write to: invisible to the task, so still empty afterwards.
  TempDir open;
  ::chmod(open.path().c_str(), 0777);
  std::string script =
      "for f in \"$1/x\" /etc/drover-x /usr/drover-x /drover-x /var/tmp/drover-x; do"
      "  if echo no > \"$f\" 2>/dev/null; then echo \"WROTE $f\"; fi; done;"
      "echo yes > \"$HOME/mine\" && cat mine && pwd";
  auto r = run(Json{{"argv", {"sh", "-c", script, "sh", open.path()}}});
  ASSERT_TRUE(r.ok) << r.error << r.result.dump();
  std::string out = r.result["stdout"];
  EXPECT_EQ(out.find("WROTE"), std::string::npos) << out;
  EXPECT_FALSE(fs::exists(open.path() + "/x"));
  EXPECT_FALSE(fs::exists("/etc/drover-x"));
  EXPECT_FALSE(fs::exists("/drover-x"));
  // Its own work dir (cwd and HOME) was writable, and is gone after the run.
  EXPECT_EQ(out.rfind("yes\n" + policy_.work_root + "/t1-1-", 0), 0u) << out;
  EXPECT_TRUE(fs::is_empty(policy_.work_root));
}

// A TCP listener on the host's loopback, accepting in the background.
class Listener {
 public:
  Listener() {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = 0;
    ::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof(a));
    ::listen(fd_, 8);
    socklen_t len = sizeof(a);
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
  }
  ~Listener() { ::close(fd_); }
  int port() const { return port_; }

 private:
  int fd_ = -1;
  int port_ = 0;
};

TEST_F(IsolationTest, HasNoNetworkUnlessItAsks) {
  Listener host;
  std::string script = "if echo hi > /dev/tcp/127.0.0.1/" + std::to_string(host.port()) +
                       "; then echo CONNECTED; else echo REFUSED; fi; cat /proc/net/dev";
  auto closed = run(Json{{"argv", {"bash", "-c", script}}});
  ASSERT_TRUE(closed.ok) << closed.error << closed.result.dump();
  EXPECT_NE(closed.result["stdout"].get<std::string>().find("REFUSED"), std::string::npos)
      << closed.result["stdout"];
  // Only a loopback device of its own.
  std::string devs = closed.result["stdout"];
  size_t interfaces = 0;
  for (size_t i = devs.find(':'); i != std::string::npos; i = devs.find(':', i + 1)) ++interfaces;
  EXPECT_EQ(interfaces, 1u) << devs;

  auto open = run(Json{{"argv", {"bash", "-c", script}}, {"network", true}});
  ASSERT_TRUE(open.ok) << open.error << open.result.dump();
  EXPECT_NE(open.result["stdout"].get<std::string>().find("CONNECTED"), std::string::npos)
      << open.result["stdout"];
}

TEST_F(IsolationTest, EnvironmentIsMinimalPlusThePayloadsAndTheTasksIdentity) {
  ::setenv("DROVER_ISO_NODE_SECRET", "s3cret", 1);
  auto r = run(Json{{"argv", {"sh", "-c", "env | sort"}},
                    {"env", {{"MINE", "1"}, {"DROVER_TASK_ID", "spoofed"}}}});
  ::unsetenv("DROVER_ISO_NODE_SECRET");
  ASSERT_TRUE(r.ok) << r.error;
  std::string env = r.result["stdout"];
  EXPECT_EQ(env.find("s3cret"), std::string::npos) << env;
  EXPECT_NE(env.find("MINE=1\n"), std::string::npos) << env;
  EXPECT_NE(env.find("DROVER_TASK_ID=t1\n"), std::string::npos) << env;
  EXPECT_NE(env.find("DROVER_ATTEMPT=1\n"), std::string::npos) << env;
  EXPECT_NE(env.find("DROVER_WORKER=w1\n"), std::string::npos) << env;
}

TEST_F(IsolationTest, AllowListAndDisabledExecRefuseWithoutRunning) {
  policy_.allow = {"/usr/bin/echo"};
  auto ok = run(Json{{"argv", {"echo", "allowed"}}});
  ASSERT_TRUE(ok.ok) << ok.error;
  EXPECT_EQ(ok.result["stdout"], "allowed\n");
  TempDir marker;
  ::chmod(marker.path().c_str(), 0777);
  policy_.sandbox = false;  // so that a run would be seen on the host
  auto refused = run(Json{{"argv", {"touch", marker.path() + "/ran"}}});
  EXPECT_FALSE(refused.ok);
  EXPECT_NE(refused.error.find("not allowed"), std::string::npos) << refused.error;
  auto relative = run(Json{{"argv", {"./echo", "x"}}});
  EXPECT_NE(relative.error.find("not allowed"), std::string::npos) << relative.error;
  policy_.allow.clear();
  policy_.enabled = false;
  auto disabled = run(Json{{"argv", {"touch", marker.path() + "/ran"}}});
  EXPECT_FALSE(disabled.ok);
  EXPECT_NE(disabled.error.find("disabled"), std::string::npos) << disabled.error;
  EXPECT_FALSE(fs::exists(marker.path() + "/ran"));
}

TEST_F(IsolationTest, LimitsAreWrittenToTheTasksCgroupAndItIsRemovedAfter) {
  requireCgroups();
  CancelToken cancel;
  std::vector<std::string> dirs;
  std::thread watcher([&] {
    // Limits are written before the child joins: wait until it has joined.
    EXPECT_TRUE(base::eventually(
        [&] {
          dirs = taskCgroups("lim");
          return !dirs.empty() && !readFile(dirs.front() + "/cgroup.procs").empty();
        },
        10s));
    // Read while the task sleeps, then stop it.
    for (const auto& d : dirs) {
      if (machineCgroups().mode() == CgroupMode::kV1) {
        if (d.find("/memory/") != std::string::npos) {
          EXPECT_EQ(readFile(d + "/memory.limit_in_bytes"), "50331648\n");
        }
        if (d.find("/pids/") != std::string::npos) {
          EXPECT_EQ(readFile(d + "/pids.max"), "7\n");
        }
        if (d.find("/cpu/") != std::string::npos) {
          EXPECT_EQ(readFile(d + "/cpu.cfs_quota_us"), "50000\n");
        }
      } else {
        EXPECT_EQ(readFile(d + "/memory.max"), "50331648\n");
        EXPECT_EQ(readFile(d + "/pids.max"), "7\n");
        EXPECT_EQ(readFile(d + "/cpu.max"), "50000 100000\n");
      }
    }
    cancel.cancel(CancelReason::kCancelled);
  });
  auto r = run(Json{{"argv", {"sleep", "30"}},
                    {"resources", {{"memory_mb", 48}, {"cpus", 0.5}, {"pids", 7}}}},
               "lim", cancel);
  watcher.join();
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.error, "cancelled");
  ASSERT_FALSE(dirs.empty());
  for (const auto& d : dirs) EXPECT_FALSE(fs::exists(d)) << d;
}

TEST_F(IsolationTest, AMemoryHogIsKilledWithAClearErrorAndTheNodeKeepsServing) {
  requireCgroups();
  // Doubles a string until the shell holds far more than 32 MiB.
  auto r = run(Json{{"argv", {"sh", "-c", "x=a; while :; do x=$x$x; done"}},
                    {"resources", {{"memory_mb", 32}}}},
               "hog");
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.error, "killed: memory limit 32 MiB") << r.result.dump();
  EXPECT_EQ(r.result["limit"], "memory");
  EXPECT_TRUE(taskCgroups("hog").empty());
  // This process (the node's stand-in) is alive and runs the next task normally.
  auto next = run(Json{{"argv", {"echo", "still here"}}});
  ASSERT_TRUE(next.ok) << next.error;
  EXPECT_EQ(next.result["stdout"], "still here\n");
}

TEST_F(IsolationTest, AForkBombIsBoundedByItsProcessLimitAndTheNodeKeepsServing) {
  requireCgroups();
  CancelToken cancel;
  std::thread watcher([&] {
    // The bomb reaches its limit (the kernel refused a fork)...
    bool hit = base::eventually(
        [&] {
          for (const auto& d : taskCgroups("bomb")) {
            if (d.find("pids") != std::string::npos || machineCgroups().mode() == CgroupMode::kV2) {
              std::istringstream in(readFile(d + "/pids.events"));
              std::string k;
              int64_t v = 0;
              while (in >> k >> v) {
                if (k == "max" && v > 0) return true;
              }
            }
          }
          return false;
        },
        15s);
    EXPECT_TRUE(hit);
    // ...while this process can still start processes of its own.
    ExecRequest probe;
    probe.argv = {"true"};
    ExecOutcome o = runExec(probe, ExecLimits{}, CancelToken{});
    EXPECT_TRUE(o.started) << o.error;
    EXPECT_EQ(o.exit_code, 0);
    cancel.cancel(CancelReason::kTimedOut);
  });
  // The classic bomb, restarted forever by its first shell (bash retries a refused fork).
  auto r = run(Json{{"argv", {"bash", "-c", "b() { b | b & }; while :; do b; done"}},
                    {"resources", {{"pids", 24}}}},
               "bomb", cancel);
  watcher.join();
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.error, "timed out (process limit 24 reached)") << r.result.dump();
  EXPECT_TRUE(taskCgroups("bomb").empty());  // every process killed, the cgroup removed
  auto next = run(Json{{"argv", {"echo", "still here"}}});
  ASSERT_TRUE(next.ok) << next.error;
}

TEST(CgroupSystemTest, WritesV2LimitsBelowItsParent) {
  // A folder stands in for a cgroup v2 parent: create() writes the files the kernel would read.
  char tmpl[] = "/tmp/drover-cg-test-XXXXXX";
  std::string root = ::mkdtemp(tmpl);
  {
    CgroupSystem cgroups(CgroupMode::kV2, {{"", root}});
    auto cg = cgroups.create("t-1-abc", Resources{64, 1.5, 10});
    ASSERT_TRUE(cg.has_value()) << cg.error();
    std::string d = root + "/t-1-abc";
    EXPECT_EQ(readFile(d + "/memory.max"), "67108864");
    EXPECT_EQ(readFile(d + "/cpu.max"), "150000 100000");
    EXPECT_EQ(readFile(d + "/pids.max"), "10");
    EXPECT_EQ((*cg)->procFds().size(), 1u);
    EXPECT_FALSE((*cg)->oomKilled());
    std::ofstream(d + "/memory.events") << "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n";
    std::ofstream(d + "/pids.events") << "max 2\n";
    EXPECT_TRUE((*cg)->oomKilled());
    EXPECT_TRUE((*cg)->pidsLimitHit());
  }
  fs::remove_all(root);
  CgroupSystem none(CgroupMode::kNone, {}, "no cgroups here");
  auto refused = none.create("t", Resources{64, 0, 0});
  ASSERT_FALSE(refused.has_value());
  EXPECT_NE(refused.error().find("no cgroups here"), std::string::npos);
}

// ---- container ---------------------------------------------------------------------------

// A busybox image built from this machine's busybox-static, imported once per test run (no
// registry is reachable), and an engine configuration that runs on cgroups v1 without raising
// rlimits (docs/ISOLATION.md).
class ContainerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    std::string d = dir_->path();
    std::ofstream(d + "/containers.conf") << "[containers]\ndefault_ulimits = []\n";
    config_ = new ContainerConfig();
    config_->engine = {"env",
                       "CONTAINERS_CONF=" + d + "/containers.conf",
                       "podman",
                       "--runtime",
                       "/usr/sbin/runc",
                       "--cgroup-manager=cgroupfs"};
    std::string cmd = "set -e; mkdir -p " + d + "/r/bin; cp /bin/busybox " + d +
                      "/r/bin/; ln -s busybox " + d + "/r/bin/sh; tar -C " + d + "/r -cf " + d +
                      "/r.tar .; podman import -q " + d + "/r.tar " + kImage + " >/dev/null";
    image_ok_ = std::system(cmd.c_str()) == 0;
  }
  static void TearDownTestSuite() {
    (void)std::system((std::string("podman rmi -f ") + kImage + " >/dev/null 2>&1").c_str());
    delete dir_;
    delete config_;
  }
  void SetUp() override { ASSERT_TRUE(image_ok_) << "podman import of the test image failed"; }

  HandlerResult run(Json payload, const std::string& id, CancelToken cancel = {}) {
    TaskContext ctx;
    ctx.id = id;
    ctx.attempt = 1;
    ctx.worker = "w1";
    ctx.payload = std::move(payload);
    ctx.cancel = cancel;
    return containerHandler(ctx, ExecLimits{}, *config_);
  }

  // Whether the engine knows a container of this name (running or not).
  bool containerExists(const std::string& name) {
    std::string cmd =
        "CONTAINERS_CONF=" + dir_->path() + "/containers.conf podman container exists " + name;
    return std::system(cmd.c_str()) == 0;
  }

  static constexpr const char* kImage = "localhost/drover-iso-test:1";
  static inline TempDir* dir_ = nullptr;
  static inline ContainerConfig* config_ = nullptr;
  static inline bool image_ok_ = false;
};

TEST_F(ContainerTest, RunsAnImageWithItsMemoryLimitEnvAndNoNetwork) {
  auto r = run(Json{{"image", kImage},
                    {"argv",
                     {"/bin/sh", "-c",
                      "cat /sys/fs/cgroup/memory/memory.limit_in_bytes "
                      "/sys/fs/cgroup/memory.max 2>/dev/null; echo $GREETING $DROVER_TASK_ID; "
                      "ls /sys/class/net"}},
                    {"env", {{"GREETING", "hello"}}},
                    {"resources", {{"memory_mb", 64}}}},
               "c1");
  ASSERT_TRUE(r.ok) << r.error << r.result.dump();
  std::string out = r.result["stdout"];
  EXPECT_EQ(out.rfind("67108864\nhello c1\n", 0), 0u) << out;
  EXPECT_EQ(out.find("eth"), std::string::npos) << out;  // --network=none: loopback only
  EXPECT_FALSE(containerExists(containerName("c1", 1)));
}

TEST_F(ContainerTest, CancelStopsAndRemovesTheContainer) {
  CancelToken cancel;
  std::string name = containerName("c2", 1);
  std::thread canceller([&] {
    EXPECT_TRUE(base::eventually([&] { return containerExists(name); }, 20s, 50ms));
    cancel.cancel(CancelReason::kCancelled);
  });
  auto start = std::chrono::steady_clock::now();
  auto r = run(Json{{"image", kImage}, {"argv", {"/bin/sh", "-c", "sleep 60"}}}, "c2", cancel);
  canceller.join();
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.error, "cancelled");
  EXPECT_LT(std::chrono::steady_clock::now() - start, 30s);
  EXPECT_FALSE(containerExists(name));
}

TEST_F(ContainerTest, AFailingCommandFailsTheTaskAndLeavesNoContainer) {
  auto r = run(Json{{"image", kImage}, {"argv", {"/bin/sh", "-c", "echo oops >&2; exit 3"}}}, "c3");
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.error, "exited with code 3");
  EXPECT_EQ(r.result["stderr"], "oops\n");
  EXPECT_FALSE(containerExists(containerName("c3", 1)));
}

}  // namespace
}  // namespace drover::worker
