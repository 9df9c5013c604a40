#include "tasks/callback_url.h"

#include <gtest/gtest.h>

#include "tasks/records.h"
#include "tasks/task.h"

namespace drover::tasks {
namespace {

TEST(CallbackUrl, AcceptsAbsoluteHttpAndHttpsUrls) {
  struct Case {
    const char* url;
    bool https;
    const char* host;
    int port;
    const char* target;
    const char* origin;
  };
  for (const Case& c : std::vector<Case>{
           {"http://example.com", false, "example.com", 80, "/", "http://example.com:80"},
           {"https://example.com/hook", true, "example.com", 443, "/hook",
            "https://example.com:443"},
           {"HTTP://127.0.0.1:8081/a/b?x=1&y=%20", false, "127.0.0.1", 8081, "/a/b?x=1&y=%20",
            "http://127.0.0.1:8081"},
           {"http://h?q=1", false, "h", 80, "/?q=1", "http://h:80"},
           {"https://[::1]:9443/p", true, "::1", 9443, "/p", "https://[::1]:9443"},
           {"http://my_host.internal:65535/", false, "my_host.internal", 65535, "/",
            "http://my_host.internal:65535"},
       }) {
    auto u = parseCallbackUrl(c.url);
    ASSERT_TRUE(u) << c.url << ": " << u.error();
    EXPECT_EQ(u->https, c.https) << c.url;
    EXPECT_EQ(u->host, c.host) << c.url;
    EXPECT_EQ(u->port, c.port) << c.url;
    EXPECT_EQ(u->target, c.target) << c.url;
    EXPECT_EQ(u->origin(), c.origin) << c.url;
  }
}

TEST(CallbackUrl, RejectsWhatIsNotAnAbsoluteHttpUrlWithAHost) {
  struct Case {
    std::string url;
    const char* says;  // a word of the reason
  };
  for (const Case& c : std::vector<Case>{
           {"", "empty"},
           {"example.com/hook", "absolute"},
           {"/relative/path", "absolute"},
           {"ftp://example.com/", "http or https"},
           {"file:///etc/passwd", "http or https"},
           {"javascript://x", "http or https"},
           {"http://", "host"},
           {"http:///path", "host"},
           {"http://:8080/", "host"},
           {"http://exa mple.com/", "printable"},
           {"http://example.com/a b", "printable"},
           {"http://example.com/\n", "printable"},
           {"http://exämple.com/", "printable"},
           {"http://user:pw@example.com/", "user"},
           {"http://example.com/#frag", "fragment"},
           {"http://example.com:0/", "port"},
           {"http://example.com:65536/", "port"},
           {"http://example.com:99999999999/", "port"},
           {"http://example.com:80a/", "port"},
           {"http://example.com:/", "port"},
           {"http://[::1/", "IPv6"},
           {"http://[]/", "IPv6"},
           {"http://[zz::1]/", "IPv6"},
           {"http://[::1]x/", "IPv6"},
           {"http://ex%61mple.com/", "host"},
           {"http://example.com/" + std::string(2048, 'a'), "limit"},
       }) {
    auto u = parseCallbackUrl(c.url);
    ASSERT_FALSE(u) << c.url;
    EXPECT_NE(u.error().find(c.says), std::string::npos) << c.url << ": " << u.error();
  }
}

TEST(CallbackUrl, TheLimitIs2048BytesInclusive) {
  std::string base = "http://h/";
  EXPECT_TRUE(parseCallbackUrl(base + std::string(kMaxCallbackUrlBytes - base.size(), 'a')));
  EXPECT_FALSE(parseCallbackUrl(base + std::string(kMaxCallbackUrlBytes - base.size() + 1, 'a')));
}

TEST(CallbackUrl, IsPartOfTheSpecAndItsCodec) {
  auto spec = parseSpec(Json::parse(R"({"type":"noop","callback_url":"http://127.0.0.1:9/h"})"),
                        SubmitLimits{});
  ASSERT_TRUE(spec) << spec.error().detail;
  EXPECT_EQ(spec->callback_url, "http://127.0.0.1:9/h");
  EXPECT_EQ(toJson(*spec)["callback_url"], "http://127.0.0.1:9/h");
  auto back = specFromJson(toJson(*spec));
  ASSERT_TRUE(back);
  EXPECT_EQ(*back, *spec);
  // Same id, other URL: another spec (an idempotent repeat compares it).
  TaskSpec other = *spec;
  other.callback_url = "http://127.0.0.1:9/other";
  EXPECT_FALSE(other == *spec);
  // Absent: none, and not rendered.
  auto plain = parseSpec(Json::parse(R"({"type":"noop"})"), SubmitLimits{});
  ASSERT_TRUE(plain);
  EXPECT_TRUE(plain->callback_url.empty());
  EXPECT_FALSE(toJson(*plain).contains("callback_url"));
}

TEST(CallbackUrl, ABadOneIsRejectedNamingTheField) {
  for (const char* body :
       {R"({"type":"noop","callback_url":"ftp://x/"})", R"({"type":"noop","callback_url":42})",
        R"({"type":"noop","callback_url":"http://"})"}) {
    auto spec = parseSpec(Json::parse(body), SubmitLimits{});
    ASSERT_FALSE(spec) << body;
    EXPECT_EQ(spec.error().field, "callback_url") << body;
  }
}

TEST(CallbackUrl, TheEventFlagRoundTrips) {
  TaskEvent e{"t", State::kSucceeded, 2, "w", 5, true};
  auto j = toJson(e);
  EXPECT_EQ(j["callback"], true);
  auto back = eventFromJson(j);
  ASSERT_TRUE(back);
  EXPECT_TRUE(back->callback);
  e.callback = false;
  EXPECT_FALSE(toJson(e).contains("callback"));
  EXPECT_FALSE(eventFromJson(toJson(e))->callback);
}

}  // namespace
}  // namespace drover::tasks
