// Built as C++17: see cron_posix_tz.h.
#include "base/cron_posix_tz.h"

#include <date/ptz.h>

#include <exception>

namespace drover::base::cron_detail {

class PosixRule {
 public:
  explicit PosixRule(const std::string& rule) : zone(rule) {}
  Posix::time_zone zone;
};

std::shared_ptr<const PosixRule> parsePosixRule(const std::string& rule) {
  try {
    return std::make_shared<const PosixRule>(rule);
  } catch (const std::exception&) {
    return nullptr;
  }
}

PosixPeriod posixPeriod(const PosixRule& rule, int64_t unix_seconds) {
  const date::sys_info info =
      rule.zone.get_info(date::sys_seconds(std::chrono::seconds(unix_seconds)));
  return {info.begin.time_since_epoch().count(), info.end.time_since_epoch().count(),
          info.offset.count()};
}

}  // namespace drover::base::cron_detail
