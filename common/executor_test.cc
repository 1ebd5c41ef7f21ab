#include "common/executor.h"

#include <atomic>

#include "absl/synchronization/notification.h"
#include "gtest/gtest.h"

namespace wake::common {
namespace {

TEST(ThreadPoolExecutorTest, TryPostRefusesWorkBeyondTheQueueLimitAndRunsTheRest) {
  absl::Notification started;
  absl::Notification release;
  std::atomic<int> ran{0};
  {
    ThreadPoolExecutor executor(1, /*max_queued=*/2);
    // Occupies the only thread, so what follows waits in the queue.
    executor.Post([&] {
      started.Notify();
      release.WaitForNotification();
    });
    started.WaitForNotification();
    EXPECT_TRUE(executor.TryPost([&] { ++ran; }));
    EXPECT_TRUE(executor.TryPost([&] { ++ran; }));
    EXPECT_FALSE(executor.TryPost([&] { ran += 100; }));
    // Internal work is never refused.
    executor.Post([&] { ++ran; });
    release.Notify();
  }  // The destructor finishes queued work.
  EXPECT_EQ(ran.load(), 3);
}

TEST(ManualExecutorTest, TryPostHonoursItsLimit) {
  ManualExecutor executor(/*max_queued=*/1);
  int ran = 0;
  EXPECT_TRUE(executor.TryPost([&] { ++ran; }));
  EXPECT_FALSE(executor.TryPost([&] { ++ran; }));
  EXPECT_EQ(executor.RunAll(), 1);
  EXPECT_TRUE(executor.TryPost([&] { ++ran; }));
  executor.RunAll();
  EXPECT_EQ(ran, 2);
}

}  // namespace
}  // namespace wake::common
