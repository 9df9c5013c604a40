#include "api/webhooks.h"

#include <fmt/format.h>
#include <httplib.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <stdexcept>

namespace drover::api {

base::Backoff WebhookOptions::backoff() const {
  return base::Backoff{backoff_base, std::max(backoff_cap, backoff_base), 2.0, 0.5};
}

std::string hmacSha256Hex(std::string_view key, std::string_view data) {
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
           reinterpret_cast<const unsigned char*>(data.data()), data.size(), mac,
           &len) == nullptr) {
    throw std::runtime_error("HMAC-SHA256 failed in OpenSSL");
  }
  std::string hex;
  hex.reserve(len * 2);
  for (unsigned int i = 0; i < len; ++i) hex += fmt::format("{:02x}", mac[i]);
  return hex;
}

std::string webhookSignature(std::string_view secret, std::string_view body) {
  return "sha256=" + hmacSha256Hex(secret, body);
}

WebhookVerdict judgeWebhookAnswer(int status) {
  if (status >= 200 && status < 300) return WebhookVerdict::kDelivered;
  if (status >= 400 && status < 500 && status != 408 && status != 429) {
    return WebhookVerdict::kGiveUp;
  }
  return WebhookVerdict::kRetry;
}

WebhookAnswer postWebhook(const WebhookPost& post, const WebhookOptions& options,
                          const std::function<void(httplib::Client*)>& on_client) {
  httplib::Client client(post.url.origin());
  auto secs = [](std::chrono::milliseconds ms) {
    return std::make_pair(static_cast<time_t>(ms.count() / 1000),
                          static_cast<time_t>((ms.count() % 1000) * 1000));
  };
  auto [s, us] = secs(options.timeout);
  client.set_connection_timeout(s, us);
  client.set_read_timeout(s, us);
  client.set_write_timeout(s, us);
  client.set_follow_location(false);
  client.set_keep_alive(false);
  if (post.url.https) client.enable_server_certificate_verification(true);
  httplib::Headers headers = {
      {"User-Agent", "drover-webhook"},
      {"Drover-Event", post.event},
      {"Drover-Delivery", post.delivery},
      {"Drover-Delivery-Attempt", std::to_string(post.attempt)},
  };
  if (!options.secret.empty()) {
    headers.emplace("Drover-Signature", webhookSignature(options.secret, post.body));
  }
  if (on_client) on_client(&client);
  auto result = client.Post(post.url.target, headers, post.body, "application/json");
  if (on_client) on_client(nullptr);
  WebhookAnswer answer;
  if (result) {
    answer.status = result->status;
  } else {
    answer.error = httplib::to_string(result.error());
  }
  return answer;
}

void abortWebhookClient(httplib::Client* client) {
  if (client != nullptr) client->stop();
}

}  // namespace drover::api
