#pragma once

#include <spdlog/formatter.h>
#include <spdlog/spdlog.h>

#include <memory>
#include <string>

namespace drover::base {

// Sets up the process-wide logger: level ("trace".."off") and format ("text" or "json" lines).
// Logs go to stderr. Returns false (and changes nothing) for an unknown level or format.
// Not thread-safe against concurrent calls of itself; call it once at startup.
bool initLogging(const std::string& level, const std::string& format = "text");

// The formatter of the "json" format: one JSON object per line,
// {"ts": ISO 8601 with milliseconds and offset, "level", "thread", "msg"}, with the message
// escaped as a JSON string (quotes, backslashes, newlines and other control characters), so
// every line parses whatever the message holds.
std::unique_ptr<spdlog::formatter> makeJsonFormatter();

}  // namespace drover::base
