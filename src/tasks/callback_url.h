#pragma once

// The `callback_url` of a task: where Drover POSTs the task once it is terminal (docs/API.md
// "Completion webhooks"). One parser serves the submit-time check and the webhook sender, so a
// URL the API accepts is exactly one the sender can reach.
//
// Thread safety: plain functions over values.

#include <cstddef>
#include <string>
#include <string_view>
#include <tl/expected.hpp>

namespace drover::tasks {

inline constexpr size_t kMaxCallbackUrlBytes = 2048;

// An absolute http:// or https:// URL taken apart.
struct CallbackUrl {
  bool https = false;
  std::string host;    // a name, an IPv4 address, or an IPv6 address without its brackets
  int port = 0;        // explicit, or 80 / 443 by scheme
  std::string target;  // path and query as sent in the request line; "/" when the URL has none

  // "scheme://host:port" (IPv6 in brackets), the base a client connects to.
  std::string origin() const;
};

// Parses `url`: scheme http or https (any case), a non-empty host (a name of letters, digits,
// '-', '.', '_', or an IPv4 address, or [IPv6]), an optional port 1-65535, then an optional path
// and query of printable ASCII without spaces. No user:password@ part, no #fragment, at most
// kMaxCallbackUrlBytes bytes. On error returns why, in words fit for a 400's detail.
tl::expected<CallbackUrl, std::string> parseCallbackUrl(std::string_view url);

}  // namespace drover::tasks
