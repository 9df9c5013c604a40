#pragma once

#include <bitset>
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <tl/expected.hpp>

namespace drover::base {

// Instants are whole seconds of UTC (Unix time); schedules fire on whole seconds.
using UnixSeconds = std::chrono::sys_seconds;

// An IANA time zone ("Europe/Berlin", "UTC"), read from the system's tz database
// (/usr/share/zoneinfo, Debian's tzdata) through Howard Hinnant's date library. Past the last
// transition listed in the zone file (2037 in Debian's files), the file's POSIX TZ rule string
// continues the daylight-saving rules. Cheap to copy; immutable; thread-safe.
class CronZone {
 public:
  // An unknown or empty name is an error naming it; nothing is thrown.
  [[nodiscard]] static tl::expected<CronZone, std::string> find(std::string_view name);
  static CronZone utc();

  const std::string& name() const { return name_; }

 private:
  friend class CronSchedule;
  struct Rules;
  CronZone(std::shared_ptr<const Rules> rules, std::string name)
      : rules_(std::move(rules)), name_(std::move(name)) {}
  std::shared_ptr<const Rules> rules_;  // nullptr: UTC
  std::string name_;
};

// A parsed cron expression: 5 fields (minute hour day-of-month month day-of-week), or 6 with
// seconds first, or a macro (@yearly, @annually, @monthly, @weekly, @daily, @midnight, @hourly).
// A field is a comma list of `*`, `N`, `A-B`, `*/S`, `A-B/S` or `A/S` (A to the field's end);
// months and weekdays also take names (JAN-DEC, SUN-SAT, any case); weekday 0 and 7 are Sunday.
// When both day fields are restricted (neither starts with `*`), a day fires if it matches
// either (the Vixie cron union rule); otherwise it must match both.
//
// Time is evaluated on the wall clock of a time zone; daylight-saving rules (docs/WORKFLOWS.md,
// "Cron schedules"):
// - "Wildcard" schedules (the minute or hour field starts with `*`, e.g. `*/15 * * * *`) fire
//   at every real instant whose wall-clock time matches: wall times skipped by a spring-forward
//   gap do not fire, and wall times that occur twice in a fall-back hour fire twice.
// - Fixed-time schedules (`30 2 * * *`) fire once per matching wall time: a time skipped by a
//   gap fires at the first instant after the gap (once, however many matches the gap held), and a
//   repeated time fires at its first occurrence only.
// Immutable after parse; thread-safe.
class CronSchedule {
 public:
  // Errors name the field and the bad token, e.g. `minute field: "61" is out of range 0-59`.
  // Also rejected: a day-of-month that no selected month has (`0 0 30 2 *`), so every accepted
  // schedule fires at least once every eight years.
  [[nodiscard]] static tl::expected<CronSchedule, std::string> parse(std::string_view expr);

  // The first firing strictly after `after`, or nullopt if there is none within 30 years
  // (only possible when daylight-saving gaps swallow every match of a wildcard schedule).
  // Cost: a field-by-field skip per daylight-saving period crossed, never a scan per minute.
  std::optional<UnixSeconds> next(UnixSeconds after, const CronZone& zone) const;

  const std::string& text() const { return text_; }
  // True when DST gaps and repeats follow the wildcard rule above.
  bool wildcard() const { return wildcard_; }

 private:
  friend class CronMatcher;
  CronSchedule() = default;  // only parse() makes one
  std::string text_;
  std::bitset<60> seconds_;
  std::bitset<60> minutes_;
  std::bitset<24> hours_;
  std::bitset<32> days_;     // 1..31
  std::bitset<13> months_;   // 1..12
  std::bitset<7> weekdays_;  // 0 = Sunday
  bool day_union_ = false;   // both day fields restricted: match either
  bool wildcard_ = false;
};

}  // namespace drover::base
