#pragma once

// Real `drover node` processes for the integration tests that drive one cluster over HTTP
// (schedules, retry, delays): each node is a worker and leader candidate on the shared
// standalone ZooKeeper under the test's own root. Every node's process group is SIGKILLed when
// the test ends (Process's destructor), also when it fails.

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <httplib.h>

#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "base/eventually.h"
#include "local/ports.h"
#include "local/process.h"
#include "local/zk_cluster.h"

namespace drover::testing {

class NodeFleetTest : public ::testing::Test {
 protected:
  using Json = nlohmann::json;

  // How the fixture's nodes start: set in the fixture's SetUp, beside root_.
  struct NodeSpec {
    int slots = 8;
    std::vector<std::string> args{};           // more flags, e.g. {"--protocol", "2"}
    std::map<std::string, std::string> env{};  // added to the node's environment
  };

  void TearDown() override { nodes_.clear(); }

  // Starts node `id`; returns once its worker registered.
  void start(const std::string& id) {
    const int port = local::freePort();
    std::vector<std::string> argv = {DROVER_BINARY,
                                     "node",
                                     "--zk",
                                     local::ZkCluster::sharedStandalone().connectString(),
                                     "--zk-root",
                                     root_,
                                     "--http",
                                     fmt::format("127.0.0.1:{}", port),
                                     "--id",
                                     id,
                                     "--slots",
                                     std::to_string(spec_.slots),
                                     "--session-timeout-ms",
                                     "2000"};
    argv.insert(argv.end(), spec_.args.begin(), spec_.args.end());
    auto p =
        std::make_unique<local::Process>(local::ProcessOptions{.argv = argv, .env = spec_.env});
    using namespace std::chrono_literals;
    ASSERT_TRUE(base::eventually(
        [&] { return p->readStderr().find("worker " + id + " registered") != std::string::npos; },
        30s))
        << p->readStderr();
    nodes_[id] = std::move(p);
    ports_[id] = port;
  }

  // One request (GET, POST or DELETE) to the first live node that answers: the answer's JSON
  // object with "http_status" added; http_status 0 when no node answered.
  Json call(const std::string& method, const std::string& path, const Json& body = nullptr) {
    for (const auto& [id, port] : ports_) {
      if (!nodes_.count(id)) continue;
      httplib::Client cli("127.0.0.1", port);
      cli.set_read_timeout(40);  // above the long polls' ?wait=
      const std::string data = body.is_null() ? "" : body.dump();
      auto r = method == "POST"     ? cli.Post(path, data, "application/json")
               : method == "DELETE" ? cli.Delete(path)
                                    : cli.Get(path);
      if (!r) continue;
      Json j = Json::parse(r->body, nullptr, false);
      if (j.is_discarded() || !j.is_object()) j = Json::object();
      j["http_status"] = r->status;
      return j;
    }
    return Json{{"http_status", 0}};
  }

  // The live node that leads now (nullopt while none does).
  std::optional<std::string> leader() {
    Json c = call("GET", "/v1/cluster");
    if (!c.contains("leader") || !c["leader"].is_string()) return std::nullopt;
    const std::string l = c["leader"];
    for (const auto& [id, p] : nodes_) {
      if (l.rfind(id, 0) == 0) return id;
    }
    return std::nullopt;
  }

  std::string root_;
  NodeSpec spec_;
  std::map<std::string, std::unique_ptr<local::Process>> nodes_;
  std::map<std::string, int> ports_;
};

}  // namespace drover::testing
