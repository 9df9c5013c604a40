#pragma once

// Internal to the cron module: the POSIX TZ rule strings that end zone files
// ("EST5EDT,M3.2.0,M11.1.0"), read with the date library's ptz.h. That header does not compile
// as C++20 (its unqualified hh_mm_ss clashes with std::chrono's), so cron_posix_tz.cc is built
// as C++17 and this interface passes only plain types across the two language modes.

#include <cstdint>
#include <memory>
#include <string>

namespace drover::base::cron_detail {

struct PosixPeriod {
  int64_t begin;  // Unix seconds; the period is [begin, end) with a constant UTC offset
  int64_t end;
  int64_t offset;  // seconds east of UTC
};

class PosixRule;

// nullptr when the library cannot read the rule string.
std::shared_ptr<const PosixRule> parsePosixRule(const std::string& rule);
PosixPeriod posixPeriod(const PosixRule& rule, int64_t unix_seconds);

}  // namespace drover::base::cron_detail
