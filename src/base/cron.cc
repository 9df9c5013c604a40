#include "base/cron.h"

#include <date/tz.h>
#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cstdint>
#include <fstream>
#include <iterator>
#include <vector>

#include "base/cron_posix_tz.h"

namespace drover::base {
namespace {

using std::chrono::seconds;

struct FieldSpec {
  const char* name;
  int min;
  int max;
  const std::array<const char*, 12>* names;  // names[i] stands for min + i; nullptr: numbers only
};

constexpr std::array<const char*, 12> kMonthNames = {"JAN", "FEB", "MAR", "APR", "MAY", "JUN",
                                                     "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"};
constexpr std::array<const char*, 12> kWeekdayNames = {"SUN", "MON", "TUE", "WED",
                                                       "THU", "FRI", "SAT", nullptr};

constexpr FieldSpec kSecond{"second", 0, 59, nullptr};
constexpr FieldSpec kMinute{"minute", 0, 59, nullptr};
constexpr FieldSpec kHour{"hour", 0, 23, nullptr};
constexpr FieldSpec kDayOfMonth{"day-of-month", 1, 31, nullptr};
constexpr FieldSpec kMonth{"month", 1, 12, &kMonthNames};
constexpr FieldSpec kDayOfWeek{"day-of-week", 0, 7, &kWeekdayNames};  // 7 folds into 0

// A token as it goes into an error message: quoted, with control and non-ASCII bytes escaped
// so that any input makes a printable message.
std::string quote(std::string_view s) {
  std::string out = "\"";
  for (unsigned char c : s.substr(0, 64)) {
    if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') {
      out += static_cast<char>(c);
    } else {
      out += fmt::format("\\x{:02x}", c);
    }
  }
  if (s.size() > 64) out += "...";
  return out + "\"";
}

std::vector<std::string_view> split(std::string_view s, char sep) {
  std::vector<std::string_view> parts;
  size_t start = 0;
  for (size_t i = 0; i <= s.size(); ++i) {
    if (i == s.size() || s[i] == sep) {
      parts.push_back(s.substr(start, i - start));
      start = i + 1;
    }
  }
  return parts;
}

tl::expected<int, std::string> parseValue(std::string_view tok, const FieldSpec& f) {
  if (!tok.empty() &&
      std::all_of(tok.begin(), tok.end(), [](unsigned char c) { return std::isdigit(c) != 0; })) {
    if (tok.size() > 4) {
      return tl::make_unexpected(fmt::format("{} is out of range {}-{}", quote(tok), f.min, f.max));
    }
    int v = 0;
    for (char c : tok) v = v * 10 + (c - '0');
    if (v < f.min || v > f.max) {
      return tl::make_unexpected(fmt::format("{} is out of range {}-{}", quote(tok), f.min, f.max));
    }
    return v;
  }
  if (f.names != nullptr && tok.size() == 3) {
    for (size_t i = 0; i < f.names->size() && (*f.names)[i] != nullptr; ++i) {
      const char* name = (*f.names)[i];
      bool same = true;
      for (size_t k = 0; k < 3; ++k) {
        same = same && std::toupper(static_cast<unsigned char>(tok[k])) == name[k];
      }
      if (same) return f.min + static_cast<int>(i);
    }
  }
  return tl::make_unexpected(fmt::format("{} is not a {}", quote(tok),
                                         f.names == &kMonthNames     ? "month number or name"
                                         : f.names == &kWeekdayNames ? "weekday number or name"
                                                                     : "number"));
}

// One field into a bit mask (bit v set = value v allowed). Errors are prefixed by the caller.
tl::expected<uint64_t, std::string> parseField(std::string_view text, const FieldSpec& f) {
  uint64_t mask = 0;
  for (std::string_view item : split(text, ',')) {
    if (item.empty()) return tl::make_unexpected(fmt::format("empty list item in {}", quote(text)));
    std::vector<std::string_view> step_parts = split(item, '/');
    if (step_parts.size() > 2) {
      return tl::make_unexpected(fmt::format("{} has more than one step", quote(item)));
    }
    std::string_view range = step_parts[0];
    int step = 1;
    if (step_parts.size() == 2) {
      std::string_view s = step_parts[1];
      bool digits = !s.empty() && s.size() <= 4 &&
                    std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
      step = 0;
      for (char c : digits ? s : std::string_view()) step = step * 10 + (c - '0');
      if (!digits || step < 1 || step > f.max) {
        return tl::make_unexpected(
            fmt::format("step {} in {} must be a number 1-{}", quote(s), quote(item), f.max));
      }
    }
    int lo = f.min;
    int hi = f.max;
    if (range == "*") {
      if (&f == &kDayOfWeek) hi = 6;  // 7 is Sunday again
    } else {
      std::vector<std::string_view> ends = split(range, '-');
      if (ends.size() > 2) {
        return tl::make_unexpected(fmt::format("{} is not a value or a range A-B", quote(range)));
      }
      auto first = parseValue(ends[0], f);
      if (!first) return tl::make_unexpected(first.error());
      lo = *first;
      if (ends.size() == 2) {
        auto last = parseValue(ends[1], f);
        if (!last) return tl::make_unexpected(last.error());
        hi = *last;
        if (&f == &kDayOfWeek && hi == 0 && lo > 0) hi = 7;  // FRI-SUN: Sunday as 7
        if (hi < lo) {
          return tl::make_unexpected(fmt::format("range {} runs backwards", quote(range)));
        }
      } else if (step_parts.size() == 1) {
        hi = lo;  // a single value; `A/S` runs from A to the field's end
      }
    }
    for (int v = lo; v <= hi; v += step) mask |= uint64_t{1} << v;
  }
  if (&f == &kDayOfWeek && (mask & (uint64_t{1} << 7)) != 0) {
    mask = (mask | 1) & ~(uint64_t{1} << 7);
  }
  return mask;
}

std::string_view expandMacro(std::string_view m) {
  if (m == "@yearly" || m == "@annually") return "0 0 1 1 *";
  if (m == "@monthly") return "0 0 1 * *";
  if (m == "@weekly") return "0 0 * * 0";
  if (m == "@daily" || m == "@midnight") return "0 0 * * *";
  if (m == "@hourly") return "0 * * * *";
  return {};
}

int lastDay(int y, int m) {
  return static_cast<int>(
      unsigned((date::year(y) / date::month(static_cast<unsigned>(m)) / date::last).day()));
}

// The lowest set bit at or above `from`, or -1.
template <size_t N>
int nextBit(const std::bitset<N>& bits, int from) {
  for (int i = std::max(from, 0); i < static_cast<int>(N); ++i) {
    if (bits[static_cast<size_t>(i)]) return i;
  }
  return -1;
}

constexpr int kHorizonYears = 30;

}  // namespace

