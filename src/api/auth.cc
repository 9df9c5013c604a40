#include "api/auth.h"

#include <fmt/format.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include <algorithm>
#include <cstring>
#include <regex>
#include <stdexcept>

namespace drover::api {
namespace {

// The id route takes anything after the prefix (see HttpServer::setupRoutes).
constexpr const char* kTaskIdRoute = R"(/v1/tasks/([\s\S]+))";

struct CompiledRow {
  const RouteRole* row;
  std::regex pattern;
};

const std::vector<CompiledRow>& compiledRows() {
  static const auto* rows = [] {
    auto* v = new std::vector<CompiledRow>();
    for (const auto& r : routeRoles()) v->push_back(CompiledRow{&r, std::regex(r.pattern)});
    return v;
  }();
  return *rows;
}

bool fromHex(std::string_view hex, unsigned char out[32]) {
  if (hex.size() != 64) return false;
  auto nibble = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  for (size_t i = 0; i < 32; ++i) {
    int hi = nibble(hex[2 * i]);
    int lo = nibble(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) return false;
    out[i] = static_cast<unsigned char>(hi << 4 | lo);
  }
  return true;
}

void sha256(std::string_view data, unsigned char out[32]) {
  unsigned int len = 0;
  if (EVP_Digest(data.data(), data.size(), out, &len, EVP_sha256(), nullptr) != 1 || len != 32) {
    throw std::runtime_error("SHA-256 failed in OpenSSL");
  }
}

// The token of an "Authorization: Bearer TOKEN" header ("" if the header is absent or of another
// scheme). The scheme is case-insensitive (RFC 7235).
std::string_view bearerToken(std::string_view header) {
  constexpr std::string_view kScheme = "bearer ";
  if (header.size() <= kScheme.size()) return {};
  for (size_t i = 0; i < kScheme.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(header[i])) != kScheme[i]) return {};
  }
  std::string_view token = header.substr(kScheme.size());
  while (!token.empty() && token.front() == ' ') token.remove_prefix(1);
  while (!token.empty() && token.back() == ' ') token.remove_suffix(1);
  return token;
}

}  // namespace

std::string_view roleName(Role role) {
  switch (role) {
    case Role::kPublic:
      return "public";
    case Role::kRead:
      return "read";
    case Role::kSubmit:
      return "submit";
    case Role::kAdmin:
      return "admin";
  }
  return "?";
}

std::optional<Role> parseTokenRole(std::string_view text) {
  if (text == "read") return Role::kRead;
  if (text == "submit") return Role::kSubmit;
  if (text == "admin") return Role::kAdmin;
  return std::nullopt;
}

const std::vector<RouteRole>& routeRoles() {
  // Order matters only where two patterns match one path: the first row wins, as httplib's
  // router picks the first route registered (POST /v1/tasks/batch is listed before the id route).
  static const std::vector<RouteRole> table = {
      {"POST", "/v1/tasks", Role::kSubmit},
      {"POST", "/v1/tasks/batch", Role::kSubmit},
      {"GET", "/v1/tasks", Role::kRead},
      {"GET", kTaskIdRoute, Role::kRead},
      {"DELETE", kTaskIdRoute, Role::kSubmit},
      {"POST", R"(/v1/tasks/([\s\S]+)/retry)", Role::kSubmit},
      {"GET", "/v1/workers", Role::kRead},
      // Worker and queue control (docs/ROUTING.md) is the admin's.
      {"POST", kDrainRoute, Role::kAdmin},
      {"DELETE", kDrainRoute, Role::kAdmin},
      {"GET", "/v1/queues", Role::kRead},
      {"PUT", kQueueRoute, Role::kAdmin},
      {"POST", kQueuePauseRoute, Role::kAdmin},
      {"POST", kQueueResumeRoute, Role::kAdmin},
      {"GET", "/v1/cluster", Role::kRead},
      // Schedules (docs/WORKFLOWS.md): writing them is the admin's, reading them a reader's.
      {"POST", "/v1/schedules", Role::kAdmin},
      {"GET", "/v1/schedules", Role::kRead},
      {"GET", kScheduleIdRoute, Role::kRead},
      {"DELETE", kScheduleIdRoute, Role::kAdmin},
      {"GET", "/v1/events", Role::kRead},
      {"GET", "/v1/stats/history", Role::kRead},
      // The description of the API: no data, and tools (code generators, Swagger UI) fetch it
      // without credentials.
      {"GET", "/v1/openapi.json", Role::kPublic},
      // Probes of process managers and load balancers carry no credentials (contract).
      {"GET", "/livez", Role::kPublic},
      {"GET", "/readyz", Role::kPublic},
      // Counts of tasks by state and queue, worker names: a reader's view (Prometheus sends a
      // bearer token with `authorization: {credentials: ...}` in its scrape config).
      {"GET", "/metrics", Role::kRead},
      // The dashboard's own files hold no data; the page asks for a token when the API says 401.
      {"GET", "/", Role::kPublic},
      {"GET", R"(/assets/([\s\S]*))", Role::kPublic},
  };
  return table;
}

