#pragma once

// The web dashboard: a single page (web/index.html, app.js, style.css) embedded into the binary
// at build time (src/api/embed_web.cmake), so every node serves it with no files on disk and no
// network access. The page only uses the public REST API (docs/API.md).

#include <span>
#include <string_view>

#include "api/http.h"

namespace drover::api {

// One embedded file of web/: its name ("app.js") and its bytes. Both point to static storage.
struct EmbeddedAsset {
  std::string_view name;
  std::string_view body;
};

// Every embedded file, sorted by name. Defined in the generated dashboard_assets.cc.
std::span<const EmbeddedAsset> embeddedAssets();

// The Content-Type served for an asset name, by extension ("application/octet-stream" when
// unknown).
std::string_view contentTypeOf(std::string_view name);

// Registers GET / (index.html) and GET /assets/{name} (any embedded file) on `http`. Answers carry
// a strong ETag (a hash of the bytes) and Cache-Control: no-cache, so a browser revalidates and
// gets 304 until the binary changes. An unknown asset is a 404 problem+json. Call before
// http.start(); the handlers only read static data (thread-safe).
void addDashboard(HttpServer& http);

}  // namespace drover::api
