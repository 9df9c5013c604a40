#include "base/rfc3339.h"

#include <gtest/gtest.h>

namespace drover::base {
namespace {

TEST(Rfc3339, ParsesUtcOffsetsAndFractions) {
  EXPECT_EQ(parseRfc3339("1970-01-01T00:00:00Z"), 0);
  EXPECT_EQ(parseRfc3339("2026-12-02T04:43:45Z"), int64_t{1796186625} * 1000);
  EXPECT_EQ(parseRfc3339("2026-12-02T05:43:45+01:00"), int64_t{1796186625} * 1000);
  EXPECT_EQ(parseRfc3339("2026-12-01T23:13:45-05:30"), int64_t{1796186625} * 1000);
  EXPECT_EQ(parseRfc3339("2026-12-02t04:43:45.25z"), int64_t{1796186625} * 1000 + 250);
  EXPECT_EQ(parseRfc3339("2026-12-02 04:43:45.123999Z"), int64_t{1796186625} * 1000 + 123);
  EXPECT_EQ(parseRfc3339("2024-02-29T12:00:00Z"), int64_t{1709208000} * 1000);
  EXPECT_EQ(parseRfc3339("1969-12-31T23:59:59.500Z"), -500);
}

TEST(Rfc3339, RefusesMalformedTimes) {
  for (const char* bad :
       {"", "2026-12-02", "2026-12-02T04:43:45", "2026-12-02T04:43Z", "2026-13-02T04:43:45Z",
        "2026-02-30T04:43:45Z", "2025-02-29T00:00:00Z", "2026-12-02T24:00:00Z",
        "2026-12-02T04:60:00Z", "2026-12-02T04:43:60Z", "2026-12-02T04:43:45.Z",
        "2026-12-02T04:43:45+0100", "2026-12-02T04:43:45+01", "2026-12-02T04:43:45Zjunk",
        "2026/12/02T04:43:45Z", "2026-12-02X04:43:45Z", "tomorrow", "2026-1a-02T04:43:45Z"}) {
    EXPECT_FALSE(parseRfc3339(bad)) << bad;
  }
}

TEST(Rfc3339, FormatsUtcMillisecondsThatParseBack) {
  EXPECT_EQ(formatRfc3339(0), "1970-01-01T00:00:00.000Z");
  EXPECT_EQ(formatRfc3339(int64_t{1796186625} * 1000 + 7), "2026-12-02T04:43:45.007Z");
  EXPECT_EQ(formatRfc3339(-500), "1969-12-31T23:59:59.500Z");
  for (int64_t ms : {int64_t{0}, int64_t{1}, int64_t{-1}, int64_t{1796186625123},
                     int64_t{951782400000}, int64_t{4102444799999}}) {
    EXPECT_EQ(parseRfc3339(formatRfc3339(ms)), ms) << ms;
  }
}

}  // namespace
}  // namespace drover::base
