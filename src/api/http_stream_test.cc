// The HTTP layer's streams and edges: the SSE event feed, stop ending streams and long polls,
// the embedding hooks, and the cap on open streams.
#include <future>
#include <thread>

#include "api/http_test_helpers.h"

namespace drover::api::testing {
namespace {

class StreamReader {
 public:
  StreamReader(int port, std::string path, httplib::Headers headers = {}) {
    thread_ = std::thread([this, port, path, headers] {
      httplib::Client c("127.0.0.1", port);
      c.set_read_timeout(std::chrono::seconds(20));
      auto r = c.Get(
          path.c_str(), headers,
          [this](const httplib::Response& res) {
            std::lock_guard lock(mu_);
            status_ = res.status;
            content_type_ = res.get_header_value("Content-Type");
            return true;
          },
          [this](const char* data, size_t n) {
            std::lock_guard lock(mu_);
            text_.append(data, n);
            return !stop_;
          });
      (void)r;
    });
  }
  ~StreamReader() {
    {
      std::lock_guard lock(mu_);
      stop_ = true;
    }
    thread_.join();
  }
  std::string text() {
    std::lock_guard lock(mu_);
    return text_;
  }
  int status() {
    std::lock_guard lock(mu_);
    return status_;
  }
  std::string contentType() {
    std::lock_guard lock(mu_);
    return content_type_;
  }

