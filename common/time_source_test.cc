#include <atomic>
#include <thread>
#include <vector>

#include "absl/synchronization/notification.h"
#include "common/real_time_source.h"
#include "common/simulated_time_source.h"
#include "gtest/gtest.h"

namespace wake::common {
namespace {

TEST(SimulatedTimeSourceTest, TimersFireInDeadlineOrderWithClockAtDeadline) {
  SimulatedTimeSource time;
  const MonotonicTime start = time.MonotonicNow();
  std::vector<std::pair<int, absl::Duration>> fired;
  TimerPtr a = time.CreateTimer([&] { fired.push_back({1, ToAbsl(time.MonotonicNow() - start)}); });
  TimerPtr b = time.CreateTimer([&] { fired.push_back({2, ToAbsl(time.MonotonicNow() - start)}); });
  a->Enable(absl::Seconds(5));
  b->Enable(absl::Seconds(2));
  time.Advance(absl::Seconds(1));
  EXPECT_TRUE(fired.empty());
  time.Advance(absl::Seconds(10));
  ASSERT_EQ(fired.size(), 2u);
  EXPECT_EQ(fired[0], std::make_pair(2, absl::Seconds(2)));
  EXPECT_EQ(fired[1], std::make_pair(1, absl::Seconds(5)));
  EXPECT_EQ(ToAbsl(time.MonotonicNow() - start), absl::Seconds(11));
}

TEST(SimulatedTimeSourceTest, ReEnableReplacesAndDisableCancels) {
  SimulatedTimeSource time;
  int fired = 0;
  TimerPtr timer = time.CreateTimer([&] { ++fired; });
  timer->Enable(absl::Seconds(1));
  timer->Enable(absl::Seconds(3));
  time.Advance(absl::Seconds(2));
  EXPECT_EQ(fired, 0);
  EXPECT_TRUE(timer->Enabled());
  time.Advance(absl::Seconds(1));
  EXPECT_EQ(fired, 1);
  EXPECT_FALSE(timer->Enabled());
  timer->Enable(absl::Seconds(1));
  timer->Disable();
  time.Advance(absl::Seconds(5));
  EXPECT_EQ(fired, 1);
}

TEST(SimulatedTimeSourceTest, CallbackCanRearmItsTimer) {
  SimulatedTimeSource time;
  int fired = 0;
  TimerPtr timer;
  timer = time.CreateTimer([&] {
    if (++fired < 3) timer->Enable(absl::Seconds(1));
  });
  timer->Enable(absl::Seconds(1));
  time.Advance(absl::Seconds(10));
  EXPECT_EQ(fired, 3);
}

TEST(SimulatedTimeSourceTest, SystemTimeAdvancesWithMonotonic) {
  SimulatedTimeSource time;
  const absl::Time before = time.SystemNow();
  time.Advance(absl::Milliseconds(250));
  EXPECT_EQ(time.SystemNow() - before, absl::Milliseconds(250));
}

TEST(SimulatedTimeSourceTest, SleepForReturnsOnlyAfterAdvance) {
  SimulatedTimeSource time;
  std::atomic<bool> woke{false};
  std::thread sleeper([&] {
    time.SleepFor(absl::Seconds(3));
    woke = true;
  });
  // Wait (on a condition, not a clock) until the sleeper is parked.
  while (time.Sleepers() == 0) std::this_thread::yield();
  time.Advance(absl::Seconds(2));
  EXPECT_FALSE(woke.load());
  time.Advance(absl::Seconds(1));
  sleeper.join();
  EXPECT_TRUE(woke.load());
}

TEST(RealTimeSourceTest, TimerFiresOnItsThread) {
  RealTimeSource time;
  absl::Notification fired;
  TimerPtr timer = time.CreateTimer([&] { fired.Notify(); });
  timer->Enable(absl::Milliseconds(1));
  EXPECT_TRUE(fired.WaitForNotificationWithTimeout(absl::Seconds(10)));
}

TEST(RealTimeSourceTest, DisabledTimerNeverFires) {
  RealTimeSource time;
  std::atomic<int> fired{0};
  TimerPtr timer = time.CreateTimer([&] { ++fired; });
  timer->Enable(absl::Hours(1));
  timer->Disable();
  EXPECT_FALSE(timer->Enabled());
  // An earlier timer firing proves the loop ran past the disabled one's slot.
  absl::Notification other_fired;
  TimerPtr other = time.CreateTimer([&] { other_fired.Notify(); });
  other->Enable(absl::ZeroDuration());
  EXPECT_TRUE(other_fired.WaitForNotificationWithTimeout(absl::Seconds(10)));
  EXPECT_EQ(fired.load(), 0);
}

}  // namespace
}  // namespace wake::common
