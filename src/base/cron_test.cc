#include "base/cron.h"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <random>
#include <vector>

namespace drover::base {
namespace {

using namespace std::chrono;

// "2024-03-10 07:00:00" (UTC) to an instant, and back.
UnixSeconds at(const char* text) {
  int y, mo, d, h, mi, s;
  EXPECT_EQ(std::sscanf(text, "%d-%d-%d %d:%d:%d", &y, &mo, &d, &h, &mi, &s), 6) << text;
  return sys_days(year(y) / month(static_cast<unsigned>(mo)) / day(static_cast<unsigned>(d))) +
         hours(h) + minutes(mi) + seconds(s);
}

std::string show(UnixSeconds t) {
  const auto day_start = floor<days>(t);
  const year_month_day ymd(day_start);
  const hh_mm_ss<seconds> tod(t - day_start);
  return fmt::format("{:04}-{:02}-{:02} {:02}:{:02}:{:02}", static_cast<int>(ymd.year()),
                     unsigned(ymd.month()), unsigned(ymd.day()), tod.hours().count(),
                     tod.minutes().count(), tod.seconds().count());
}

// The next `n` firings after `after`, chained, as UTC text.
std::vector<std::string> firings(const std::string& expr, const char* after, size_t n,
                                 const std::string& zone_name = "UTC") {
  auto schedule = CronSchedule::parse(expr);
  EXPECT_TRUE(schedule) << expr << ": " << schedule.error();
  auto zone = zone_name == "UTC" ? CronZone::utc() : CronZone::find(zone_name).value();
  std::vector<std::string> out;
  UnixSeconds t = at(after);
  for (size_t i = 0; schedule && i < n; ++i) {
    auto next = schedule->next(t, zone);
    if (!next) break;
    EXPECT_GT(*next, t);
    out.push_back(show(*next));
    t = *next;
  }
  return out;
}

struct Case {
  const char* expr;
  const char* after;  // UTC
  std::vector<std::string> expected;
};

void runTable(const std::vector<Case>& cases, const std::string& zone = "UTC") {
  for (const Case& c : cases) {
    EXPECT_EQ(firings(c.expr, c.after, c.expected.size(), zone), c.expected)
        << "expr \"" << c.expr << "\" after " << c.after << " in " << zone;
  }
}

TEST(CronSchedule, EveryFieldForm) {
  runTable({
      {"* * * * *", "2024-01-01 00:00:00", {"2024-01-01 00:01:00", "2024-01-01 00:02:00"}},
      {"* * * * *", "2024-01-01 00:00:30", {"2024-01-01 00:01:00"}},
      {"*/15 * * * *",
       "2024-01-01 00:07:00",
       {"2024-01-01 00:15:00", "2024-01-01 00:30:00", "2024-01-01 00:45:00",
        "2024-01-01 01:00:00"}},
      {"5-10/2 * * * *",
       "2024-01-01 00:00:00",
       {"2024-01-01 00:05:00", "2024-01-01 00:07:00", "2024-01-01 00:09:00",
        "2024-01-01 01:05:00"}},
      {"50/5 * * * *",
       "2024-01-01 00:00:00",
       {"2024-01-01 00:50:00", "2024-01-01 00:55:00", "2024-01-01 01:50:00"}},
      {"1,2,30-31 * * * *",
       "2024-01-01 00:01:00",
       {"2024-01-01 00:02:00", "2024-01-01 00:30:00", "2024-01-01 00:31:00",
        "2024-01-01 01:01:00"}},
      {"0 9-17/4 * * *",
       "2024-01-01 00:00:00",
       {"2024-01-01 09:00:00", "2024-01-01 13:00:00", "2024-01-01 17:00:00",
        "2024-01-02 09:00:00"}},
      {"0 0 1,15 * *", "2024-01-20 00:00:00", {"2024-02-01 00:00:00", "2024-02-15 00:00:00"}},
      {"0 0 31 * *",  // months without a 31st are skipped
       "2024-01-31 00:00:00",
       {"2024-03-31 00:00:00", "2024-05-31 00:00:00", "2024-07-31 00:00:00"}},
      {"0 12 * 2-3 *", "2023-12-31 13:00:00", {"2024-02-01 12:00:00"}},
      {"0 12 1 */5 *",
       "2024-01-01 12:00:00",
       {"2024-06-01 12:00:00", "2024-11-01 12:00:00", "2025-01-01 12:00:00"}},
      // 2024-01-01 is a Monday.
      {"0 0 * * 3", "2024-01-01 00:00:00", {"2024-01-03 00:00:00", "2024-01-10 00:00:00"}},
      {"0 0 * * 1-5/2",
       "2024-01-01 00:00:00",
       {"2024-01-03 00:00:00", "2024-01-05 00:00:00", "2024-01-08 00:00:00"}},
      // Day-of-week 0 and 7 are both Sunday, also inside a range.
      {"0 0 * * 0", "2024-01-01 00:00:00", {"2024-01-07 00:00:00", "2024-01-14 00:00:00"}},
      {"0 0 * * 7", "2024-01-01 00:00:00", {"2024-01-07 00:00:00", "2024-01-14 00:00:00"}},
      {"0 0 * * 6-7",
       "2024-01-01 00:00:00",
       {"2024-01-06 00:00:00", "2024-01-07 00:00:00", "2024-01-13 00:00:00"}},
      // Six fields: seconds first.
      {"*/20 * * * * *",
       "2024-01-01 00:00:00",
       {"2024-01-01 00:00:20", "2024-01-01 00:00:40", "2024-01-01 00:01:00"}},
      {"30 0 0 1 1 *", "2024-01-01 00:00:30", {"2025-01-01 00:00:30"}},
      {"59 59 23 31 12 *", "2024-06-01 00:00:00", {"2024-12-31 23:59:59"}},
      {"0-1 0 0 * * *",
       "2024-01-01 00:00:00",
       {"2024-01-01 00:00:01", "2024-01-02 00:00:00", "2024-01-02 00:00:01"}},
      // Carry: the last second of a year rolls into the next.
      {"* * * * *", "2024-12-31 23:59:59", {"2025-01-01 00:00:00"}},
      {"0 0 1 1 *", "2024-01-01 00:00:00", {"2025-01-01 00:00:00"}},
  });
}

TEST(CronSchedule, MonthAndWeekdayNamesInAnyCase) {
  runTable({
      {"0 0 1 JAN,jul *", "2024-01-01 00:00:00", {"2024-07-01 00:00:00", "2025-01-01 00:00:00"}},
      {"0 0 1 Mar-May *",
       "2024-01-01 00:00:00",
       {"2024-03-01 00:00:00", "2024-04-01 00:00:00", "2024-05-01 00:00:00",
        "2025-03-01 00:00:00"}},
      {"0 0 * * MON-FRI",
       "2024-01-05 00:00:00",
       {"2024-01-08 00:00:00", "2024-01-09 00:00:00"}},  // Friday -> Monday
      {"0 0 * * sun,Sat", "2024-01-01 00:00:00", {"2024-01-06 00:00:00", "2024-01-07 00:00:00"}},
      {"0 0 * * FRI-SUN",  // SUN read as 0 would make this range run backwards
       "2024-01-01 00:00:00",
       {"2024-01-05 00:00:00", "2024-01-06 00:00:00"}},
  });
}

TEST(CronSchedule, Macros) {
  runTable({
      {"@hourly", "2024-01-01 00:30:00", {"2024-01-01 01:00:00", "2024-01-01 02:00:00"}},
      {"@daily", "2024-01-01 00:30:00", {"2024-01-02 00:00:00"}},
      {"@midnight", "2024-01-01 00:30:00", {"2024-01-02 00:00:00"}},
      {"@weekly", "2024-01-01 00:30:00", {"2024-01-07 00:00:00", "2024-01-14 00:00:00"}},
      {"@monthly", "2024-01-01 00:30:00", {"2024-02-01 00:00:00"}},
      {"@yearly", "2024-01-01 00:30:00", {"2025-01-01 00:00:00"}},
      {"@annually", "2024-01-01 00:30:00", {"2025-01-01 00:00:00"}},
      {"  @DAILY ", "2024-01-01 00:30:00", {"2024-01-02 00:00:00"}},
  });
  EXPECT_TRUE(CronSchedule::parse("@hourly")->wildcard());
  EXPECT_FALSE(CronSchedule::parse("@daily")->wildcard());
}

TEST(CronSchedule, DayOfMonthAndDayOfWeekUnionWhenBothRestricted) {
  runTable({
      // Both restricted: the 13th of any month OR any Friday (2024-09-13 is a Friday).
      {"0 0 13 * FRI",
       "2024-09-01 00:00:00",
       {"2024-09-06 00:00:00", "2024-09-13 00:00:00", "2024-09-20 00:00:00", "2024-09-27 00:00:00",
        "2024-10-04 00:00:00", "2024-10-11 00:00:00", "2024-10-13 00:00:00"}},
      // Only one restricted: that one alone decides.
      {"0 0 13 * *", "2024-09-01 00:00:00", {"2024-09-13 00:00:00", "2024-10-13 00:00:00"}},
      {"0 0 * * 5", "2024-09-01 00:00:00", {"2024-09-06 00:00:00", "2024-09-13 00:00:00"}},
      // A field starting with `*` counts as unrestricted for the rule even when stepped, as in
      // Vixie cron: days 1, 11, 21, 31 that are also Mondays.
      {"0 0 */10 * 1",
       "2023-12-31 00:00:00",
       {"2024-01-01 00:00:00", "2024-03-11 00:00:00", "2024-04-01 00:00:00"}},
      // Names on both sides, and the union across a month with no 31st.
      {"0 0 31 * MON", "2024-04-25 00:00:00", {"2024-04-29 00:00:00", "2024-05-06 00:00:00"}},
  });
}

TEST(CronSchedule, LeapDaysAreFoundWithoutScanning) {
  runTable({
      {"0 0 29 2 *",
       "2024-03-01 00:00:00",
       {"2028-02-29 00:00:00", "2032-02-29 00:00:00", "2036-02-29 00:00:00"}},
      // 2100 is not a leap year: eight years between firings.
      {"0 0 29 2 *", "2096-03-01 00:00:00", {"2104-02-29 00:00:00"}},
      {"0 0 28-29 2 *",
       "2023-02-28 00:00:00",
       {"2024-02-28 00:00:00", "2024-02-29 00:00:00", "2025-02-28 00:00:00"}},
  });
  // The same in a zone with daylight saving: each period is skipped by fields, not minutes.
  runTable({{"0 0 29 2 *", "2096-03-01 00:00:00", {"2104-02-29 05:00:00"}}}, "America/New_York");
  auto schedule = CronSchedule::parse("0 0 29 2 *").value();
  auto zone = CronZone::find("Europe/Berlin").value();
  const auto started = steady_clock::now();
  UnixSeconds t = at("2001-01-01 00:00:00");
  for (int i = 0; i < 2000; ++i) t = schedule.next(at("2001-01-01 00:00:00"), zone).value();
  const auto took = steady_clock::now() - started;
  EXPECT_EQ(show(t), "2004-02-28 23:00:00");
  // A minute-by-minute walk needs ~1.6 million steps per call; this allows ~1 ms per call
  // on a loaded machine.
  EXPECT_LT(took, seconds(2)) << duration_cast<milliseconds>(took).count() << " ms";
}

TEST(CronSchedule, ErrorsNameTheFieldAndTheToken) {
  struct Bad {
    const char* expr;
    const char* message;
  };
  const std::vector<Bad> cases = {
      {"", "expected 5 fields"},
      {"* * * *", "got 4 in \"* * * *\""},
      {"* * * * * * *", "got 7"},
      {"61 * * * *", "minute field: \"61\" is out of range 0-59"},
      {"* 24 * * *", "hour field: \"24\" is out of range 0-23"},
      {"* * 0 * *", "day-of-month field: \"0\" is out of range 1-31"},
      {"* * 32 * *", "day-of-month field: \"32\" is out of range 1-31"},
      {"* * * 13 *", "month field: \"13\" is out of range 1-12"},
      {"* * * * 8", "day-of-week field: \"8\" is out of range 0-7"},
      {"60 * * * * *", "second field: \"60\" is out of range 0-59"},
      {"* * * FOO *", "month field: \"FOO\" is not a month number or name"},
      {"* * * * MONDAY", "day-of-week field: \"MONDAY\" is not a weekday number or name"},
      {"* * * * JAN", "day-of-week field: \"JAN\" is not a weekday number or name"},
      {"* * MON * *", "day-of-month field: \"MON\" is not a number"},
      {"a * * * *", "minute field: \"a\" is not a number"},
      {"1,,2 * * * *", "minute field: empty list item in \"1,,2\""},
      {"1, * * * *", "minute field: empty list item"},
      {"*/0 * * * *", "minute field: step \"0\" in \"*/0\" must be a number 1-59"},
      {"*/ * * * *", "minute field: step \"\" in \"*/\""},
      {"*/x * * * *", "minute field: step \"x\""},
      {"* */24 * * *", "hour field: step \"24\" in \"*/24\" must be a number 1-23"},
      {"1/2/3 * * * *", "minute field: \"1/2/3\" has more than one step"},
      {"5-3 * * * *", "minute field: range \"5-3\" runs backwards"},
      {"1-2-3 * * * *", "minute field: \"1-2-3\" is not a value or a range A-B"},
      {"-1 * * * *", "minute field: \"\" is not a number"},
      {"99999999999999999999 * * * *", "minute field: \"99999999999999999999\" is out of range"},
      {"? * * * *", "minute field: \"?\" is not a number"},
      {"* * 30 2 *", "day-of-month field: \"30\" never occurs in the selected months"},
      {"* * 31 4,6,9,11 *", "day-of-month field: \"31\" never occurs"},
      {"@reboot", "unknown macro \"@reboot\""},
      {"@daily extra", "expected 5 fields"},
      {"\x01 * * * *", "minute field: \"\\x01\" is not a number"},
  };
  for (const Bad& c : cases) {
    auto parsed = CronSchedule::parse(c.expr);
    ASSERT_FALSE(parsed) << "accepted \"" << c.expr << "\"";
    EXPECT_NE(parsed.error().find(c.message), std::string::npos)
        << "for \"" << c.expr << "\": " << parsed.error();
  }
  // Impossible only as day-of-month alone: with a weekday restricted too, the union fires.
  EXPECT_TRUE(CronSchedule::parse("0 0 30 2 MON"));
  EXPECT_TRUE(CronSchedule::parse("0 0 29 2 *"));
}

TEST(CronZone, UnknownNamesAreErrors) {
  for (const char* name : {"", "Mars/Olympus_Mons", "../../etc/passwd", "america/new_york"}) {
    auto zone = CronZone::find(name);
    EXPECT_FALSE(zone) << name;
    if (!zone) {
      EXPECT_NE(zone.error().find(std::string(name).empty() ? "empty" : name), std::string::npos)
          << zone.error();
    }
  }
  EXPECT_EQ(CronZone::find("Asia/Kolkata")->name(), "Asia/Kolkata");
  EXPECT_TRUE(CronZone::find("UTC"));
}

TEST(CronSchedule, ZoneOffsetsWithoutDaylightSaving) {
  runTable({{"30 9 * * *", "2024-01-01 00:00:00", {"2024-01-01 04:00:00"}}}, "Asia/Kolkata");
  runTable({{"0 0 * * *", "2024-01-01 00:00:00", {"2024-01-01 18:15:00"}}}, "Asia/Kathmandu");
  runTable({{"0 9 * * *", "2024-01-01 00:00:00", {"2024-01-01 09:00:00"}}}, "UTC");
}

// America/New_York, 2024: clocks jump 02:00 EST -> 03:00 EDT on 03-10 (07:00 UTC) and fall back
// 02:00 EDT -> 01:00 EST on 11-03 (06:00 UTC).
TEST(CronScheduleDst, NewYorkSpringForwardGap) {
  runTable(
      {
          // Fixed time inside the gap: once, at the first instant after it (03:00 EDT).
          {"30 2 * * *", "2024-03-09 12:00:00", {"2024-03-10 07:00:00", "2024-03-11 06:30:00"}},
          {"0 2 * * *", "2024-03-09 12:00:00", {"2024-03-10 07:00:00", "2024-03-11 06:00:00"}},
          // Several matches in the gap still fire once; 03:00 itself is the same instant.
          {"0,15,30,45 2,3 * * *",
           "2024-03-10 06:50:00",
           {"2024-03-10 07:00:00", "2024-03-10 07:15:00", "2024-03-10 07:30:00"}},
          {"0 30 2 * * *", "2024-03-10 00:00:00", {"2024-03-10 07:00:00"}},
          // Fixed times around the gap are untouched.
          {"30 1 * * *", "2024-03-10 00:00:00", {"2024-03-10 06:30:00", "2024-03-11 05:30:00"}},
          {"30 3 * * *", "2024-03-10 00:00:00", {"2024-03-10 07:30:00"}},
          // Wildcard schedules fire at real instants only: 02:xx does not exist that night.
          {"30 * * * *",
           "2024-03-10 06:00:00",
           {"2024-03-10 06:30:00", "2024-03-10 07:30:00", "2024-03-10 08:30:00"}},
          {"*/30 * * * *", "2024-03-10 06:40:00", {"2024-03-10 07:00:00", "2024-03-10 07:30:00"}},
          {"*/15 2 * * *",
           "2024-03-10 00:00:00",
           {"2024-03-11 06:00:00"}},  // the whole 02:xx hour is gone that night
      },
      "America/New_York");
}

TEST(CronScheduleDst, NewYorkFallBackRepeat) {
  runTable(
      {
          // Fixed time in the repeated hour: the first occurrence (EDT) only.
          {"30 1 * * *", "2024-11-03 04:00:00", {"2024-11-03 05:30:00", "2024-11-04 06:30:00"}},
          {"0 30 1 * * *", "2024-11-03 05:31:00", {"2024-11-04 06:30:00"}},
          // Wildcard: every real instant whose wall time matches, so 01:30 fires twice.
          {"30 * * * *",
           "2024-11-03 04:00:00",
           {"2024-11-03 04:30:00", "2024-11-03 05:30:00", "2024-11-03 06:30:00",
            "2024-11-03 07:30:00"}},
          {"@hourly",
           "2024-11-03 04:30:00",
           {"2024-11-03 05:00:00", "2024-11-03 06:00:00", "2024-11-03 07:00:00"}},
          {"*/20 1 * * *",
           "2024-11-03 05:00:00",
           {"2024-11-03 05:20:00", "2024-11-03 05:40:00", "2024-11-03 06:00:00",
            "2024-11-03 06:20:00", "2024-11-03 06:40:00", "2024-11-04 06:00:00"}},
          // A start inside the second pass of a fixed time does not fire it again.
          {"45 1 * * *", "2024-11-03 06:10:00", {"2024-11-04 06:45:00"}},
      },
      "America/New_York");
}

// The tz database beyond 2037 (where old zone files stop listing transitions) still has DST.
TEST(CronScheduleDst, FarFutureTransitions) {
  runTable({{"30 2 * * *", "2050-03-12 12:00:00", {"2050-03-13 07:00:00"}},
            {"30 1 * * *", "2050-11-06 04:00:00", {"2050-11-06 05:30:00", "2050-11-07 06:30:00"}},
            {"30 * * * *", "2050-11-06 04:50:00", {"2050-11-06 05:30:00", "2050-11-06 06:30:00"}}},
           "America/New_York");
  runTable({{"15 2 * * *", "2060-10-02 12:00:00", {"2060-10-02 15:30:00"}}}, "Australia/Lord_Howe");
  runTable({{"0 12 * * *", "2060-07-01 00:00:00", {"2060-07-01 06:30:00"}}}, "Asia/Kolkata");
}

// Europe/Berlin, 2024: 02:00 CET -> 03:00 CEST on 03-31 (01:00 UTC); 03:00 CEST -> 02:00 CET on
// 10-27 (01:00 UTC).
TEST(CronScheduleDst, BerlinGapAndRepeat) {
  runTable(
      {
          {"30 2 * * *", "2024-03-30 12:00:00", {"2024-03-31 01:00:00", "2024-04-01 00:30:00"}},
          {"30 2 * * *", "2024-10-26 12:00:00", {"2024-10-27 00:30:00", "2024-10-28 01:30:00"}},
          {"30 * * * *",
           "2024-10-27 00:00:00",
           {"2024-10-27 00:30:00", "2024-10-27 01:30:00", "2024-10-27 02:30:00"}},
          {"30 * * * *",
           "2024-03-31 00:00:00",
           {"2024-03-31 00:30:00", "2024-03-31 01:30:00"}},  // 01:30 UTC is 03:30 CEST
      },
      "Europe/Berlin");
}

// Australia/Lord_Howe moves by 30 minutes: +11 -> +10:30 at 02:00 on 2024-04-07 (15:00 UTC
// the day before), +10:30 -> +11 at 02:00 on 2024-10-06 (15:30 UTC the day before).
TEST(CronScheduleDst, LordHoweHalfHourShift) {
  runTable(
      {
          // 02:15 is inside the half-hour gap: fires at 02:30 LHDT.
          {"15 2 * * *", "2024-10-05 12:00:00", {"2024-10-05 15:30:00", "2024-10-06 15:15:00"}},
          // 01:45 occurs at +11 and again at +10:30: the first only.
          {"45 1 * * *", "2024-04-06 12:00:00", {"2024-04-06 14:45:00", "2024-04-07 15:15:00"}},
          {"*/15 * * * *",
           "2024-04-06 14:50:00",
           {"2024-04-06 15:00:00", "2024-04-06 15:15:00", "2024-04-06 15:30:00"}},
          {"*/15 * * * *",
           "2024-10-05 15:20:00",
           {"2024-10-05 15:30:00", "2024-10-05 15:45:00"}},  // 02:00, 02:15 never happen
      },
      "Australia/Lord_Howe");
}

// Random and mutated text never crashes the parser; every accepted schedule answers next()
// consistently. The seed is fixed so a failure reproduces.
TEST(CronSchedule, FuzzedInputNeverCrashes) {
  std::mt19937_64 rng(20261201);
  // Values around and beyond each field's range, forms from the grammar, and junk.
  auto value = [&] {
    const int v = static_cast<int>(rng() % 66);
    switch (rng() % 8) {
      case 0:
        return std::string(rng() % 2 ? "JAN" : "fri");
      case 1:
        return std::string("x");
      default:
        return std::to_string(v < 40 ? v % 13 : v);
    }
  };
  auto item = [&]() -> std::string {
    switch (rng() % 6) {
      case 0:
        return "*";
      case 1:
        return "*/" + value();
      case 2:
        return value();
      case 3:
        return value() + "-" + value();
      case 4:
        return value() + "-" + value() + "/" + value();
      default:
        return value() + "/" + value();
    }
  };
  const std::vector<std::string> pieces = {
      "*",  "*/", "/",  "-",  ",",    " ",    "\t",         "0",   "1",   "7", "12",     "23",
      "29", "31", "59", "60", "99",   "JAN",  "dec",        "Mon", "SUN", "@", "@daily", "@hourly",
      "?",  "L",  "W",  "#",  "\x00", "\xff", "9999999999", "2-5", "5-2", "a"};
  size_t accepted = 0;
  auto zone = CronZone::find("Europe/Berlin").value();
  for (int i = 0; i < 20000; ++i) {
    std::string expr;
    if (i % 2 == 0) {  // shaped like an expression: 5 or 6 fields of field-like pieces
      const int nfields = 5 + static_cast<int>(rng() % 2);
      for (int f = 0; f < nfields; ++f) {
        const int n = 1 + static_cast<int>(rng() % 3);
        for (int p = 0; p < n; ++p) expr += (p > 0 ? "," : "") + (rng() % 2 ? "*" : item());
        expr += ' ';
      }
    }
    const int parts = i % 2 == 0 ? 0 : static_cast<int>(rng() % 16);
    for (int p = 0; p < parts; ++p) {
      if (rng() % 4 == 0) {
        expr += static_cast<char>(rng() % 256);
      } else {
        expr += pieces[rng() % pieces.size()];
        if (rng() % 2) expr += ' ';
      }
    }
    auto parsed = CronSchedule::parse(expr);
    if (!parsed) {
      EXPECT_FALSE(parsed.error().empty());
      continue;
    }
    ++accepted;
    const UnixSeconds after = at("2024-01-01 00:00:00") + seconds(rng() % (20LL * 365 * 86400));
    for (const CronZone& z : {CronZone::utc(), zone}) {
      auto next = parsed->next(after, z);
      ASSERT_TRUE(next) << expr;
      EXPECT_GT(*next, after) << expr;
      EXPECT_EQ(parsed->next(*next - seconds(1), z), next) << expr;
    }
  }
  EXPECT_GT(accepted, 200u);  // the generator reaches the parser's accepting paths too
}

}  // namespace
}  // namespace drover::base
