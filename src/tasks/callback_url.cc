#include "tasks/callback_url.h"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>

namespace drover::tasks {
namespace {

tl::unexpected<std::string> bad(std::string why) { return tl::unexpected(std::move(why)); }

bool hostChar(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '-' || c == '.' || c == '_';
}

bool ipv6Char(char c) {
  return std::isxdigit(static_cast<unsigned char>(c)) != 0 || c == ':' || c == '.';
}

}  // namespace

std::string CallbackUrl::origin() const {
  bool v6 = host.find(':') != std::string::npos;
  return fmt::format("{}://{}{}{}:{}", https ? "https" : "http", v6 ? "[" : "", host, v6 ? "]" : "",
                     port);
}

tl::expected<CallbackUrl, std::string> parseCallbackUrl(std::string_view url) {
  if (url.empty()) return bad("must not be empty");
  if (url.size() > kMaxCallbackUrlBytes) {
    return bad(fmt::format("is {} bytes; the limit is {}", url.size(), kMaxCallbackUrlBytes));
  }
  for (char c : url) {
    auto u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u >= 0x7f) {
      return bad("must be printable ASCII without spaces (percent-encode the rest)");
    }
  }
  CallbackUrl out;
  auto sep = url.find("://");
  if (sep == std::string_view::npos) return bad("must be an absolute http:// or https:// URL");
  std::string scheme(url.substr(0, sep));
  std::transform(scheme.begin(), scheme.end(), scheme.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  if (scheme == "https") {
    out.https = true;
  } else if (scheme != "http") {
    return bad(fmt::format("must use http or https, not '{}'", scheme));
  }
  std::string_view rest = url.substr(sep + 3);
  if (rest.find('#') != std::string_view::npos) return bad("must not have a #fragment");
  size_t end = rest.find_first_of("/?");
  std::string_view authority = rest.substr(0, end);
  std::string_view target = end == std::string_view::npos ? "" : rest.substr(end);
  if (authority.find('@') != std::string_view::npos) {
    return bad("must not carry a user or password (user@host)");
  }
  std::string_view port_text;
  if (!authority.empty() && authority.front() == '[') {
    auto close = authority.find(']');
    if (close == std::string_view::npos) return bad("has an IPv6 host without its closing ]");
    out.host = std::string(authority.substr(1, close - 1));
    if (out.host.empty() || !std::all_of(out.host.begin(), out.host.end(), ipv6Char) ||
        out.host.find(':') == std::string::npos) {
      return bad("has an invalid IPv6 host");
    }
    std::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') return bad("has text after its IPv6 host");
      port_text = after.substr(1);
      if (port_text.empty()) return bad("has an empty port");
    }
  } else {
    auto colon = authority.find(':');
    out.host = std::string(authority.substr(0, colon));
    if (colon != std::string_view::npos) {
      port_text = authority.substr(colon + 1);
      if (port_text.empty()) return bad("has an empty port");
    }
    if (out.host.empty()) return bad("must name a host");
    if (!std::all_of(out.host.begin(), out.host.end(), hostChar)) {
      return bad(fmt::format("has an invalid host '{}'", out.host));
    }
  }
  if (out.host.empty()) return bad("must name a host");
  if (!port_text.empty()) {
    int port = 0;
    for (char c : port_text) {
      if (c < '0' || c > '9' || port > 65535) return bad("must have a port from 1 to 65535");
      port = port * 10 + (c - '0');
    }
    if (port < 1 || port > 65535) return bad("must have a port from 1 to 65535");
    out.port = port;
  } else {
    out.port = out.https ? 443 : 80;
  }
  if (target.empty()) {
    out.target = "/";
  } else if (target.front() == '?') {
    out.target = "/" + std::string(target);
  } else {
    out.target = std::string(target);
  }
  return out;
}

}  // namespace drover::tasks
