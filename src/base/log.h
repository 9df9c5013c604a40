#pragma once

#include <spdlog/spdlog.h>

#include <string>

namespace drover::base {

// Sets up the process-wide logger: level ("trace".."off") and format ("text" or "json" lines).
// Logs go to stderr. Returns false (and changes nothing) for an unknown level or format.
bool initLogging(const std::string& level, const std::string& format = "text");

}  // namespace drover::base
