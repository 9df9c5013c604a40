// Isolation through a real `drover node` (docs/ISOLATION.md): a memory hog and a fork bomb
// submitted over REST end `failed`, held by their limits, and the same node then runs the next
// task; a container task cancelled over REST is stopped and its container removed.
#include <gtest/gtest.h>
#include <httplib.h>
#include <stdlib.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "base/eventually.h"
#include "base/ids.h"
#include "local/ports.h"
#include "local/process.h"
#include "local/zk_cluster.h"

namespace drover {
namespace {

using namespace std::chrono_literals;
using Json = nlohmann::json;
namespace fs = std::filesystem;

class IsolationNodeTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    char tmpl[] = "/tmp/drover-iso-node-XXXXXX";
    dir_ = ::mkdtemp(tmpl);
    ::chmod(dir_.c_str(), 0711);  // sandboxed tasks (another uid) reach their work dirs below
    std::ofstream(dir_ + "/containers.conf") << "[containers]\ndefault_ulimits = []\n";
    std::ofstream(dir_ + "/node.yaml")
        << "exec_work_dir: " << dir_ << "/work\n"
        << "container_engine: env CONTAINERS_CONF=" << dir_
        << "/containers.conf podman --runtime /usr/sbin/runc --cgroup-manager=cgroupfs\n";
    std::string cmd = "set -e; d=" + dir_ +
                      "; mkdir -p $d/r/bin; cp /bin/busybox $d/r/bin/; ln -s busybox $d/r/bin/sh;"
                      " tar -C $d/r -cf $d/r.tar .; podman import -q $d/r.tar " +
                      kImage + " >/dev/null";
    image_ok_ = std::system(cmd.c_str()) == 0;
    port_ = local::freePort();
    node_ = startNode("iso1", port_).release();
    node_up_ = base::eventually(
        [] { return node_->readStderr().find("worker iso1") != std::string::npos; }, 30s);
  }
  // A node of its own cluster (a fresh root), with the suite's config file.
  static std::unique_ptr<local::Process> startNode(const std::string& id, int port) {
    return std::make_unique<local::Process>(std::vector<std::string>{
        DROVER_BINARY, "node", "--zk", local::ZkCluster::sharedStandalone().connectString(),
        "--zk-root", "/iso-" + base::randomHex(4), "--http", "127.0.0.1:" + std::to_string(port),
        "--id", id, "--config", dir_ + "/node.yaml"});
  }
  static void TearDownTestSuite() {
    delete node_;  // SIGKILLs the node's process group
    (void)std::system((std::string("podman rmi -f ") + kImage + " >/dev/null 2>&1").c_str());
    fs::remove_all(dir_);
  }
  void SetUp() override { ASSERT_TRUE(node_up_) << node_->readStderr(); }

  static Json call(const std::string& method, const std::string& path, const Json& body = {},
                   int port = 0) {
    httplib::Client cli("127.0.0.1", port != 0 ? port : port_);
    cli.set_read_timeout(60);
    auto r = method == "POST"     ? cli.Post(path, body.dump(), "application/json")
             : method == "DELETE" ? cli.Delete(path)
                                  : cli.Get(path);
    if (!r) return Json();
    Json j = Json::parse(r->body, nullptr, false);
    return j.is_discarded() ? Json() : j;
  }
  // Submits and waits until the task is terminal; the final task object.
  static Json runTask(const Json& task) {
    Json sub = call("POST", "/v1/tasks", task);
    EXPECT_TRUE(sub.contains("id")) << sub.dump();
    if (!sub.contains("id")) return sub;
    return call("GET", "/v1/tasks/" + sub["id"].get<std::string>() + "?wait=30");
  }
  static bool containerExists(const std::string& name) {
    std::string cmd =
        "CONTAINERS_CONF=" + dir_ + "/containers.conf podman container exists " + name;
    return std::system(cmd.c_str()) == 0;
  }

  static constexpr const char* kImage = "localhost/drover-iso-node-test:1";
  static inline std::string dir_;
  static inline int port_ = 0;
  static inline local::Process* node_ = nullptr;
  static inline bool node_up_ = false;
  static inline bool image_ok_ = false;
};

