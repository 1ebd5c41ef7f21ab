#include "common/sync/sync_health.h"

#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/mocks/sync/mocks.h"

namespace wake::sync {
namespace {

using ::testing::_;
using ::testing::HasSubstr;
using ::testing::StrictMock;

struct Change {
  bool healthy;
  absl::Status why;
};

TEST(SyncHealthObserverTest, RejectionsAndStopsFailUntilTheNextUpToDate) {
  StrictMock<MockSyncObserver> inner;
  std::vector<Change> changes;
  SyncHealthObserver health(inner, [&](bool healthy, const absl::Status& why) {
    changes.push_back({healthy, why});
  });
  EXPECT_CALL(inner, OnDisconnected(_)).Times(4);
  EXPECT_CALL(inner, OnUpToDate()).Times(2);
  EXPECT_CALL(inner, OnReset()).Times(1);
  EXPECT_CALL(inner, OnBatch(_)).Times(1);

  health.OnReset();
  health.OnBatch(SyncBatch{});
  health.OnUpToDate();  // Healthy already: no change.
  health.OnDisconnected(absl::UnavailableError("connection refused"));  // Transient.
  EXPECT_TRUE(changes.empty());
  health.OnDisconnected(absl::UnauthenticatedError("HTTP 401: Invalid API secret"));
  health.OnDisconnected(absl::UnauthenticatedError("HTTP 401: Invalid API secret"));
  ASSERT_EQ(changes.size(), 1u);
  EXPECT_FALSE(changes[0].healthy);
  EXPECT_EQ(changes[0].why.code(), absl::StatusCode::kUnauthenticated);
  EXPECT_THAT(std::string(health.failure().message()), HasSubstr("Invalid API secret"));
  health.OnDisconnected(absl::UnavailableError("timeout"));  // Still failed: stays.
  EXPECT_EQ(health.failure().code(), absl::StatusCode::kUnauthenticated);
  health.OnUpToDate();
  ASSERT_EQ(changes.size(), 2u);
  EXPECT_TRUE(changes[1].healthy);
  EXPECT_TRUE(health.failure().ok());
}

}  // namespace
}  // namespace wake::sync