 private:
  std::mutex mu_;
  std::string text_;
  int status_ = 0;
  std::string content_type_;
  bool stop_ = false;
  std::thread thread_;
};

TEST_F(HttpTest, EventStreamDeliversAppendedEvents) {
  StreamReader reader(port_, "/v1/events");
  // The stream's greeting is sent once subscribe() has returned: from then on every event
  // committed is delivered. (subscribers() counts it earlier, while its first listing is still
  // on the way, and an event committed then is history, not news.)
  ASSERT_TRUE(base::eventually([&] { return reader.text().find(": drover events") == 0; }));
  // Another node's submit.
  ASSERT_TRUE(peer_->submit(spec("ev1")));
  ASSERT_TRUE(base::eventually([&] {
    return reader.text().find(R"("id":"ev1")") != std::string::npos;
  })) << reader.text();
  EXPECT_EQ(reader.status(), 200);
  EXPECT_EQ(reader.contentType(), "text/event-stream");
  auto text = reader.text();
  auto pos = text.find("event: task\ndata: {");
  ASSERT_NE(pos, std::string::npos) << text;
  EXPECT_NE(text.find(R"("state":"pending")"), std::string::npos);
  EXPECT_NE(text.find("\n\n", pos), std::string::npos);
  // A heartbeat comment follows while idle (200 ms in this fixture).
  ASSERT_TRUE(
      base::eventually([&] { return reader.text().find(": heartbeat") != std::string::npos; }));
  // A submit through the API shows up too.
  ASSERT_EQ(postJson("/v1/tasks", R"({"id":"ev2","type":"noop"})")->status, 202);
  ASSERT_TRUE(
      base::eventually([&] { return reader.text().find(R"("id":"ev2")") != std::string::npos; }));
}

// Every event carries an `id:`; a client that reconnects with it as Last-Event-ID gets what it
// missed (from the log) and then the live events, without repeats.
TEST_F(HttpTest, EventStreamResumesAfterLastEventId) {
  auto append = [&](const char* id) { ASSERT_TRUE(peer_->submit(spec(id))); };
  std::string first_id;
  {
    StreamReader reader(port_, "/v1/events");
    ASSERT_TRUE(base::eventually([&] { return reader.text().find(": drover events") == 0; }));
    append("r1");
    append("r2");
    ASSERT_TRUE(
        base::eventually([&] { return reader.text().find(R"("id":"r2")") != std::string::npos; }));
    auto text = reader.text();
    auto at = text.find("id: ");
    ASSERT_NE(at, std::string::npos) << text;
    first_id = text.substr(at + 4, text.find('\n', at) - at - 4);
    EXPECT_LT(at, text.find(R"("id":"r1")"));  // r1's frame starts with its id
  }
  append("r3");  // while no stream was open
  StreamReader resumed(port_, "/v1/events", {{"Last-Event-ID", first_id}});
  ASSERT_TRUE(base::eventually([&] {
    return resumed.text().find(R"("id":"r3")") != std::string::npos;
  })) << resumed.text();
  append("r4");
  ASSERT_TRUE(
      base::eventually([&] { return resumed.text().find(R"("id":"r4")") != std::string::npos; }));
  auto text = resumed.text();
  EXPECT_EQ(text.find(R"("id":"r1")"), std::string::npos) << text;  // not repeated
  EXPECT_LT(text.find(R"("id":"r2")"), text.find(R"("id":"r3")"));
  EXPECT_LT(text.find(R"("id":"r3")"), text.find(R"("id":"r4")"));
  EXPECT_EQ(text.find("event: gap"), std::string::npos);

  // The log trims r1's record (the oldest): a client resuming after r1 is told it may have
  // missed events, then gets what the log still holds.
  auto records = other_->children(layout_.events(), nullptr).get();
  ASSERT_TRUE(records && !records->empty());
  std::sort(records->begin(), records->end());
  ASSERT_TRUE(other_->remove(coord::join(layout_.events(), records->front()), -1).get());
  StreamReader gap(port_, "/v1/events", {{"Last-Event-ID", first_id}});
  ASSERT_TRUE(base::eventually([&] { return gap.text().find("event: gap") != std::string::npos; }))
      << gap.text();
  ASSERT_TRUE(
      base::eventually([&] { return gap.text().find(R"("id":"r4")") != std::string::npos; }));
  EXPECT_NE(gap.text().find(R"("id":"r2")"), std::string::npos);

  httplib::Client c("127.0.0.1", port_);
  auto bad = c.Get("/v1/events", {{"Last-Event-ID", "yesterday"}});
  ASSERT_TRUE(bad);
  EXPECT_EQ(bad->status, 400);
  EXPECT_NE(bad->body.find("Last-Event-ID"), std::string::npos);
}

TEST_F(HttpTest, EventStreamFiltersById) {
  StreamReader reader(port_, "/v1/events?id=mine");
  ASSERT_TRUE(base::eventually([&] { return reader.text().find(": drover events") == 0; }));
  ASSERT_TRUE(peer_->submit(spec("other")));
  ASSERT_TRUE(peer_->submit(spec("mine")));
  ASSERT_TRUE(
      base::eventually([&] { return reader.text().find(R"("id":"mine")") != std::string::npos; }));
  EXPECT_EQ(reader.text().find(R"("id":"other")"), std::string::npos);
}

TEST_F(HttpTest, StopEndsOpenEventStreams) {
  auto reader = std::make_unique<StreamReader>(port_, "/v1/events");
  ASSERT_TRUE(base::eventually([&] { return feed_->subscribers() == 1; }));
  auto start = std::chrono::steady_clock::now();
  http_->stop();
  EXPECT_LT(std::chrono::steady_clock::now() - start, 5s);
  reader.reset();
}

TEST_F(HttpTest, StopEndsLongPolls) {
  ASSERT_EQ(postJson("/v1/tasks", R"({"id":"lp","type":"noop"})")->status, 202);
  size_t gets = coord_->callCount(OpKind::kGet);  // before the waiter can read
  auto waiter =
      std::async(std::launch::async, [&] { return client().Get("/v1/tasks/lp?wait=60"); });
  ASSERT_TRUE(base::eventually([&] { return coord_->callCount(OpKind::kGet) > gets; }));
  auto start = std::chrono::steady_clock::now();
  http_->stop();
  EXPECT_LT(std::chrono::steady_clock::now() - start, 5s);
  waiter.get();
}

class HttpHooksTest : public ApiFixture {
 protected:
  void configure(HttpOptions& o) override {
    o.metrics = [] { return std::string("custom_metric 3\n"); };
  }
  void addRoutes(HttpServer& s) override {
    s.addRoute("GET", "/", [](const httplib::Request&, httplib::Response& res) {
      res.set_content("<html>dashboard</html>", "text/html");
    });
    // Any route must be in the route table (api/auth.cc): the dashboard's asset route stands in.
    s.addRoute("GET", R"(/assets/([\s\S]*))", [](const httplib::Request&, httplib::Response&) {
      throw std::runtime_error("kaboom");
    });
  }
};

TEST_F(HttpHooksTest, ExtraRoutesMetricsAndExceptionsAtTheEdge) {
  auto root = client().Get("/");
  ASSERT_TRUE(root);
  EXPECT_EQ(root->status, 200);
  EXPECT_EQ(root->body, "<html>dashboard</html>");
  auto m = client().Get("/metrics");
  ASSERT_TRUE(m);
  EXPECT_EQ(m->body, "custom_metric 3\n");
  auto boom = client().Get("/assets/boom");
  expectProblem(boom, 500);
  EXPECT_EQ(boom->body.find("kaboom"), std::string::npos);  // internals stay in the log
  EXPECT_EQ(client().Get("/livez")->status, 200);
}

class HttpSmallPoolTest : public ApiFixture {
 protected:
  void configure(HttpOptions& o) override {
    o.threads = 4;
    o.max_event_streams = 1;
  }
};

TEST_F(HttpSmallPoolTest, EventStreamsAreCapped) {
  StreamReader reader(port_, "/v1/events");
  ASSERT_TRUE(base::eventually([&] { return feed_->subscribers() == 1; }));
  auto r = client().Get("/v1/events");
  expectProblem(r, 503);
  EXPECT_EQ(client().Get("/livez")->status, 200);
}

}  // namespace
}  // namespace drover::api::testing
