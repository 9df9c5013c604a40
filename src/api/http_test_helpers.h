#pragma once

// What the HTTP layer's unit tests share (http_test.cc, http_stream_test.cc): an ApiFixture with
// a server, a plain task spec and the problem+json check.

#include <string>

#include "api/test_fixture.h"

namespace drover::api::testing {

using coord::Code;
using coord::FaultMode;
using coord::OpKind;
using tasks::State;

inline Json bodyOf(const httplib::Result& r) { return Json::parse(r->body); }

inline tasks::TaskSpec spec(std::string id) {
  tasks::TaskSpec s;
  s.id = std::move(id);
  s.type = "noop";
  return s;
}

inline void expectProblem(const httplib::Result& r, int status) {
  ASSERT_TRUE(r) << "no response";
  EXPECT_EQ(r->status, status) << r->body;
  EXPECT_EQ(r->get_header_value("Content-Type"), "application/problem+json");
  auto j = Json::parse(r->body, nullptr, false);
  ASSERT_FALSE(j.is_discarded()) << r->body;
  EXPECT_EQ(j["type"], "about:blank");
  EXPECT_EQ(j["status"], status);
  EXPECT_TRUE(j["title"].is_string());
  EXPECT_TRUE(j["detail"].is_string() && !j["detail"].get<std::string>().empty());
}

class HttpTest : public ApiFixture {};

}  // namespace drover::api::testing
