// Bearer tokens and roles on the REST API (api/auth.h, docs/SECURITY.md). The main test walks the
// route table itself: every row is called without a token, with an unknown token and with each
// role, so a route added to the table without a sample request here fails, and a route served
// without a row cannot even be registered.

#include "api/auth.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <unistd.h>

#include <map>
#include <sstream>

#include "api/dashboard.h"
#include "api/test_fixture.h"

namespace drover::api::testing {
namespace {

struct RawAnswer {
  int status = 0;
  std::string head;  // status line and headers
  std::string body;  // empty for an event stream (only its head is read)
};

// One request over a fresh loopback connection, so that even an endless event stream can be
// checked: for it only the head is read.
RawAnswer rawRequest(int port, const std::string& method, const std::string& target,
                     const std::string& authorization, const std::string& body = "") {
  RawAnswer a;
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return a;
  timeval tv{5, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    ::close(fd);
    return a;
  }
  std::string req = method + " " + target + " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n";
  if (!authorization.empty()) req += "Authorization: " + authorization + "\r\n";
  if (method == "POST" || method == "PUT") {
    req +=
        "Content-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) + "\r\n";
  }
  req += "\r\n" + body;
  ::send(fd, req.data(), req.size(), MSG_NOSIGNAL);
  std::string got;
  char buf[4096];
  bool stream = false;
  while (true) {
    ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
    if (n <= 0) break;
    got.append(buf, static_cast<size_t>(n));
    auto end = got.find("\r\n\r\n");
    if (end != std::string::npos && got.find("text/event-stream") < end) {
      stream = true;
      break;
    }
  }
  ::close(fd);
  auto end = got.find("\r\n\r\n");
  a.head = got.substr(0, end);
  if (end != std::string::npos && !stream) a.body = got.substr(end + 4);
  if (got.size() > 12) a.status = std::atoi(got.substr(9, 3).c_str());
  return a;
}

// Tokens of each role, made as an operator would (`drover token new`).
struct Tokens {
  std::string read = newToken();
  std::string submit = newToken();
  std::string admin = newToken();
  const std::string& of(Role r) const {
    return r == Role::kAdmin ? admin : r == Role::kSubmit ? submit : read;
  }
};

class AuthTest : public ApiFixture {
 protected:
  void configure(HttpOptions& ho) override {
    ho.auth = std::make_shared<Authenticator>(std::vector<TokenHash>{
        {Role::kRead, sha256Hex(tokens_.read)},
        {Role::kSubmit, sha256Hex(tokens_.submit)},
        {Role::kAdmin, sha256Hex(tokens_.admin)},
    });
    ho.stats = &stats_;
  }
  void addRoutes(HttpServer& http) override { addDashboard(http); }
  StatsRing stats_;

  RawAnswer call(const std::string& method, const std::string& target, const std::string& token,
                 const std::string& body = "") const {
    return rawRequest(port_, method, target, token.empty() ? "" : "Bearer " + token, body);
  }

