#pragma once

// The OpenAPI 3 document of the REST API v1 (src/api/openapi.json), embedded into the binary at
// build time (src/api/embed_openapi.cmake) and served at GET /v1/openapi.json. Kept true by
// openapi_test.cc (every registered route is documented, and every documented one registered)
// and tests/openapi_schema_test.py (the document is valid OpenAPI 3.0).

#include <string_view>

namespace drover::api {

// The document's JSON text (static storage).
std::string_view openApiDocument();

}  // namespace drover::api
