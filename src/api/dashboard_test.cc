// The dashboard routes: the embedded web/ files are served byte for byte with the right types and
// cache headers; revalidation answers 304; unknown assets are 404 problem+json.
#include "api/dashboard.h"

#include <filesystem>
#include <fstream>
#include <sstream>

#include "api/test_fixture.h"

namespace drover::api::testing {
namespace {

std::string readSource(const std::string& name) {
  std::ifstream in(std::filesystem::path(DROVER_WEB_DIR) / name, std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

class DashboardTest : public ApiFixture {
 protected:
  void addRoutes(HttpServer& http) override { addDashboard(http); }
};

TEST(DashboardAssets, EmbedsEveryWebFileByteForByte) {
  std::vector<std::string> names;
  for (const auto& a : embeddedAssets()) names.emplace_back(a.name);
  EXPECT_EQ(names, (std::vector<std::string>{"app.js", "favicon.svg", "index.html", "style.css"}));
  for (const auto& a : embeddedAssets()) {
    EXPECT_EQ(a.body, readSource(std::string(a.name))) << a.name << " is stale or truncated";
  }
}

TEST(DashboardAssets, ContentTypesByExtension) {
  EXPECT_EQ(contentTypeOf("index.html"), "text/html; charset=utf-8");
  EXPECT_EQ(contentTypeOf("app.js"), "text/javascript; charset=utf-8");
  EXPECT_EQ(contentTypeOf("style.css"), "text/css; charset=utf-8");
  EXPECT_EQ(contentTypeOf("favicon.svg"), "image/svg+xml");
  EXPECT_EQ(contentTypeOf("blob"), "application/octet-stream");
}

TEST_F(DashboardTest, RootServesIndexHtmlWithSecurityHeaders) {
  auto r = client().Get("/");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->get_header_value("Content-Type"), "text/html; charset=utf-8");
  EXPECT_EQ(r->body, readSource("index.html"));
  EXPECT_EQ(r->get_header_value("Cache-Control"), "no-cache");
  EXPECT_FALSE(r->get_header_value("ETag").empty());
  EXPECT_NE(r->get_header_value("Content-Security-Policy").find("default-src 'self'"),
            std::string::npos);
  // The page loads nothing from elsewhere.
  EXPECT_EQ(r->body.find("http://"), std::string::npos);
  EXPECT_EQ(r->body.find("https://"), std::string::npos);
}

TEST_F(DashboardTest, AssetsServedWithTheirTypes) {
  auto c = client();
  for (const auto& [name, type] :
       std::vector<std::pair<std::string, std::string>>{{"app.js", "text/javascript"},
                                                        {"style.css", "text/css"},
                                                        {"favicon.svg", "image/svg+xml"}}) {
    auto r = c.Get(("/assets/" + name).c_str());
    ASSERT_TRUE(r) << name;
    EXPECT_EQ(r->status, 200) << name;
    EXPECT_EQ(r->get_header_value("Content-Type").rfind(type, 0), 0u) << name;
    EXPECT_EQ(r->body, readSource(name)) << name;
    EXPECT_EQ(r->get_header_value("X-Content-Type-Options"), "nosniff");
  }
}

TEST_F(DashboardTest, MatchingEtagIs304WithoutBody) {
  auto c = client();
  auto first = c.Get("/assets/app.js");
  ASSERT_TRUE(first);
  std::string etag = first->get_header_value("ETag");
  ASSERT_FALSE(etag.empty());
  EXPECT_EQ(c.Get("/assets/style.css")->get_header_value("ETag") == etag, false);

  auto again = c.Get("/assets/app.js", {{"If-None-Match", etag}});
  ASSERT_TRUE(again);
  EXPECT_EQ(again->status, 304);
  EXPECT_TRUE(again->body.empty());

  auto stale = c.Get("/assets/app.js", {{"If-None-Match", "\"0000\""}});
  ASSERT_TRUE(stale);
  EXPECT_EQ(stale->status, 200);
  EXPECT_EQ(stale->body, first->body);
}

TEST_F(DashboardTest, UnknownAssetIs404Problem) {
  auto c = client();
  for (const char* path : {"/assets/nope.js", "/assets/", "/assets/../http.cc", "/assets/app.js/x",
                           "/assets/.hidden", "/index.html.bak"}) {
    auto r = c.Get(path);
    ASSERT_TRUE(r) << path;
    EXPECT_EQ(r->status, 404) << path;
    EXPECT_EQ(r->get_header_value("Content-Type"), "application/problem+json") << path;
    auto j = Json::parse(r->body, nullptr, false);
    ASSERT_FALSE(j.is_discarded()) << r->body;
    EXPECT_EQ(j["status"], 404);
  }
}

TEST_F(DashboardTest, ApiRoutesStillAnswer) {
  auto r = client().Get("/v1/cluster");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  auto other = client().Post("/", "{}", "application/json");
  ASSERT_TRUE(other);
  EXPECT_EQ(other->status, 405);
}

}  // namespace
}  // namespace drover::api::testing
