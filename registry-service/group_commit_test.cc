#include "registry-service/group_commit.h"

#include <thread>
#include <vector>

#include "absl/synchronization/notification.h"
#include "common/executor.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace wake::registry {
namespace {

using ::testing::ElementsAre;
using ::testing::Pair;

// Runs batches of ints, answering 10x each; the first batch can be held.
class Runner {
 public:
  std::vector<absl::StatusOr<int>> operator()(const std::vector<const int*>& items) {
    std::vector<int> batch;
    for (const int* item : items) batch.push_back(*item);
    {
      absl::MutexLock lock(&mu_);
      batches_.push_back(batch);
    }
    if (hold_first_ && batch == std::vector<int>{1}) {
      entered_.Notify();
      release_.WaitForNotification();
    }
    std::vector<absl::StatusOr<int>> results;
    for (int item : batch) results.push_back(item * 10);
    return results;
  }

  std::vector<std::vector<int>> batches() {
    absl::MutexLock lock(&mu_);
    return batches_;
  }

  bool hold_first_ = false;
  absl::Notification entered_;
  absl::Notification release_;

 private:
  absl::Mutex mu_;
  std::vector<std::vector<int>> batches_;
};

TEST(GroupCommitTest, ALoneCallerRunsAtOnceAndAlone) {
  Runner runner;
  GroupCommit<int, int> group(2, 8,
                              [&](const std::vector<const int*>& items) { return runner(items); });
  EXPECT_EQ(*group.Submit(4), 40);
  EXPECT_EQ(*group.Submit(5), 50);
  EXPECT_THAT(runner.batches(), ElementsAre(ElementsAre(4), ElementsAre(5)));
  EXPECT_THAT(group.Stats(), Pair(2u, 2u));
}

TEST(GroupCommitTest, CallersArrivingDuringABatchShareTheNextOne) {
  Runner runner;
  runner.hold_first_ = true;
  GroupCommit<int, int> group(1, 8,
                              [&](const std::vector<const int*>& items) { return runner(items); });
  std::vector<int> results(5);
  std::vector<std::thread> callers;
  callers.emplace_back([&] { results[0] = *group.Submit(1); });
  runner.entered_.WaitForNotification();
  for (int i = 2; i <= 5; ++i) callers.emplace_back([&, i] { results[i - 1] = *group.Submit(i); });
  // Wait (on a condition, not a clock) until all four queued behind batch 1.
  while (group.queued() < 4) std::this_thread::yield();
  runner.release_.Notify();
  for (std::thread& caller : callers) caller.join();
  EXPECT_THAT(results, ElementsAre(10, 20, 30, 40, 50));
  const auto batches = runner.batches();
  ASSERT_EQ(batches.size(), 2u);
  EXPECT_THAT(batches[1], ::testing::UnorderedElementsAre(2, 3, 4, 5));
}

TEST(GroupCommitTest, BatchesAreCappedAtMaxBatch) {
  Runner runner;
  runner.hold_first_ = true;
  GroupCommit<int, int> group(1, 2,
                              [&](const std::vector<const int*>& items) { return runner(items); });
  std::vector<std::thread> callers;
  callers.emplace_back([&] { EXPECT_EQ(*group.Submit(1), 10); });
  runner.entered_.WaitForNotification();
  for (int i = 2; i <= 6; ++i)
    callers.emplace_back([&, i] { EXPECT_EQ(*group.Submit(i), i * 10); });
  while (group.queued() < 5) std::this_thread::yield();
  runner.release_.Notify();
  for (std::thread& caller : callers) caller.join();
  const auto batches = runner.batches();
  ASSERT_EQ(batches.size(), 4u);  // {1}, then 5 queued in batches of at most 2.
  for (size_t i = 1; i < batches.size(); ++i) EXPECT_LE(batches[i].size(), 2u);
}

TEST(GroupCommitTest, AsyncItemsQueueWithoutAThreadAndShareBatches) {
  Runner runner;
  runner.hold_first_ = true;
  common::ThreadPoolExecutor executor(2);
  GroupCommit<int, int> group(
      1, 8, [&](const std::vector<const int*>& items) { return runner(items); }, &executor);
  absl::Mutex mu;
  std::vector<std::pair<int, int>> done;
  auto record = [&](int item) {
    return [&, item](absl::StatusOr<int> result) {
      absl::MutexLock lock(&mu);
      done.emplace_back(item, *result);
    };
  };
  group.SubmitAsync(1, record(1));  // Led by a task on the executor.
  runner.entered_.WaitForNotification();
  for (int i = 2; i <= 5; ++i) group.SubmitAsync(i, record(i));  // Returns at once.
  EXPECT_EQ(group.queued(), 4u);
  runner.release_.Notify();
  {
    absl::MutexLock lock(&mu);
    mu.Await(absl::Condition(
        +[](std::vector<std::pair<int, int>>* d) { return d->size() == 5; }, &done));
    EXPECT_THAT(done, ::testing::UnorderedElementsAre(Pair(1, 10), Pair(2, 20), Pair(3, 30),
                                                      Pair(4, 40), Pair(5, 50)));
  }
  const auto batches = runner.batches();
  ASSERT_EQ(batches.size(), 2u);
  EXPECT_THAT(batches[1], ::testing::UnorderedElementsAre(2, 3, 4, 5));
}

TEST(GroupCommitTest, ABlockedCallerCanLeadAsyncItems) {
  Runner runner;
  runner.hold_first_ = true;
  common::ManualExecutor executor;  // Lead tasks only run when the test says so.
  GroupCommit<int, int> group(
      1, 8, [&](const std::vector<const int*>& items) { return runner(items); }, &executor);
  std::thread first([&] { EXPECT_EQ(*group.Submit(1), 10); });
  runner.entered_.WaitForNotification();
  int async_result = 0;
  group.SubmitAsync(2, [&](absl::StatusOr<int> result) { async_result = *result; });
  EXPECT_EQ(executor.queued(), 0u);  // A batch is in flight: no lead task yet.
  std::thread second([&] { EXPECT_EQ(*group.Submit(3), 30); });
  while (group.queued() < 2) std::this_thread::yield();
  runner.release_.Notify();
  first.join();
  second.join();
  // The blocked caller 3 led the batch {2, 3}, or a lead task is waiting for it.
  executor.RunAll();
  EXPECT_EQ(async_result, 20);
  EXPECT_EQ(group.queued(), 0u);
}

TEST(GroupCommitTest, AWrongResultCountFailsTheBatchsCallers) {
  GroupCommit<int, int> group(
      1, 8, [](const std::vector<const int*>&) { return std::vector<absl::StatusOr<int>>{}; });
  absl::StatusOr<int> result = group.Submit(1);
  EXPECT_EQ(result.status().code(), absl::StatusCode::kInternal);
  EXPECT_THAT(std::string(result.status().message()), ::testing::HasSubstr("wrong count"));
}

}  // namespace
}  // namespace wake::registry
