// Completion webhooks end to end (docs/API.md "Completion webhooks"): real `drover node`
// processes on a real ZooKeeper, and receivers in this test on free loopback ports. Every POST the
// receiver gets is recorded with its headers and arrival time; the checks read those records,
// the node's /metrics and the tree in ZooKeeper.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <fstream>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

#include "base/eventually.h"
#include "base/ids.h"
#include "coord/zk/zk_coordination.h"
#include "local/ports.h"
#include "local/process.h"
#include "local/zk_cluster.h"
#include "tasks/layout.h"
#include "tasks/task.h"

namespace drover {
namespace {

using namespace std::chrono_literals;
using Json = nlohmann::json;
using local::Process;
using local::ZkCluster;

constexpr const char* kSecret = "webhook-test-secret";

int64_t wallMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// HMAC-SHA256 computed here with OpenSSL directly, independent of the node's code.
std::string expectedSignature(const std::string& body) {
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), kSecret, static_cast<int>(strlen(kSecret)),
       reinterpret_cast<const unsigned char*>(body.data()), body.size(), mac, &len);
  std::string hex = "sha256=";
  static const char* digits = "0123456789abcdef";
  for (unsigned int i = 0; i < len; ++i) {
    hex.push_back(digits[mac[i] >> 4]);
    hex.push_back(digits[mac[i] & 15]);
  }
  return hex;
}

struct Reply {
  int status = 0;
  Json body;
  std::string raw;
};

Reply request(const std::string& url, const std::string& method, const std::string& path,
              const std::string& body = "") {
  httplib::Client cli(url);
  cli.set_connection_timeout(5);
  cli.set_read_timeout(30);
  httplib::Result r = method == "GET"    ? cli.Get(path)
                      : method == "POST" ? cli.Post(path, body, "application/json")
                                         : cli.Delete(path);
  Reply out;
  if (!r) return out;
  out.status = r->status;
  out.raw = r->body;
  out.body = Json::parse(r->body, nullptr, false);
  if (out.body.is_discarded()) out.body = Json();
  return out;
}

// One POST the receiver got.
struct Hit {
  std::string path;  // with its query
  std::string body;
  std::map<std::string, std::string> headers;
  int64_t at_ms = 0;
  int answered = 0;
};

// An HTTP receiver on a free loopback port. Answers by path: /ok 200; /flaky 500 to the first
// two POSTs of each task, then 200; /hold 503 until release(), then 200.
class Receiver {
 public:
  Receiver() {
    server_.Post(R"(/(\w+))", [this](const httplib::Request& req, httplib::Response& res) {
      Hit h;
      h.path = req.target;
      h.body = req.body;
      for (const auto& [k, v] : req.headers) h.headers[k] = v;
      h.at_ms = wallMs();
      std::string kind = req.matches[1];
      std::lock_guard lock(mu_);
      std::string task = h.headers["Drover-Delivery"];
      int seen = 0;
      for (const auto& o : hits_) seen += o.headers.at("Drover-Delivery") == task ? 1 : 0;
      int status = 200;
      if (kind == "flaky" && seen < 2) status = 500;
      if (kind == "hold" && !released_) status = 503;
      res.status = status;
      h.answered = status;
      hits_.push_back(std::move(h));
    });
    port_ = server_.bind_to_any_port("127.0.0.1");
    thread_ = std::thread([this] { server_.listen_after_bind(); });
    EXPECT_TRUE(base::eventually([&] { return server_.is_running(); }, 10s));
  }
  ~Receiver() {
    server_.stop();
    thread_.join();
  }
  std::string url(const std::string& path) const {
    return "http://127.0.0.1:" + std::to_string(port_) + path;
  }
  std::vector<Hit> hitsFor(const std::string& task_id) {
    std::lock_guard lock(mu_);
    std::vector<Hit> out;
    for (const auto& h : hits_) {
      auto d = h.headers.find("Drover-Delivery");
      if (d != h.headers.end() && d->second.rfind(task_id + "/", 0) == 0) out.push_back(h);
    }
    return out;
  }
  void release() {
    std::lock_guard lock(mu_);
    released_ = true;
  }

