#include "tests/support/wait_until.h"

#include <atomic>
#include <thread>

#include "absl/time/clock.h"
#include "gtest/gtest.h"

namespace wake::testing {
namespace {

TEST(WaitUntilTest, TrueAtOnceWhenTheConditionAlreadyHolds) {
  int checks = 0;
  EXPECT_TRUE(WaitUntil(
      [&] {
        ++checks;
        return true;
      },
      absl::Now() + absl::Seconds(10)));
  EXPECT_EQ(checks, 1);
}

TEST(WaitUntilTest, TrueOnceAnotherThreadMakesTheConditionHold) {
  std::atomic<bool> done{false};
  std::thread setter([&] { done.store(true); });
  EXPECT_TRUE(WaitUntil([&] { return done.load(); }, absl::Now() + absl::Seconds(30)));
  setter.join();
}

TEST(WaitUntilTest, FalseAfterTheDeadlineWithALastCheck) {
  int checks = 0;
  const absl::Time deadline = absl::Now() + absl::Milliseconds(20);
  EXPECT_FALSE(WaitUntil(
      [&] {
        ++checks;
        return false;
      },
      deadline));
  EXPECT_GE(absl::Now(), deadline);
  EXPECT_GE(checks, 2);
}

TEST(WaitUntilTest, ChecksOnceWhenTheDeadlineHasAlreadyPassed) {
  int checks = 0;
  EXPECT_FALSE(WaitUntil(
      [&] {
        ++checks;
        return false;
      },
      absl::Now() - absl::Seconds(1)));
  EXPECT_EQ(checks, 1);
}

}  // namespace
}  // namespace wake::testing
