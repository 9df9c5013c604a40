#include "api/dashboard.h"

#include <fmt/format.h>

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <unordered_map>

namespace drover::api {
namespace {

// The page talks only to the node that served it: no CDN, no external fonts, no inline script.
constexpr const char* kContentSecurityPolicy =
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

struct Served {
  std::string_view body;
  std::string_view type;
  std::string etag;
};

// FNV-1a, 64 bits: enough to tell two builds of a file apart.
std::string etagOf(std::string_view bytes) {
  uint64_t h = 14695981039346656037ull;
  for (unsigned char c : bytes) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return fmt::format("\"{:016x}\"", h);
}

// Built once (C++ guarantees a thread-safe static init), read-only afterwards.
const std::unordered_map<std::string_view, Served>& servedAssets() {
  static const auto* assets = [] {
    auto* m = new std::unordered_map<std::string_view, Served>();
    for (const auto& a : embeddedAssets()) {
      m->emplace(a.name, Served{a.body, contentTypeOf(a.name), etagOf(a.body)});
    }
    return m;
  }();
  return *assets;
}

void notFound(httplib::Response& res) {
  std::string known;
  for (const auto& a : embeddedAssets()) known += (known.empty() ? "" : ", ") + std::string(a.name);
  nlohmann::json body = {{"type", "about:blank"},
                         {"title", "Not Found"},
                         {"status", 404},
                         {"detail", "no such dashboard asset; the assets are: " + known}};
  res.status = 404;
  res.set_content(body.dump(), "application/problem+json");
}

void serve(const Served& asset, const httplib::Request& req, httplib::Response& res) {
  res.set_header("ETag", asset.etag);
  res.set_header("Cache-Control", "no-cache");
  res.set_header("X-Content-Type-Options", "nosniff");
  if (asset.type.starts_with("text/html")) {
    res.set_header("Content-Security-Policy", kContentSecurityPolicy);
  }
  if (req.get_header_value("If-None-Match") == asset.etag) {
    res.status = 304;
    return;
  }
  res.set_content(asset.body.data(), asset.body.size(), std::string(asset.type).c_str());
}

}  // namespace

std::string_view contentTypeOf(std::string_view name) {
  static const std::pair<std::string_view, std::string_view> kTypes[] = {
      {".html", "text/html; charset=utf-8"},
      {".css", "text/css; charset=utf-8"},
      {".js", "text/javascript; charset=utf-8"},
      {".svg", "image/svg+xml"},
      {".png", "image/png"},
      {".ico", "image/x-icon"},
      {".json", "application/json"},
      {".txt", "text/plain; charset=utf-8"},
  };
  for (const auto& [ext, type] : kTypes) {
    if (name.ends_with(ext)) return type;
  }
  return "application/octet-stream";
}

void addDashboard(HttpServer& http) {
  http.addRoute("GET", "/", [](const httplib::Request& req, httplib::Response& res) {
    const auto& assets = servedAssets();
    auto it = assets.find("index.html");
    if (it == assets.end()) return notFound(res);
    serve(it->second, req, res);
  });
  http.addRoute("GET", R"(/assets/([\s\S]*))",
                [](const httplib::Request& req, httplib::Response& res) {
                  const auto& assets = servedAssets();
                  auto it = assets.find(std::string_view(req.matches[1].str()));
                  if (it == assets.end()) return notFound(res);
                  serve(it->second, req, res);
                });
}

}  // namespace drover::api
