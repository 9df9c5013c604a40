#include "worker/container.h"

#include <gtest/gtest.h>

#include <algorithm>

namespace drover::worker {
namespace {

bool has(const std::vector<std::string>& v, const std::string& s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}

TEST(ContainerArgv, LimitsNetworkEnvAndNameFromThePayloadElseTheDefaults) {
  ContainerConfig config;
  config.engine = {"docker"};
  config.defaults = {256, 0, 100};
  tasks::ContainerRequest req;
  req.image = "img:1";
  req.argv = {"/bin/sh", "-c", "echo --network=host"};
  req.env = {{"A", "1"}, {"DROVER_TASK_ID", "spoofed"}};
  req.resources.memory_mb = 64;
  req.resources.cpus = 1.5;
  auto a = containerRunArgv(config, req, containerName("t", 2), "t", 2, "w");
  ASSERT_GE(a.size(), 4u);
  EXPECT_EQ(a[0], "docker");
  EXPECT_EQ(a[1], "run");
  EXPECT_EQ(containerName("t", 2), "drover-t-2");
  EXPECT_TRUE(has(a, "drover-t-2"));
  EXPECT_TRUE(has(a, "--network=none"));
  EXPECT_TRUE(has(a, "--memory=64m"));
  EXPECT_TRUE(has(a, "--memory-swap=64m"));
  EXPECT_TRUE(has(a, "--cpus=1.5"));
  EXPECT_TRUE(has(a, "--pids-limit=100"));  // from the defaults
  EXPECT_TRUE(has(a, "A=1"));
  EXPECT_TRUE(has(a, "DROVER_TASK_ID=t"));
  EXPECT_FALSE(has(a, "DROVER_TASK_ID=spoofed"));
  EXPECT_TRUE(has(a, "DROVER_ATTEMPT=2"));
  // The image, then the command: nothing of the payload's argv is read as an engine option.
  auto image = std::find(a.begin(), a.end(), "img:1");
  ASSERT_NE(image, a.end());
  EXPECT_EQ(std::vector<std::string>(image + 1, a.end()), req.argv);
  EXPECT_EQ(std::count(a.begin(), a.end(), "--network=none"), 1);

  req.network = true;
  req.resources = {};
  config.defaults = {};
  auto b = containerRunArgv(config, req, "n", "t", 1, "w");
  EXPECT_FALSE(has(b, "--network=none"));
  for (const auto& arg : b) EXPECT_EQ(arg.rfind("--memory", 0), std::string::npos) << arg;
}

}  // namespace
}  // namespace drover::worker