 private:
  httplib::Server server_;
  int port_ = 0;
  std::thread thread_;
  std::mutex mu_;
  std::vector<Hit> hits_;
  bool released_ = false;
};

// A port that accepts connections into its backlog and never answers.
class Silent {
 public:
  Silent() {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    EXPECT_EQ(::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    EXPECT_EQ(::listen(fd_, 64), 0);
    socklen_t len = sizeof(addr);
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
  }
  ~Silent() { ::close(fd_); }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_) + "/never"; }

 private:
  int fd_ = -1;
  int port_ = 0;
};

struct Node {
  std::string id;
  int port = 0;
  std::unique_ptr<Process> process;
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port); }
};

// A metric's value from a node's /metrics (the first series whose line starts with `series `).
double metric(const Node& n, const std::string& series) {
  auto r = request(n.url(), "GET", "/metrics");
  std::istringstream in(r.raw);
  for (std::string line; std::getline(in, line);) {
    if (line.rfind(series + " ", 0) == 0) return std::stod(line.substr(series.size() + 1));
  }
  return -1;
}

class WebhookTest : public ::testing::Test {
 protected:
  void SetUp() override {
    zk_ = ZkCluster::standalone();
    root_ = "/wh-" + base::randomHex(6);
    layout_ = tasks::Layout(root_);
    auto c = coord::ZkCoordination::connect({zk_->connectString(), 10000ms});
    ASSERT_TRUE(c);
    zkc_ = std::move(*c);
    ASSERT_TRUE(zkc_->waitConnected(30s));
  }

  Node& start(const std::string& id, std::map<std::string, std::string> env = {}) {
    auto n = std::make_unique<Node>();
    n->id = id;
    n->port = local::freePort();
    env.emplace("DROVER_WEBHOOK_SECRET", kSecret);
    env.emplace("DROVER_WEBHOOK_BACKOFF_BASE_MS", "300");
    env.emplace("DROVER_WEBHOOK_BACKOFF_CAP_MS", "1000");
    env.emplace("DROVER_WEBHOOK_TIMEOUT_MS", "1000");
    n->process = std::make_unique<Process>(local::ProcessOptions{
        .argv = {DROVER_BINARY, "node", "--zk", zk_->connectString(), "--zk-root", root_, "--http",
                 "127.0.0.1:" + std::to_string(n->port), "--id", id, "--slots", "4",
                 "--session-timeout-ms", "2000"},
        .env = env});
    bool up = base::eventually(
        [&] { return n->process->readStderr().find("worker " + id) != std::string::npos; }, 30s);
    EXPECT_TRUE(up) << n->process->readStderr();
    nodes_.push_back(std::move(n));
    return *nodes_.back();
  }

  std::string leaderId() {
    (void)zkc_->sync(layout_.root()).get();
    auto node = zkc_->get(layout_.leader(), nullptr).get();
    if (!node) return "";
    Json j = Json::parse(node->data, nullptr, false);
    return j.is_object() && j.contains("id") && j["id"].is_string() ? j["id"].get<std::string>()
                                                                    : "";
  }
  Node* leader() {
    std::string id;
    if (!base::eventually([&] { return !(id = leaderId()).empty(); }, 30s)) return nullptr;
    for (auto& n : nodes_) {
      if (n->id == id) return n.get();
    }
    return nullptr;
  }

  std::string submit(Node& via, const Json& task) {
    auto r = request(via.url(), "POST", "/v1/tasks", task.dump());
    EXPECT_EQ(r.status, 202) << r.raw;
    return r.body.is_object() ? r.body.value("id", "") : "";
  }
  Json get(Node& via, const std::string& id) {
    return request(via.url(), "GET", "/v1/tasks/" + id).body;
  }
  bool terminal(Node& via, const std::string& id) {
    auto j = get(via, id);
    if (!j.is_object() || !j["state"].is_string()) return false;
    auto s = tasks::parseState(j["state"].get<std::string>());
    return s && tasks::isTerminal(*s);
  }