TEST_F(IsolationNodeTest, AMemoryHogFailsWithItsLimitAndTheNodeRunsTheNextTask) {
  Json hog = runTask({{"type", "exec"},
                      {"max_attempts", 1},
                      {"payload",
                       {{"argv", {"sh", "-c", "x=a; while :; do x=$x$x; done"}},
                        {"resources", {{"memory_mb", 32}}}}}});
  EXPECT_EQ(hog["state"], "failed") << hog.dump();
  EXPECT_EQ(hog["error"], "killed: memory limit 32 MiB") << hog.dump();
  Json next = runTask({{"type", "exec"}, {"payload", {{"argv", {"sh", "-c", "id -u"}}}}});
  EXPECT_EQ(next["state"], "succeeded") << next.dump();
  EXPECT_EQ(next["result"]["stdout"], ::geteuid() == 0 ? "65534\n" : next["result"]["stdout"]);
  EXPECT_TRUE(node_->alive());
}

TEST_F(IsolationNodeTest, AForkBombTimesOutAtItsProcessLimitAndTheNodeRunsTheNextTask) {
  Json bomb = runTask({{"type", "exec"},
                       {"max_attempts", 1},
                       {"timeout_s", 2},
                       {"payload",
                        {{"argv", {"bash", "-c", "b() { b | b & }; while :; do b; done"}},
                         {"resources", {{"pids", 32}}}}}});
  EXPECT_EQ(bomb["state"], "failed") << bomb.dump();
  // The runner words a timeout itself; the bomb's own output shows the kernel refusing forks.
  EXPECT_EQ(bomb["error"], "timed out after 2 s") << bomb.dump();
  EXPECT_NE(bomb["result"]["stderr"].get<std::string>().find("fork: retry: Resource temporarily "
                                                             "unavailable"),
            std::string::npos)
      << bomb.dump();
  Json next = runTask({{"type", "echo"}, {"payload", {{"x", 1}}}});
  EXPECT_EQ(next["state"], "succeeded") << next.dump();
  EXPECT_TRUE(node_->alive());
}

TEST_F(IsolationNodeTest, CancellingAContainerTaskRemovesItsContainer) {
  ASSERT_TRUE(image_ok_);
  Json sub = call("POST", "/v1/tasks",
                  {{"type", "container"},
                   {"payload", {{"image", kImage}, {"argv", {"/bin/sh", "-c", "sleep 60"}}}}});
  ASSERT_TRUE(sub.contains("id")) << sub.dump();
  std::string id = sub["id"];
  std::string name = "drover-" + id + "-1";
  ASSERT_TRUE(base::eventually([&] { return containerExists(name); }, 30s, 50ms));
  call("DELETE", "/v1/tasks/" + id);
  Json done = call("GET", "/v1/tasks/" + id + "?wait=30");
  EXPECT_EQ(done["state"], "cancelled") << done.dump();
  EXPECT_TRUE(base::eventually([&] { return !containerExists(name); }, 30s, 50ms));
}

TEST_F(IsolationNodeTest, StoppingTheNodeRemovesTheContainersItRuns) {
  ASSERT_TRUE(image_ok_);
  int port = local::freePort();
  auto node = startNode("iso2", port);
  ASSERT_TRUE(base::eventually(
      [&] { return node->readStderr().find("worker iso2") != std::string::npos; }, 30s))
      << node->readStderr();
  Json sub = call("POST", "/v1/tasks",
                  {{"type", "container"},
                   {"payload", {{"image", kImage}, {"argv", {"/bin/sh", "-c", "sleep 60"}}}}},
                  port);
  ASSERT_TRUE(sub.contains("id")) << sub.dump();
  std::string name = "drover-" + sub["id"].get<std::string>() + "-1";
  ASSERT_TRUE(base::eventually([&] { return containerExists(name); }, 30s, 50ms));
  ASSERT_TRUE(node->terminate());  // SIGTERM: a graceful stop
  auto status = node->wait(30s);
  ASSERT_TRUE(status.has_value()) << "the node did not stop";
  EXPECT_EQ(status->code, 0) << node->readStderr();
  EXPECT_FALSE(containerExists(name));  // removed before the node exited
}

}  // namespace
}  // namespace drover
