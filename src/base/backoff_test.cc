#include "base/backoff.h"

#include <gtest/gtest.h>

namespace drover::base {
namespace {

TEST(Backoff, GrowsGeometricallyUpToTheCap) {
  Backoff b{milliseconds(100), seconds(1), 2.0, 0.0};
  EXPECT_EQ(b.delay(0), Duration::zero());
  EXPECT_EQ(b.delay(1), milliseconds(100));
  EXPECT_EQ(b.delay(2), milliseconds(200));
  EXPECT_EQ(b.delay(4), milliseconds(800));
  EXPECT_EQ(b.delay(5), seconds(1));
  EXPECT_EQ(b.delay(1000), seconds(1));
}

TEST(Backoff, JitterStaysWithinItsBand) {
  Backoff b{milliseconds(100), seconds(10), 2.0, 0.5};
  for (uint64_t seed = 1; seed < 200; ++seed) {
    Duration d = b.delay(3, seed);
    EXPECT_GE(d, milliseconds(200));
    EXPECT_LE(d, milliseconds(400));
  }
  EXPECT_NE(b.delay(3, 1), b.delay(3, 2));
}

}  // namespace
}  // namespace drover::base
