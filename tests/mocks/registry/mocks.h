// gMock mocks of the registry's interfaces.
#pragma once

#include "gmock/gmock.h"
#include "registry-service/wake_store.h"

namespace wake::registry {

class MockWakeStore : public WakeStore {
 public:
  MOCK_METHOD(absl::StatusOr<UpsertResult>, UpsertRegistration, (const sync::Registration&),
              (override));
  // Answers at once through the UpsertRegistration expectation.
  void UpsertRegistrationAsync(const sync::Registration& row,
                               std::function<void(absl::StatusOr<UpsertResult>)> done) override {
    done(UpsertRegistration(row));
  }
  MOCK_METHOD(absl::StatusOr<DeleteResult>, DeleteRegistrations, (const UnregisterSelector&),
              (override));
  MOCK_METHOD(absl::StatusOr<PersistResult>, PersistWakes, (const std::vector<WakeDraft>&),
              (override));
  // Answers at once through the PersistWakes expectation.
  void PersistWakesAsync(const std::vector<WakeDraft>& drafts,
                         std::function<void(absl::StatusOr<PersistResult>)> done) override {
    done(PersistWakes(drafts));
  }
  MOCK_METHOD(absl::StatusOr<ClaimResult>, ClaimWakes,
              (const std::string&, const std::string&, const std::string&, const std::string&,
               absl::Duration),
              (override));
  MOCK_METHOD(std::vector<absl::StatusOr<ClaimResult>>, ClaimStreams,
              (const std::vector<ClaimSpec>&), (override));
  MOCK_METHOD(absl::StatusOr<AckResult>, AckWakes, (const ClaimKey&, const std::vector<int64_t>&),
              (override));
  MOCK_METHOD(std::vector<absl::StatusOr<AckResult>>, AckClaims, (const std::vector<AckSpec>&),
              (override));
  MOCK_METHOD(absl::StatusOr<std::vector<ExtendResult>>, ExtendClaims,
              (const std::vector<ClaimKey>&, absl::Duration), (override));
  MOCK_METHOD(absl::StatusOr<int64_t>, ReleaseClaim, (const ClaimKey&), (override));
  MOCK_METHOD(absl::StatusOr<int64_t>, ReleaseExpiredClaims, (), (override));
  MOCK_METHOD(absl::StatusOr<WindowResult>, CloseDebounceWindow, (const WindowKey&), (override));
  MOCK_METHOD(absl::StatusOr<std::vector<WindowKey>>, DueDebounceWindows, (int), (override));
  MOCK_METHOD(absl::StatusOr<int64_t>, SweepEventKeys, (const KeyRetention&, int), (override));
};

}  // namespace wake::registry
