#include "api/webhooks.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

namespace drover::api {
namespace {

// RFC 4231, section 4: the HMAC-SHA-256 test vectors (case 5, a truncated MAC, does not apply).
TEST(WebhookSignature, MatchesTheRfc4231Vectors) {
  std::string key4;
  for (int i = 1; i <= 25; ++i) key4.push_back(static_cast<char>(i));
  struct Case {
    std::string key, data, mac;
  };
  for (const Case& c : std::vector<Case>{
           {std::string(20, '\x0b'), "Hi There",
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"},
           {"Jefe", "what do ya want for nothing?",
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"},
           {std::string(20, '\xaa'), std::string(50, '\xdd'),
            "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe"},
           {key4, std::string(50, '\xcd'),
            "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b"},
           {std::string(131, '\xaa'), "Test Using Larger Than Block-Size Key - Hash Key First",
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"},
           {std::string(131, '\xaa'),
            "This is a test using a larger than block-size key and a larger than block-size "
            "data. The key needs to be hashed before being used by the HMAC algorithm.",
            "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2"},
       }) {
    EXPECT_EQ(hmacSha256Hex(c.key, c.data), c.mac) << c.data;
  }
}

TEST(WebhookSignature, IsTheHeaderFormOfTheBodysMac) {
  EXPECT_EQ(webhookSignature("Jefe", "what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
  // Any change of the body or the secret changes it.
  EXPECT_NE(webhookSignature("Jefe", "what do ya want for nothing!"),
            webhookSignature("Jefe", "what do ya want for nothing?"));
  EXPECT_NE(webhookSignature("Jeff", "x"), webhookSignature("Jefe", "x"));
}

TEST(WebhookVerdict, TwoHundredsDeliverOtherFourHundredsGiveUpTheRestRetry) {
  struct Case {
    int status;
    WebhookVerdict verdict;
  };
  for (const Case& c : std::vector<Case>{
           {200, WebhookVerdict::kDelivered}, {201, WebhookVerdict::kDelivered},
           {202, WebhookVerdict::kDelivered}, {204, WebhookVerdict::kDelivered},
           {299, WebhookVerdict::kDelivered}, {400, WebhookVerdict::kGiveUp},
           {401, WebhookVerdict::kGiveUp},    {403, WebhookVerdict::kGiveUp},
           {404, WebhookVerdict::kGiveUp},    {410, WebhookVerdict::kGiveUp},
           {422, WebhookVerdict::kGiveUp},    {499, WebhookVerdict::kGiveUp},
           {408, WebhookVerdict::kRetry},     {429, WebhookVerdict::kRetry},
           {500, WebhookVerdict::kRetry},     {502, WebhookVerdict::kRetry},
           {503, WebhookVerdict::kRetry},     {504, WebhookVerdict::kRetry},
           {0, WebhookVerdict::kRetry},    // refused, unreachable, timed out
           {301, WebhookVerdict::kRetry},  // redirects are not followed
           {100, WebhookVerdict::kRetry},
       }) {
    EXPECT_EQ(judgeWebhookAnswer(c.status), c.verdict) << c.status;
  }
}

TEST(WebhookBackoff, GrowsFromTheBaseAndNeverPassesTheCap) {
  WebhookOptions o;
  o.backoff_base = std::chrono::milliseconds(100);
  o.backoff_cap = std::chrono::milliseconds(3000);
  auto b = o.backoff();
  for (uint32_t attempt = 1; attempt <= 40; ++attempt) {
    for (uint64_t seed = 1; seed <= 50; ++seed) {
      auto d = b.delay(attempt, seed);
      EXPECT_LE(d, std::chrono::milliseconds(3000)) << attempt;
      // Half jitter: at least half the uncapped-or-capped delay.
      auto full = std::min<double>(100.0 * std::pow(2.0, attempt - 1), 3000.0);
      double ms = std::chrono::duration<double, std::milli>(d).count();
      EXPECT_GE(ms, full / 2 - 1) << attempt;
    }
  }
  // A cap below the base: the base is the cap.
  o.backoff_cap = std::chrono::milliseconds(10);
  EXPECT_LE(o.backoff().delay(5, 7), std::chrono::milliseconds(100));
}

}  // namespace
}  // namespace drover::api