// The wall-clock search: the first local time in [lo, hi) that matches the fields, skipping a
// whole field at a time (a month that is not selected costs one step, a day one step, ...).
class CronMatcher {
 public:
  explicit CronMatcher(const CronSchedule& s) : s_(s) {}

  std::optional<date::local_seconds> first(date::local_seconds lo, date::local_seconds hi) const {
    if (lo >= hi) return std::nullopt;
    const date::local_days lo_day = date::floor<date::days>(lo);
    const date::year_month_day ymd(lo_day);
    int y = static_cast<int>(ymd.year());
    int mo = static_cast<int>(unsigned(ymd.month()));
    int d = static_cast<int>(unsigned(ymd.day()));
    const auto tod = date::hh_mm_ss<seconds>(lo - lo_day);
    int h = static_cast<int>(tod.hours().count());
    int mi = static_cast<int>(tod.minutes().count());
    int se = static_cast<int>(tod.seconds().count());
    const int last_year = y + kHorizonYears + 1;

    auto nextMonth = [&] {
      d = 1, h = 0, mi = 0, se = 0;
      if (++mo > 12) mo = 1, ++y;
    };
    auto nextDay = [&] {
      h = 0, mi = 0, se = 0;
      if (++d > lastDay(y, mo)) nextMonth();
    };
    while (y <= last_year) {
      if (!s_.months_[static_cast<size_t>(mo)]) {
        int m2 = nextBit(s_.months_, mo + 1);
        if (m2 < 0) {
          mo = 12;
        } else {
          mo = m2 - 1;
        }
        nextMonth();
        continue;
      }
      const date::local_days day =
          date::local_days(date::year(y) / date::month(static_cast<unsigned>(mo)) /
                           date::day(static_cast<unsigned>(d)));
      if (day + std::chrono::hours(h) + std::chrono::minutes(mi) + seconds(se) >= hi) {
        return std::nullopt;
      }
      const bool dom = s_.days_[static_cast<size_t>(d)];
      const bool dow = s_.weekdays_[date::weekday(day).c_encoding()];
      if (!(s_.day_union_ ? (dom || dow) : (dom && dow))) {
        nextDay();
        continue;
      }
      if (!s_.hours_[static_cast<size_t>(h)]) {
        h = nextBit(s_.hours_, h + 1);
        mi = 0, se = 0;
        if (h < 0) nextDay();
        continue;
      }
      if (!s_.minutes_[static_cast<size_t>(mi)]) {
        mi = nextBit(s_.minutes_, mi + 1);
        se = 0;
        if (mi < 0) carryHour(h, mi, se, nextDay);
        continue;
      }
      if (!s_.seconds_[static_cast<size_t>(se)]) {
        se = nextBit(s_.seconds_, se + 1);
        if (se < 0) {
          se = 0;
          if (++mi == 60) carryHour(h, mi, se, nextDay);
        }
        continue;
      }
      return day + std::chrono::hours(h) + std::chrono::minutes(mi) + seconds(se);
    }
    return std::nullopt;
  }

