// gMock mocks of the sync interfaces.
#pragma once

#include "common/sync/sync_source.h"
#include "gmock/gmock.h"

namespace wake::sync {

class MockSyncSource : public SyncSource {
 public:
  MOCK_METHOD(absl::Status, Start, (SyncObserver&, absl::Duration), (override));
  MOCK_METHOD(absl::Status, Barrier, (absl::Duration), (override));
  MOCK_METHOD(void, Stop, (), (override));
};

class MockSyncObserver : public SyncObserver {
 public:
  MOCK_METHOD(void, OnReset, (), (override));
  MOCK_METHOD(void, OnBatch, (SyncBatch), (override));
  MOCK_METHOD(void, OnUpToDate, (), (override));
  MOCK_METHOD(void, OnDisconnected, (const absl::Status&), (override));
};

}  // namespace wake::sync
