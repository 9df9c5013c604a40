// The OpenAPI document (src/api/openapi.json) against the routes a node registers: every route is
// documented with its method, every documented operation is served, and GET /v1/openapi.json
// serves the document. Its validity as OpenAPI 3.0 is checked by tests/openapi_schema_test.py.
#include "api/openapi.h"

#include <regex>

#include "api/dashboard.h"
#include "api/test_fixture.h"

namespace drover::api::testing {
namespace {

using Routes = std::vector<std::pair<std::string, std::string>>;

// A concrete path for a documented template: each {param} becomes "sample-1".
std::string samplePath(const std::string& templ) {
  return std::regex_replace(templ, std::regex(R"(\{[^}]+\})"), "sample-1");
}

std::string lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// "METHOD pattern" of every registered route no documented operation matches.
std::vector<std::string> undocumentedRoutes(const Json& doc, const Routes& routes) {
  std::vector<std::string> out;
  for (const auto& [method, pattern] : routes) {
    std::regex re(pattern);
    bool found = false;
    for (const auto& [templ, ops] : doc["paths"].items()) {
      if (ops.contains(lower(method)) && std::regex_match(samplePath(templ), re)) found = true;
    }
    if (!found) out.push_back(method + " " + pattern);
  }
  return out;
}

// "METHOD path" of every documented operation no registered route serves.
std::vector<std::string> unservedOperations(const Json& doc, const Routes& routes) {
  static const std::vector<std::string> kMethods = {"get", "post", "put", "patch", "delete"};
  std::vector<std::string> out;
  for (const auto& [templ, ops] : doc["paths"].items()) {
    for (const auto& [key, op] : ops.items()) {
      if (std::find(kMethods.begin(), kMethods.end(), key) == kMethods.end()) continue;
      bool found = false;
      for (const auto& [method, pattern] : routes) {
        if (lower(method) == key && std::regex_match(samplePath(templ), std::regex(pattern))) {
          found = true;
        }
      }
      if (!found) out.push_back(key + " " + templ);
    }
  }
  return out;
}

class OpenApiTest : public ApiFixture {
 protected:
  // The routes of a real node: the API and the dashboard (app/node.cc adds it the same way).
  void addRoutes(HttpServer& http) override { addDashboard(http); }
  Json document() const { return Json::parse(openApiDocument()); }
};

TEST_F(OpenApiTest, EveryRegisteredRouteIsDocumented) {
  Routes routes = http_->routes();
  ASSERT_GE(routes.size(), 14u);
  EXPECT_EQ(undocumentedRoutes(document(), routes), std::vector<std::string>{});
}

TEST_F(OpenApiTest, EveryDocumentedOperationIsServed) {
  EXPECT_EQ(unservedOperations(document(), http_->routes()), std::vector<std::string>{});
}

TEST_F(OpenApiTest, TheChecksCatchAGapEitherWay) {
  Routes routes = http_->routes();
  routes.emplace_back("PUT", "/v1/gadgets/([^/]+)");
  EXPECT_EQ(undocumentedRoutes(document(), routes),
            std::vector<std::string>{"PUT /v1/gadgets/([^/]+)"});
  Json doc = document();
  doc["paths"]["/v1/gizmos"]["get"] = Json::object();
  doc["paths"]["/v1/tasks/{id}"]["put"] = Json::object();
  EXPECT_EQ(unservedOperations(doc, http_->routes()),
            (std::vector<std::string>{"get /v1/gizmos", "put /v1/tasks/{id}"}));
}

TEST_F(OpenApiTest, ServedAtV1OpenapiJson) {
  auto r = client().Get("/v1/openapi.json");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->get_header_value("Content-Type"), "application/json");
  Json served = Json::parse(r->body, nullptr, false);
  ASSERT_FALSE(served.is_discarded());
  EXPECT_EQ(served, document());
  EXPECT_TRUE(served["openapi"].get<std::string>().starts_with("3.0."));
  EXPECT_EQ(served["info"]["version"], "1");
}

}  // namespace
}  // namespace drover::api::testing