std::optional<Role> roleOfRoute(std::string_view method, std::string_view pattern) {
  for (const auto& r : routeRoles()) {
    if (r.method == method && r.pattern == pattern) return r.role;
  }
  return std::nullopt;
}

Role roleOfRequest(std::string_view method, const std::string& path) {
  std::string_view m = method == "HEAD" ? std::string_view("GET") : method;
  for (const auto& c : compiledRows()) {
    if (c.row->method == m && std::regex_match(path, c.pattern)) return c.row->role;
  }
  return Role::kRead;
}

std::string sha256Hex(std::string_view data) {
  unsigned char digest[32];
  sha256(data, digest);
  std::string out;
  out.reserve(64);
  for (unsigned char b : digest) out += fmt::format("{:02x}", b);
  return out;
}

std::string newToken() {
  unsigned char bytes[32];
  if (RAND_bytes(bytes, sizeof(bytes)) != 1) {
    throw std::runtime_error("OpenSSL's random generator failed");
  }
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  std::string out = "drv_";
  // base64url without padding: 32 bytes -> 43 characters.
  uint32_t acc = 0;
  int bits = 0;
  for (unsigned char b : bytes) {
    acc = (acc << 8) | b;
    bits += 8;
    while (bits >= 6) {
      bits -= 6;
      out += kAlphabet[(acc >> bits) & 63];
    }
  }
  if (bits > 0) out += kAlphabet[(acc << (6 - bits)) & 63];
  OPENSSL_cleanse(bytes, sizeof(bytes));
  return out;
}

tl::expected<TokenHash, std::string> parseTokenHash(std::string_view text) {
  auto colon = text.find(':');
  if (colon == std::string_view::npos) {
    return tl::unexpected(std::string(
        "a token must be ROLE:SHA256HEX (make one with `drover token new --role read`)"));
  }
  auto role = parseTokenRole(text.substr(0, colon));
  if (!role) {
    return tl::unexpected(fmt::format("token role '{}' is not read, submit or admin",
                                      text.substr(0, std::min<size_t>(colon, 20))));
  }
  std::string hex(text.substr(colon + 1));
  unsigned char ignored[32];
  if (!fromHex(hex, ignored)) {
    // The value is not echoed: someone may have pasted a token where its hash belongs.
    return tl::unexpected(std::string(
        "a token's hash must be 64 hex digits (SHA-256; `drover token hash` prints it); "
        "the configured value is not"));
  }
  std::transform(hex.begin(), hex.end(), hex.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return TokenHash{*role, hex};
}

std::string toText(const TokenHash& token) {
  return fmt::format("{}:{}", roleName(token.role), token.sha256_hex);
}

Authenticator::Authenticator(std::vector<TokenHash> tokens) {
  for (const auto& t : tokens) {
    Entry e{t.role, {}};
    if (!fromHex(t.sha256_hex, e.hash)) {
      throw std::invalid_argument("a configured token hash is not 64 hex digits");
    }
    tokens_.push_back(e);
  }
}

std::optional<Role> Authenticator::roleOf(std::string_view token) const {
  if (token.empty()) return std::nullopt;
  unsigned char digest[32];
  sha256(token, digest);
  std::optional<Role> found;
  for (const auto& e : tokens_) {
    // Every entry is compared, match or not, so the time taken says nothing about which matched.
    bool match = CRYPTO_memcmp(digest, e.hash, sizeof(digest)) == 0;
    if (match && (!found || e.role > *found)) found = e.role;
  }
  OPENSSL_cleanse(digest, sizeof(digest));
  return found;
}

AuthDecision Authenticator::check(std::string_view method, const std::string& path,
                                  std::string_view authorization,
                                  std::string_view query_token) const {
  if (!enabled()) return {};
  Role needed = roleOfRequest(method, path);
  if (needed == Role::kPublic) return {};
  std::string_view token = bearerToken(authorization);
  if (token.empty() && !query_token.empty() && (method == "GET" || method == "HEAD") &&
      path == "/v1/events") {
    token = query_token;
  }
  if (token.empty()) {
    return {401, authorization.empty() ? "this call needs a token: send Authorization: Bearer TOKEN"
                                       : "the Authorization header must be Bearer TOKEN"};
  }
  auto role = roleOf(token);
  if (!role) return {401, "the token is not valid on this node", true};
  if (*role < needed) {
    return {403, fmt::format("this call needs the {} role; the token has the {} role",
                             roleName(needed), roleName(*role))};
  }
  return {};
}

}  // namespace drover::api