 private:
  template <typename F>
  static void carryHour(int& h, int& mi, int& se, F& next_day) {
    mi = 0, se = 0;
    if (++h == 24) next_day();
  }

  const CronSchedule& s_;
};

// The date library, reading the system's zone files, knows only the transitions a file lists
// and keeps the last offset forever after. Zone files (TZif version 2+) end with a POSIX TZ
// string ("EST5EDT,M3.2.0,M11.1.0") for the times past their list; from the start of the last
// listed period on, that rule answers instead.
struct CronZone::Rules {
  const date::time_zone* zone = nullptr;
  std::shared_ptr<const cron_detail::PosixRule> tail;
  UnixSeconds tail_from = UnixSeconds::max();

  // The period of constant UTC offset that holds `t`.
  struct Period {
    UnixSeconds begin;
    UnixSeconds end;
    seconds offset;
  };
  Period info(UnixSeconds t) const {
    if (tail == nullptr || t < tail_from) {
      const date::sys_info i = zone->get_info(t);
      return {i.begin, i.end, i.offset};
    }
    const auto p = cron_detail::posixPeriod(*tail, t.time_since_epoch().count());
    return {UnixSeconds(seconds(p.begin)), UnixSeconds(seconds(p.end)), seconds(p.offset)};
  }
};

namespace {

// The TZ string at the end of a TZif v2+ file: the text between its last two newlines.
std::string tzifFooter(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::string data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (data.size() < 6 || data.compare(0, 4, "TZif") != 0 || data[4] < '2' || data.back() != '\n') {
    return {};
  }
  size_t start = data.rfind('\n', data.size() - 2);
  if (start == std::string::npos) return {};
  return data.substr(start + 1, data.size() - start - 2);
}

}  // namespace

tl::expected<CronZone, std::string> CronZone::find(std::string_view name) {
  if (name.empty()) return tl::make_unexpected(std::string("empty time zone name"));
  try {
    auto rules = std::make_shared<Rules>();
    rules->zone = date::locate_zone(name);
    // The date library loads a zone's transitions on first use: do it here, where a failure is
    // an error value, so that next() never meets an exception.
    const date::sys_info last =
        rules->zone->get_info(date::sys_days(date::year(2400) / date::January / 1));
    const std::string footer =
        tzifFooter("/usr/share/zoneinfo/" + std::string(rules->zone->name()));
    // A rule string the library cannot read leaves the listed periods alone.
    rules->tail = footer.empty() ? nullptr : cron_detail::parsePosixRule(footer);
    if (rules->tail != nullptr) rules->tail_from = last.begin;
    return CronZone(std::move(rules), std::string(name));
  } catch (const std::exception& e) {
    return tl::make_unexpected(fmt::format("unknown time zone {} ({})", quote(name), e.what()));
  }
}

CronZone CronZone::utc() { return CronZone(nullptr, "UTC"); }

