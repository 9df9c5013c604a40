#pragma once

// Helpers the HTTP handlers share (http.cc, http_routing.cc): JSON bodies in and out, bounded
// quoting of client input in errors, and the JSON form of a worker.

#include <cstdint>
#include <string>
#include <string_view>
#include <tl/expected.hpp>

#include "api/store_options.h"
#include "tasks/task.h"

namespace drover::api {

inline constexpr const char* kJson = "application/json";
inline constexpr const char* kIdRule =
    "must be 1-128 characters of A-Z a-z 0-9 . _ - and not . or ..";
inline constexpr size_t kMaxDetailInput = 200;  // how much of a client's input an error echoes

std::string dumpJson(const tasks::Json& j);
// Client input quoted in an error, bounded (and JSON-escaped later).
std::string quote(std::string_view s);
bool isJsonContentType(const std::string& value);
// Parses a request body; the error says what is wrong. Nesting deeper than `max_depth` is
// refused while parsing (the callback sees each container as it opens).
tl::expected<tasks::Json, std::string> parseBody(const std::string& body, int max_depth);
tl::expected<int64_t, std::string> parseInt(const std::string& s);
tasks::Json workerJson(const WorkerView& w);

}  // namespace drover::api
