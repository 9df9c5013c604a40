// Test helper for cron_oracle_test.py: reads "EXPR<TAB>ZONE<TAB>UNIX_AFTER<TAB>COUNT" lines on
// stdin and prints, per line, "ok<TAB>T1 T2 ..." (the next COUNT firings, chained, in Unix
// seconds) or "error<TAB>MESSAGE".
#include <iostream>
#include <sstream>
#include <string>

#include "base/cron.h"

int main() {
  using drover::base::CronSchedule;
  using drover::base::CronZone;
  std::string line;
  while (std::getline(std::cin, line)) {
    std::istringstream in(line);
    std::string expr, zone_name, after_text, count_text;
    std::getline(in, expr, '\t');
    std::getline(in, zone_name, '\t');
    std::getline(in, after_text, '\t');
    std::getline(in, count_text);
    auto schedule = CronSchedule::parse(expr);
    auto zone = zone_name == "UTC" ? CronZone::utc() : CronZone::find(zone_name);
    if (!schedule || !zone) {
      std::cout << "error\t" << (!schedule ? schedule.error() : zone.error()) << "\n";
      continue;
    }
    drover::base::UnixSeconds t{std::chrono::seconds(std::stoll(after_text))};
    std::cout << "ok\t";
    for (int i = 0, n = std::stoi(count_text); i < n; ++i) {
      auto next = schedule->next(t, *zone);
      if (!next) break;
      t = *next;
      std::cout << (i > 0 ? " " : "") << t.time_since_epoch().count();
    }
    std::cout << "\n";
  }
  return 0;
}