  Tokens tokens_;
};

// A request per route-table row that a caller with enough rights gets a 2xx for. A row without
// one here fails the test: each new route is then checked for every role too.
// Each sample also pins the role the contract gives the route (docs/SECURITY.md), so a wrong role
// in the table fails too, not only a table the server does not enforce.
struct Sample {
  std::string target;
  std::string body;
  Role contract;
  int answer = 0;  // what a caller with the role gets, when not a 2xx
};
const std::map<std::pair<std::string, std::string>, Sample>& samples() {
  static const std::map<std::pair<std::string, std::string>, Sample> m = {
      {{"POST", "/v1/tasks"}, {"/v1/tasks", R"({"type":"noop"})", Role::kSubmit}},
      {{"POST", "/v1/tasks/batch"},
       {"/v1/tasks/batch", R"({"tasks":[{"type":"noop"}]})", Role::kSubmit}},
      {{"GET", "/v1/tasks"}, {"/v1/tasks", "", Role::kRead}},
      {{"GET", R"(/v1/tasks/([\s\S]+))"}, {"/v1/tasks/known", "", Role::kRead}},
      {{"DELETE", R"(/v1/tasks/([\s\S]+))"}, {"/v1/tasks/known", "", Role::kSubmit}},
      // Past the role check, a retry of a task still pending is refused (409).
      {{"POST", R"(/v1/tasks/([\s\S]+)/retry)"},
       {"/v1/tasks/waiting/retry", "", Role::kSubmit, 409}},
      {{"GET", "/v1/workers"}, {"/v1/workers", "", Role::kRead}},
      {{"POST", R"(/v1/workers/([^/]+)/drain)"}, {"/v1/workers/w1/drain", "", Role::kAdmin}},
      {{"DELETE", R"(/v1/workers/([^/]+)/drain)"}, {"/v1/workers/w1/drain", "", Role::kAdmin}},
      {{"GET", "/v1/queues"}, {"/v1/queues", "", Role::kRead}},
      {{"PUT", R"(/v1/queues/([^/]+))"}, {"/v1/queues/etl", R"({"max_running":2})", Role::kAdmin}},
      {{"POST", R"(/v1/queues/([^/]+)/pause)"}, {"/v1/queues/etl/pause", "", Role::kAdmin}},
      {{"POST", R"(/v1/queues/([^/]+)/resume)"}, {"/v1/queues/etl/resume", "", Role::kAdmin}},
      {{"GET", "/v1/cluster"}, {"/v1/cluster", "", Role::kRead}},
      {{"POST", "/v1/schedules"},
       {"/v1/schedules", R"({"id":"s1","every_s":60,"task":{"type":"noop"}})", Role::kAdmin}},
      {{"GET", "/v1/schedules"}, {"/v1/schedules", "", Role::kRead}},
      {{"GET", R"(/v1/schedules/([\s\S]+))"}, {"/v1/schedules/s1", "", Role::kRead}},
      {{"DELETE", R"(/v1/schedules/([\s\S]+))"}, {"/v1/schedules/s1", "", Role::kAdmin}},
      {{"GET", "/v1/events"}, {"/v1/events", "", Role::kRead}},
      {{"GET", "/v1/stats/history"}, {"/v1/stats/history", "", Role::kRead}},
      {{"GET", "/v1/openapi.json"}, {"/v1/openapi.json", "", Role::kPublic}},
      {{"GET", "/livez"}, {"/livez", "", Role::kPublic}},
      {{"GET", "/readyz"}, {"/readyz", "", Role::kPublic}},
      {{"GET", "/metrics"}, {"/metrics", "", Role::kRead}},
      {{"GET", "/"}, {"/", "", Role::kPublic}},
      {{"GET", R"(/assets/([\s\S]*))"}, {"/assets/app.js", "", Role::kPublic}},
  };
  return m;
}

TEST_F(AuthTest, EveryRouteAnswers401WithoutAValidToken403ForAWeakRoleAnd2xxOtherwise) {
  ASSERT_EQ(call("POST", "/v1/tasks", tokens_.admin, R"({"id":"known","type":"noop"})").status,
            202);
  ASSERT_EQ(call("POST", "/v1/tasks", tokens_.admin, R"({"id":"waiting","type":"noop"})").status,
            202);
  // A live worker for the drain route.
  tasks::WorkerInfo w1;
  w1.id = "w1";
  ASSERT_TRUE(
      other_
          ->create(
              {layout_.worker("w1"), tasks::toJson(w1).dump(), coord::CreateMode::kEphemeral, {}})
          .get());
  const std::vector<Role> roles = {Role::kRead, Role::kSubmit, Role::kAdmin};
  for (const auto& row : routeRoles()) {
    SCOPED_TRACE(row.method + " " + row.pattern);
    auto it = samples().find({row.method, row.pattern});
    if (it == samples().end()) {
      ADD_FAILURE() << "no sample request for this route in auth_test.cc";
      continue;
    }
    const Sample& s = it->second;
    EXPECT_EQ(row.role, s.contract) << "the table gives this route another role than the contract";
    auto anonymous = call(row.method, s.target, "", s.body);
    auto unknown = call(row.method, s.target, newToken(), s.body);
    if (row.role == Role::kPublic) {
      EXPECT_GE(anonymous.status, 200);
      EXPECT_LT(anonymous.status, 300) << anonymous.body;
    } else {
      EXPECT_EQ(anonymous.status, 401) << anonymous.body;
      EXPECT_NE(anonymous.head.find("WWW-Authenticate: Bearer"), std::string::npos)
          << anonymous.head;
      EXPECT_EQ(unknown.status, 401) << unknown.body;
      EXPECT_NE(unknown.head.find(R"(error="invalid_token")"), std::string::npos) << unknown.head;
      EXPECT_NE(unknown.head.find("application/problem+json"), std::string::npos) << unknown.head;
    }
    for (Role role : roles) {
      SCOPED_TRACE(std::string("role ") + std::string(roleName(role)));
      auto a = call(row.method, s.target, tokens_.of(role), s.body);
      if (role >= row.role && s.answer != 0) {
        EXPECT_EQ(a.status, s.answer) << a.body;
      } else if (role >= row.role) {
        EXPECT_GE(a.status, 200);
        EXPECT_LT(a.status, 300) << a.body;
      } else {
        EXPECT_EQ(a.status, 403) << a.body;
        EXPECT_NE(a.body.find("needs the " + std::string(roleName(row.role)) + " role"),
                  std::string::npos)
            << a.body;
      }
    }
  }
}

TEST_F(AuthTest, RefusedCallsWriteNothing) {
  auto before = tree();
  EXPECT_EQ(call("POST", "/v1/tasks", "", R"({"id":"nope","type":"noop"})").status, 401);
  EXPECT_EQ(call("POST", "/v1/tasks", tokens_.read, R"({"id":"nope","type":"noop"})").status, 403);
  EXPECT_EQ(call("POST", "/v1/tasks/batch", tokens_.read, R"({"tasks":[{"type":"noop"}]})").status,
            403);
  EXPECT_EQ(tree(), before);
}

TEST_F(AuthTest, UnknownPathsNeedATokenSoTheyCannotBeProbed) {
  EXPECT_EQ(call("GET", "/v1/nothing-here", "").status, 401);
  EXPECT_EQ(call("GET", "/v1/nothing-here", tokens_.read).status, 404);
}

TEST_F(AuthTest, SchemeIsCaseInsensitiveAndOtherSchemesAre401) {
  EXPECT_EQ(rawRequest(port_, "GET", "/v1/tasks", "bearer " + tokens_.read).status, 200);
  EXPECT_EQ(rawRequest(port_, "GET", "/v1/tasks", "Basic dXNlcjpwdw==").status, 401);
  EXPECT_EQ(rawRequest(port_, "GET", "/v1/tasks", "Bearer").status, 401);
}

TEST_F(AuthTest, QueryTokenIsHonouredForTheEventStreamOnly) {
  EXPECT_EQ(call("GET", "/v1/events?access_token=" + tokens_.read, "").status, 200);
  EXPECT_EQ(call("GET", "/v1/events?access_token=" + newToken(), "").status, 401);
  EXPECT_EQ(call("GET", "/v1/tasks?access_token=" + tokens_.admin, "").status, 401);
  EXPECT_EQ(
      call("POST", "/v1/tasks?access_token=" + tokens_.admin, "", R"({"type":"noop"})").status,
      401);
}

TEST_F(AuthTest, TokensAppearInNoAnswerAndNoLogLine) {
  auto stream = std::make_shared<std::ostringstream>();
  auto sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(*stream);
  auto logger = spdlog::default_logger();
  auto old_level = logger->level();
  logger->sinks().push_back(sink);
  logger->set_level(spdlog::level::trace);
  std::string bogus = newToken();
  std::vector<RawAnswer> answers = {
      call("GET", "/v1/tasks", bogus),
      call("GET", "/v1/events?access_token=" + bogus, ""),
      call("POST", "/v1/tasks", tokens_.read, R"({"type":"noop"})"),
      call("GET", "/v1/nothing", tokens_.read),
      call("GET", "/v1/tasks/" + bogus, tokens_.read),  // a token pasted as an id: 404 names it
  };
  logger->sinks().pop_back();
  logger->set_level(old_level);
  for (const auto& a : answers) {
    EXPECT_EQ(a.head.find(bogus), std::string::npos) << a.head;
    EXPECT_EQ(a.head.find(tokens_.read), std::string::npos) << a.head;
    EXPECT_EQ(a.body.find(tokens_.read), std::string::npos) << a.body;
    EXPECT_EQ(a.body.find(sha256Hex(tokens_.read)), std::string::npos) << a.body;
  }
  EXPECT_EQ(answers[0].body.find(bogus), std::string::npos) << answers[0].body;
  EXPECT_EQ(answers[1].body.find(bogus), std::string::npos) << answers[1].body;
  EXPECT_EQ(stream->str().find(bogus.substr(4, 20)), std::string::npos) << stream->str();
  EXPECT_EQ(stream->str().find(tokens_.read.substr(4, 20)), std::string::npos) << stream->str();
}

TEST(RouteTable, ARouteWithoutARoleCannotBeRegistered) {
  auto server = std::make_shared<coord::FakeServer>();
  coord::FakeCoordination c(server);
  tasks::Layout layout("/drover");
  BatchStore store(c, layout);
  HttpOptions ho;
  ho.port = 0;
  HttpServer http(store, nullptr, ho);
  EXPECT_THROW(http.addRoute("GET", "/v1/unlisted", [](const auto&, auto&) {}), std::logic_error);
  EXPECT_NO_THROW(http.addRoute("GET", "/", [](const auto&, auto&) {}));
}

TEST(RouteTable, RolesOfRequestsFollowTheTable) {
  EXPECT_EQ(roleOfRequest("POST", "/v1/tasks/batch"), Role::kSubmit);
  EXPECT_EQ(roleOfRequest("GET", "/v1/tasks/abc"), Role::kRead);
  EXPECT_EQ(roleOfRequest("HEAD", "/v1/tasks/abc"), Role::kRead);
  EXPECT_EQ(roleOfRequest("DELETE", "/v1/tasks/abc"), Role::kSubmit);
  EXPECT_EQ(roleOfRequest("GET", "/livez"), Role::kPublic);
  EXPECT_EQ(roleOfRequest("GET", "/assets/app.js"), Role::kPublic);
  EXPECT_EQ(roleOfRequest("PUT", "/livez"), Role::kRead);  // not a route: a 405 for readers only
}

TEST(Tokens, Sha256HexOfAKnownVector) {
  EXPECT_EQ(sha256Hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST(Tokens, NewTokensAreDistinctAndUrlSafe) {
  std::set<std::string> seen;
  for (int i = 0; i < 100; ++i) {
    auto t = newToken();
    EXPECT_EQ(t.size(), 4u + 43u);
    EXPECT_EQ(t.rfind("drv_", 0), 0u);
    EXPECT_EQ(
        t.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", 4),
        std::string::npos);
    EXPECT_TRUE(seen.insert(t).second);
  }
}

TEST(Tokens, ParseTokenHash) {
  std::string hex = sha256Hex("x");
  auto ok = parseTokenHash("submit:" + hex);
  ASSERT_TRUE(ok) << ok.error();
  EXPECT_EQ(ok->role, Role::kSubmit);
  EXPECT_EQ(toText(*ok), "submit:" + hex);
  std::string upper = hex;
  for (auto& ch : upper) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
  EXPECT_EQ(parseTokenHash("admin:" + upper)->sha256_hex, hex);
  EXPECT_FALSE(parseTokenHash(hex));
  EXPECT_FALSE(parseTokenHash("root:" + hex));
  EXPECT_FALSE(parseTokenHash("read:" + hex.substr(1)));
  // A token pasted where its hash belongs is refused without being echoed.
  std::string token = newToken();
  auto bad = parseTokenHash("read:" + token);
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().find(token), std::string::npos);
}

TEST(Tokens, RoleOfPicksTheMatchingEntryAndNothingElse) {
  Authenticator a({{Role::kRead, sha256Hex("r")}, {Role::kAdmin, sha256Hex("a")}});
  EXPECT_EQ(a.roleOf("r"), Role::kRead);
  EXPECT_EQ(a.roleOf("a"), Role::kAdmin);
  EXPECT_EQ(a.roleOf("b"), std::nullopt);
  EXPECT_EQ(a.roleOf(""), std::nullopt);
  EXPECT_EQ(a.roleOf(sha256Hex("r")), std::nullopt);  // the hash itself is no token
}

TEST(Tokens, WithoutTokensEverythingIsOpen) {
  Authenticator a({});
  EXPECT_FALSE(a.enabled());
  EXPECT_EQ(a.check("POST", "/v1/tasks", "").status, 0);
}

}  // namespace
}  // namespace drover::api::testing