tl::expected<CronSchedule, std::string> CronSchedule::parse(std::string_view expr) {
  std::vector<std::string_view> fields;
  size_t i = 0;
  while (i < expr.size()) {
    while (i < expr.size() && (expr[i] == ' ' || expr[i] == '\t')) ++i;
    size_t start = i;
    while (i < expr.size() && expr[i] != ' ' && expr[i] != '\t') ++i;
    if (i > start) fields.push_back(expr.substr(start, i - start));
  }
  if (fields.size() == 1 && fields[0].front() == '@') {
    std::string lower(fields[0]);
    for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    std::string_view expanded = expandMacro(lower);
    if (expanded.empty()) {
      return tl::make_unexpected(fmt::format(
          "unknown macro {} (known: @yearly, @annually, @monthly, @weekly, @daily, @midnight, "
          "@hourly)",
          quote(fields[0])));
    }
    auto parsed = parse(expanded);
    if (parsed) parsed->text_ = std::string(fields[0]);
    return parsed;
  }
  if (fields.size() != 5 && fields.size() != 6) {
    return tl::make_unexpected(fmt::format(
        "expected 5 fields (minute hour day-of-month month day-of-week), or 6 with seconds "
        "first, or a macro such as @daily; got {} in {}",
        fields.size(), quote(expr)));
  }
  const size_t base = fields.size() - 5;
  std::array<const FieldSpec*, 6> specs = {&kSecond,     &kMinute, &kHour,
                                           &kDayOfMonth, &kMonth,  &kDayOfWeek};
  std::array<uint64_t, 6> masks{};
  masks[0] = 1;  // 5 fields: second 0
  for (size_t k = 0; k < fields.size(); ++k) {
    const FieldSpec& f = *specs[k + 1 - base];
    auto mask = parseField(fields[k], f);
    if (!mask) return tl::make_unexpected(fmt::format("{} field: {}", f.name, mask.error()));
    masks[k + 1 - base] = *mask;
  }
  CronSchedule s;
  s.text_ = std::string(expr);
  s.seconds_ = std::bitset<60>(masks[0]);
  s.minutes_ = std::bitset<60>(masks[1]);
  s.hours_ = std::bitset<24>(masks[2]);
  s.days_ = std::bitset<32>(masks[3]);
  s.months_ = std::bitset<13>(masks[4]);
  s.weekdays_ = std::bitset<7>(masks[5]);
  std::string_view dom_text = fields[base + 2];
  std::string_view dow_text = fields[base + 4];
  s.day_union_ = dom_text.front() != '*' && dow_text.front() != '*';
  s.wildcard_ = fields[base].front() == '*' || fields[base + 1].front() == '*';
  if (!s.day_union_) {
    // Only day-of-month can make a schedule that never fires (the weekday field, even when it
    // must match too, meets every date within the calendar's 28-year cycle).
    bool possible = false;
    for (int m = 1; m <= 12; ++m) {
      possible = possible || (s.months_[static_cast<size_t>(m)] &&
                              nextBit(s.days_, 1) <= lastDay(2000, m));  // 2000: a leap year
    }
    if (!possible) {
      return tl::make_unexpected(fmt::format(
          "day-of-month field: {} never occurs in the selected months", quote(dom_text)));
    }
  }
  return s;
}

std::optional<UnixSeconds> CronSchedule::next(UnixSeconds after, const CronZone& zone) const {
  const CronMatcher matcher(*this);
  const UnixSeconds start = after + seconds(1);
  if (zone.rules_ == nullptr) {  // UTC: one period, no daylight saving
    auto local =
        matcher.first(date::local_seconds(start.time_since_epoch()), date::local_seconds::max());
    if (!local) return std::nullopt;
    return UnixSeconds(local->time_since_epoch());
  }
  // Walk the zone's periods of constant UTC offset, from the one holding `start`. Within one
  // period wall time and UTC move together, so the first match there is the answer; the only
  // extra cases sit at a period's start: a gap (offset grew) and a repeat (offset shrank).
  const CronZone::Rules& tz = *zone.rules_;
  CronZone::Rules::Period period = tz.info(start);
  // The offset before the period: only its last change can matter (a repeat after `start`).
  seconds prev_offset = period.begin > start - date::days(2)
                            ? tz.info(period.begin - seconds(1)).offset
                            : period.offset;
  const UnixSeconds horizon = start + date::years(kHorizonYears);
  auto toLocal = [](UnixSeconds t, seconds offset) {
    return date::local_seconds(t.time_since_epoch() + offset);
  };
  while (period.begin <= horizon) {
    const seconds offset = period.offset;
    const UnixSeconds begin = period.begin;
    if (!wildcard_ && offset > prev_offset && begin >= start) {
      // Spring forward: wall times [begin + prev, begin + offset) never happen; a fixed-time
      // schedule that matches one of them fires once, at the first instant after the gap.
      if (matcher.first(toLocal(begin, prev_offset), toLocal(begin, offset))) return begin;
    }
    UnixSeconds lo = std::max(start, begin);
    if (!wildcard_ && offset < prev_offset) {
      // Fall back: the period's first (prev - offset) repeats wall times already lived in the
      // previous period; a fixed-time schedule fires only at their first occurrence.
      lo = std::max(lo, begin + (prev_offset - offset));
    }
    if (lo < period.end) {
      if (auto local = matcher.first(toLocal(lo, offset), toLocal(period.end, offset))) {
        return UnixSeconds(local->time_since_epoch() - offset);
      }
    }
    if (period.end > horizon) break;
    prev_offset = offset;
    period = tz.info(period.end);
  }
  return std::nullopt;
}

}  // namespace drover::base
