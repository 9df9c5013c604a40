#pragma once

// Who may call what on the REST API (docs/SECURITY.md): bearer tokens with a role, and the one
// table that maps every route to the least role that may call it.
//
// Tokens are never stored: a node's configuration holds the SHA-256 of each token (hex), and a
// request's token is hashed and compared with each of them in constant time (CRYPTO_memcmp), so
// neither the configuration nor the timing of a refusal gives a token away. Nothing here logs or
// echoes a presented token.
//
// Thread safety: an Authenticator is immutable after construction; check() may be called from any
// number of threads.

#include <optional>
#include <string>
#include <string_view>
#include <tl/expected.hpp>
#include <vector>

namespace drover::api {

// Route patterns shared by the router (http.cc) and the role table (auth.cc).
inline constexpr const char* kDrainRoute = R"(/v1/workers/([^/]+)/drain)";
// Anything after the prefix, so that a bad id is our 400 rather than the router's 404.
inline constexpr const char* kScheduleIdRoute = R"(/v1/schedules/([\s\S]+))";
inline constexpr const char* kQueueRoute = R"(/v1/queues/([^/]+))";
inline constexpr const char* kQueuePauseRoute = R"(/v1/queues/([^/]+)/pause)";
inline constexpr const char* kQueueResumeRoute = R"(/v1/queues/([^/]+)/resume)";

// Roles are ordered: each one may do everything the one before it may.
//   kPublic: no token needed, even when tokens are configured (liveness, the dashboard's files).
//   kRead:   GETs of tasks, workers, cluster, events, metrics.
//   kSubmit: kRead plus submit, cancel and retry.
//   kAdmin:  kSubmit plus schedules and worker control.
enum class Role { kPublic = 0, kRead = 1, kSubmit = 2, kAdmin = 3 };

std::string_view roleName(Role role);
// "read", "submit" or "admin" (kPublic is no token role); nullopt for anything else.
std::optional<Role> parseTokenRole(std::string_view text);

// One row of the route table: an HTTP method, the httplib (std::regex) pattern the route is
// registered with, verbatim, and the least role that may call it.
struct RouteRole {
  std::string method;
  std::string pattern;
  Role role;
};

// THE route table. HttpServer refuses to register a route that is not in it (a new route must be
// given a role here first), and the auth tests call every row with every role.
const std::vector<RouteRole>& routeRoles();

// The role a registered route needs: exact match of method and pattern; nullopt if unlisted.
std::optional<Role> roleOfRoute(std::string_view method, std::string_view pattern);

// The role a request needs: the first row whose method matches (HEAD as GET) and whose pattern
// matches the whole path. A request no row matches (it will be a 404 or 405) needs kRead, so an
// unauthenticated client cannot probe which paths exist.
Role roleOfRequest(std::string_view method, const std::string& path);

// SHA-256 of `data` as 64 lower-case hex digits (OpenSSL).
std::string sha256Hex(std::string_view data);

// A new random token: "drv_" and 43 characters of base64url (32 bytes from OpenSSL's CSPRNG).
std::string newToken();

// One configured token: its role and the SHA-256 of the token, hex. The text form (config key
// `tokens`) is "ROLE:HEX", e.g.
// "submit:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08".
struct TokenHash {
  Role role = Role::kRead;
  std::string sha256_hex;
};
tl::expected<TokenHash, std::string> parseTokenHash(std::string_view text);
std::string toText(const TokenHash& token);

// The outcome of checking one request.
struct AuthDecision {
  int status = 0;              // 0: allowed; 401 or 403: refused
  std::string detail;          // why refused; never contains the presented token
  bool invalid_token = false;  // 401 for a token that matches none (not for a missing one)
};

class Authenticator {
 public:
  // No tokens: every request is allowed (the node then binds loopback only, see node.cc).
  explicit Authenticator(std::vector<TokenHash> tokens);

  bool enabled() const { return !tokens_.empty(); }

  // `authorization` is the request's Authorization header ("" if none); `query_token` the
  // access_token query parameter, honoured only for GET /v1/events (a browser's EventSource cannot
  // set headers; docs/SECURITY.md says what that costs).
  AuthDecision check(std::string_view method, const std::string& path,
                     std::string_view authorization, std::string_view query_token = {}) const;

  // The role of a presented token; nullopt if it matches none. Compares with every configured
  // hash, in constant time each, without stopping at the first match.
  std::optional<Role> roleOf(std::string_view token) const;

 private:
  struct Entry {
    Role role;
    unsigned char hash[32];
  };
  std::vector<Entry> tokens_;
};

}  // namespace drover::api
