#include "base/stop_flag.h"

#include <gtest/gtest.h>

#include <csignal>
#include <thread>

namespace drover::base {
namespace {

using namespace std::chrono_literals;

TEST(StopFlag, TimesOutWhileNotRequested) {
  StopFlag stop;
  EXPECT_FALSE(stop.requested());
  EXPECT_FALSE(stop.waitFor(1ms));
  EXPECT_FALSE(stop.waitFor(0ms));
}

// Were the wait not woken, it would sleep for an hour and ctest's timeout would fail the test.
TEST(StopFlag, ARequestFromAnotherThreadWakesTheWaiter) {
  StopFlag stop;
  std::thread t([&] { stop.request(); });
  EXPECT_TRUE(stop.waitFor(std::chrono::hours(1)));
  t.join();
  EXPECT_TRUE(stop.requested());
  EXPECT_TRUE(stop.waitFor(std::chrono::hours(1)));  // stays requested
  stop.request();                                    // idempotent
  EXPECT_TRUE(static_cast<bool>(stop));
}

StopFlag* g_flag = nullptr;
void onUsr1(int) { g_flag->request(); }

TEST(StopFlag, ASignalHandlerCanRequest) {
  StopFlag stop;
  g_flag = &stop;
  auto previous = std::signal(SIGUSR1, onUsr1);
  errno = 1234;
  std::raise(SIGUSR1);
  EXPECT_EQ(errno, 1234);
  EXPECT_TRUE(stop.waitFor(std::chrono::hours(1)));
  std::signal(SIGUSR1, previous);
  g_flag = nullptr;
}

}  // namespace
}  // namespace drover::base