  std::unique_ptr<ZkCluster> zk_;
  std::string root_;
  tasks::Layout layout_;
  std::unique_ptr<coord::ZkCoordination> zkc_;
  std::vector<std::unique_ptr<Node>> nodes_;
};

// (a) A succeeded, a failed and a cancelled task each get one POST whose body is the terminal
// task as GET /v1/tasks/{id} returns it, signed with the configured secret.
TEST_F(WebhookTest, TerminalTasksArePostedWithTheirBodySigned) {
  Receiver rx;
  Node& n = start("a1");
  std::string ok =
      submit(n, {{"type", "echo"}, {"payload", {{"x", 1}}}, {"callback_url", rx.url("/ok")}});
  std::string bad = submit(n, {{"type", "fail"},
                               {"payload", {{"message", "boom"}}},
                               {"max_attempts", 1},
                               {"callback_url", rx.url("/ok")}});
  std::string gone = submit(
      n, {{"type", "sleep"}, {"payload", {{"ms", 600000}}}, {"callback_url", rx.url("/ok")}});
  ASSERT_TRUE(base::eventually([&] { return get(n, gone)["state"] == "running"; }, 20s));
  ASSERT_EQ(request(n.url(), "DELETE", "/v1/tasks/" + gone).status, 202);

  std::map<std::string, std::string> want = {
      {ok, "succeeded"}, {bad, "failed"}, {gone, "cancelled"}};
  for (const auto& [id, state] : want) {
    ASSERT_TRUE(base::eventually([&] { return !rx.hitsFor(id).empty(); }, 20s))
        << id << " (" << state << ") never posted\n"
        << n.process->readStderr();
    auto hits = rx.hitsFor(id);
    ASSERT_EQ(hits.size(), 1u) << id;
    const Hit& h = hits[0];
    EXPECT_EQ(h.headers.at("Content-Type"), "application/json");
    EXPECT_EQ(h.headers.at("Drover-Event"), state);
    EXPECT_EQ(h.headers.at("Drover-Signature"), expectedSignature(h.body)) << id;
    EXPECT_EQ(h.headers.at("Drover-Delivery-Attempt"), "1");
    Json body = Json::parse(h.body, nullptr, false);
    ASSERT_TRUE(body.is_object()) << h.body;
    EXPECT_EQ(body["state"], state);
    EXPECT_EQ(body, get(n, id)) << "the POST is the task as GET returns it";
    EXPECT_EQ(h.headers.at("Drover-Delivery"),
              id + "/" + std::to_string(body["attempts"].get<int>()));
  }
  // A tampered body does not verify.
  auto h = rx.hitsFor(ok)[0];
  EXPECT_NE(expectedSignature(h.body + " "), h.headers.at("Drover-Signature"));

  // Latency from the terminal status to the POST's arrival on a quiet one-node cluster.
  std::vector<std::string> ids;
  for (int i = 0; i < 20; ++i) {
    ids.push_back(submit(n, {{"type", "noop"}, {"callback_url", rx.url("/ok")}}));
    ASSERT_TRUE(base::eventually([&] { return !rx.hitsFor(ids.back()).empty(); }, 20s));
  }
  std::vector<int64_t> lat;
  for (const auto& id : ids) {
    auto hit = rx.hitsFor(id)[0];
    lat.push_back(hit.at_ms - Json::parse(hit.body)["finished_at"].get<int64_t>());
  }
  std::sort(lat.begin(), lat.end());
  std::printf("webhook latency from finished_at to POST (ms, 20 tasks): p50 %lld, max %lld\n",
              static_cast<long long>(lat[lat.size() / 2]), static_cast<long long>(lat.back()));
  EXPECT_EQ(metric(n, R"(drover_webhook_deliveries_total{outcome="delivered"})"), 23);
  EXPECT_TRUE(base::eventually([&] { return metric(n, "drover_webhook_in_flight") == 0; }, 10s));
}

