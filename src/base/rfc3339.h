#pragma once

// RFC 3339 times ("2026-12-02T04:43:45Z", "2026-12-02T05:43:45.250+01:00") to and from
// wall-clock milliseconds since the Unix epoch. Thread safety: pure functions.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace drover::base {

// A full RFC 3339 date-time: date, 'T' (or 't' or ' '), time with optional fraction (digits past
// the millisecond are dropped), then 'Z' or a ±HH:MM offset. nullopt for anything else,
// including impossible dates (February 30th) and leap seconds.
std::optional<int64_t> parseRfc3339(std::string_view text);

// UTC with milliseconds: "2026-12-02T04:43:45.250Z" (parseRfc3339 reads it back exactly).
std::string formatRfc3339(int64_t unix_ms);

}  // namespace drover::base
