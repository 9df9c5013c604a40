#pragma once

// Completion webhooks, the delivery policy (docs/API.md "Completion webhooks"): how one POST of a
// terminal task is built, signed and judged, and when the next try is due. The dispatcher that
// follows the event log and owns the deliveries is api/webhook_dispatcher.h.
//
// Thread safety: plain functions over values; postWebhook blocks for at most the options' timeout.

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "base/backoff.h"
#include "tasks/callback_url.h"

namespace httplib {
class Client;
}

namespace drover::api {

// What a node's config sets (docs/CONFIG.md, the `webhooks` keys).
struct WebhookOptions {
  std::string secret;         // "" = unsigned POSTs; never logged
  size_t max_in_flight = 16;  // deliveries accepted and not finished (retries in backoff count)
  uint32_t max_attempts = 10;
  std::chrono::seconds max_age{3600};       // from the task's terminal event; older: give up
  std::chrono::milliseconds timeout{5000};  // connect and answer, per try
  std::chrono::milliseconds backoff_base{1000};
  std::chrono::milliseconds backoff_cap{60000};
  // ZooKeeper calls of the dispatcher, and how often it saves its cursor.
  std::chrono::milliseconds call_timeout{5000};
  std::chrono::milliseconds save_interval{200};

  // The retry delays: exponential from backoff_base, capped at backoff_cap, half jittered.
  base::Backoff backoff() const;
};

// Lowercase hex of HMAC-SHA256(key, data) (RFC 2104 over SHA-256, OpenSSL).
std::string hmacSha256Hex(std::string_view key, std::string_view data);

// The Drover-Signature header's value for `body`: "sha256=" + hmacSha256Hex(secret, body).
std::string webhookSignature(std::string_view secret, std::string_view body);

// What a try's answer means. `status` is the HTTP status, or 0 when none came (refused,
// unreachable, timed out, TLS failed).
enum class WebhookVerdict {
  kDelivered,  // 2xx
  kRetry,      // no answer, 408, 429, 5xx (and anything else that is neither of the others)
  kGiveUp,     // another 4xx: the receiver refuses this delivery; trying again changes nothing
};
WebhookVerdict judgeWebhookAnswer(int status);

// One POST of a task to its callback URL.
struct WebhookPost {
  tasks::CallbackUrl url;
  std::string body;      // the task object, as GET /v1/tasks/{id} returns it
  std::string event;     // Drover-Event: the terminal state
  std::string delivery;  // Drover-Delivery: "{task id}/{task attempt}", stable across tries
  uint32_t attempt = 1;  // Drover-Delivery-Attempt: this try's number (from 1)
};
struct WebhookAnswer {
  int status = 0;     // 0: no answer
  std::string error;  // why there was none
};
// Sends `post` and waits for the answer (at most options.timeout to connect and as much to read).
// `on_client` is told the client in use (and nullptr after) so another thread can abort it.
WebhookAnswer postWebhook(const WebhookPost& post, const WebhookOptions& options,
                          const std::function<void(httplib::Client*)>& on_client = nullptr);
// Aborts a postWebhook in progress on another thread (`client` as given to on_client).
void abortWebhookClient(httplib::Client* client);

}  // namespace drover::api