// (b) 500, 500, 200: exactly three tries, spaced by the backoff, with one delivery id.
TEST_F(WebhookTest, ServerErrorsAreRetriedWithBackoffUntilDelivered) {
  Receiver rx;
  Node& n = start("b1");
  std::string id = submit(n, {{"type", "noop"}, {"callback_url", rx.url("/flaky")}});
  ASSERT_TRUE(base::eventually([&] { return rx.hitsFor(id).size() >= 3; }, 20s))
      << n.process->readStderr();
  // Nothing more is pending once in flight is back to 0: no fourth try can come.
  ASSERT_TRUE(base::eventually([&] { return metric(n, "drover_webhook_in_flight") == 0; }, 10s));
  auto hits = rx.hitsFor(id);
  ASSERT_EQ(hits.size(), 3u);
  EXPECT_EQ(hits[0].answered, 500);
  EXPECT_EQ(hits[1].answered, 500);
  EXPECT_EQ(hits[2].answered, 200);
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(hits[i].headers.at("Drover-Delivery-Attempt"), std::to_string(i + 1));
    EXPECT_EQ(hits[i].headers.at("Drover-Delivery"), hits[0].headers.at("Drover-Delivery"));
    EXPECT_EQ(hits[i].body, hits[0].body);
  }
  // Backoff with base 300 ms, half jitter: the first wait is 150-300 ms, the second 300-600 ms.
  int64_t gap1 = hits[1].at_ms - hits[0].at_ms;
  int64_t gap2 = hits[2].at_ms - hits[1].at_ms;
  std::printf("retry gaps: %lld ms, %lld ms\n", static_cast<long long>(gap1),
              static_cast<long long>(gap2));
  EXPECT_GE(gap1, 140);
  EXPECT_GE(gap2, 290);
  EXPECT_LT(gap2, 3000);
  EXPECT_EQ(metric(n, R"(drover_webhook_deliveries_total{outcome="retried"})"), 2);
  EXPECT_EQ(metric(n, R"(drover_webhook_deliveries_total{outcome="delivered"})"), 1);
}

// (c) The leader is killed -9 while a delivery is pending (the receiver answers 503); the new
// leader resumes from the cursor in ZooKeeper and delivers it.
TEST_F(WebhookTest, ANewLeaderDeliversWhatTheKilledOneHadPending) {
  Receiver rx;
  start("c1");
  start("c2");
  start("c3");
  Node* old = leader();
  ASSERT_NE(old, nullptr);
  Node* other = nullptr;
  for (auto& n : nodes_) {
    if (n.get() != old) other = n.get();
  }
  std::string id = submit(*other, {{"type", "noop"}, {"callback_url", rx.url("/hold")}});
  ASSERT_TRUE(base::eventually([&] { return !rx.hitsFor(id).empty(); }, 20s))
      << old->process->readStderr();
  EXPECT_EQ(rx.hitsFor(id)[0].answered, 503);
  ASSERT_TRUE(old->process->kill9());
  ASSERT_TRUE(old->process->wait(10s)) << "the leader did not die";
  size_t before = rx.hitsFor(id).size();
  int64_t killed_at = wallMs();
  rx.release();
  std::string old_id = old->id;
  ASSERT_TRUE(base::eventually(
      [&] {
        std::string now = leaderId();
        return !now.empty() && now != old_id;
      },
      30s));
  ASSERT_TRUE(base::eventually(
      [&] {
        auto hits = rx.hitsFor(id);
        return hits.size() > before && hits.back().answered == 200;
      },
      30s))
      << "the new leader did not deliver";
  auto hits = rx.hitsFor(id);
  std::printf("delivered by the new leader %lld ms after the old one was killed (%zu POSTs)\n",
              static_cast<long long>(hits.back().at_ms - killed_at), hits.size());
  EXPECT_EQ(hits.back().headers.at("Drover-Delivery"), hits.front().headers.at("Drover-Delivery"));
  EXPECT_EQ(hits.back().headers.at("Drover-Signature"), expectedSignature(hits.back().body));
  // The cursor is in ZooKeeper and moves past the delivered event.
  ASSERT_TRUE(base::eventually(
      [&] {
        auto c = zkc_->get(root_ + "/webhooks", nullptr).get();
        return c && !c->data.empty();
      },
      10s));
}

// (d) A bad callback_url is a 400 naming the field, and writes nothing (single and batch).
TEST_F(WebhookTest, ABadCallbackUrlIsA400AndWritesNothing) {
  Node& n = start("d1");
  for (const char* url :
       {"ftp://127.0.0.1/x", "http://", "/relative", "http://u:p@h/", "http://h:99999/"}) {
    std::string id = "bad-" + base::randomHex(4);
    auto r = request(n.url(), "POST", "/v1/tasks",
                     Json{{"id", id}, {"type", "noop"}, {"callback_url", url}}.dump());
    EXPECT_EQ(r.status, 400) << url << ": " << r.raw;
    EXPECT_NE(r.raw.find("callback_url"), std::string::npos) << r.raw;
    EXPECT_EQ(request(n.url(), "GET", "/v1/tasks/" + id).status, 404);
    EXPECT_FALSE(zkc_->get(layout_.idEntry(id), nullptr).get()) << "the id was indexed";
  }
  std::string long_url = "http://h/" + std::string(2100, 'a');
  auto r =
      request(n.url(), "POST", "/v1/tasks/batch",
              Json{{"tasks",
                    {{{"id", "ok-1"}, {"type", "noop"}, {"callback_url", "http://127.0.0.1:9/ok"}},
                     {{"id", "long-1"}, {"type", "noop"}, {"callback_url", long_url}}}}}
                  .dump());
  EXPECT_EQ(r.status, 400) << r.raw;
  EXPECT_NE(r.raw.find("callback_url"), std::string::npos) << r.raw;
  EXPECT_EQ(request(n.url(), "GET", "/v1/tasks/ok-1").status, 404);
  EXPECT_EQ(request(n.url(), "GET", "/v1/tasks/long-1").status, 404);
  // The same id with another callback_url is another spec: 409.
  auto first =
      request(n.url(), "POST", "/v1/tasks",
              Json{{"id", "same"}, {"type", "noop"}, {"callback_url", "http://h/1"}}.dump());
  EXPECT_EQ(first.status, 202) << first.raw;
  auto again =
      request(n.url(), "POST", "/v1/tasks",
              Json{{"id", "same"}, {"type", "noop"}, {"callback_url", "http://h/1"}}.dump());
  EXPECT_EQ(again.status, 200) << again.raw;
  auto other =
      request(n.url(), "POST", "/v1/tasks",
              Json{{"id", "same"}, {"type", "noop"}, {"callback_url", "http://h/2"}}.dump());
  EXPECT_EQ(other.status, 409) << other.raw;
}

// (e) A receiver that never answers fills the deliveries in flight; tasks keep being assigned
// and finishing at their usual pace.
TEST_F(WebhookTest, AReceiverThatNeverAnswersDoesNotSlowAssignment) {
  Silent silent;
  Node& n =
      start("e1", {{"DROVER_WEBHOOK_MAX_IN_FLIGHT", "2"}, {"DROVER_WEBHOOK_TIMEOUT_MS", "30000"}});
  for (int i = 0; i < 6; ++i) submit(n, {{"type", "noop"}, {"callback_url", silent.url()}});
  // The fault fired: both delivery slots are held by the silent receiver.
  ASSERT_TRUE(base::eventually([&] { return metric(n, "drover_webhook_in_flight") == 2; }, 20s))
      << n.process->readStderr();
  auto t0 = std::chrono::steady_clock::now();
  std::vector<std::string> ids;
  for (int i = 0; i < 40; ++i) ids.push_back(submit(n, {{"type", "noop"}}));
  ASSERT_TRUE(base::eventually(
      [&] {
        return std::all_of(ids.begin(), ids.end(), [&](const auto& id) { return terminal(n, id); });
      },
      20s, 20ms));
  auto ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0)
          .count();
  std::printf("40 tasks without callbacks finished in %lld ms with deliveries stuck\n",
              static_cast<long long>(ms));
  EXPECT_LT(ms, 10000);
  // Still stuck: the deliveries did not finish, and the lag shows events waiting.
  EXPECT_EQ(metric(n, "drover_webhook_in_flight"), 2);
  EXPECT_GT(metric(n, "drover_webhook_lag_events"), 0);
}

}  // namespace
}  // namespace drover
