// gMock mocks of the runtime-service interfaces.
#pragma once

#include <string>

#include "gmock/gmock.h"
#include "runtime-service/claim_scheduler.h"
#include "runtime-service/claim_sink.h"
#include "runtime-service/registry_follower.h"
#include "runtime-service/rescanner.h"
#include "runtime-service/trigger_sink.h"
#include "runtime-service/wake_accounting.h"

namespace wake::runtime {

class MockTriggerSink : public TriggerSink {
 public:
  MockTriggerSink();
  ~MockTriggerSink() override;
  MOCK_METHOD(void, Trigger,
              (const std::string& tenant_id, const std::string& stream, int64_t wake_id),
              (override));
};

class MockClaimSink : public ClaimSink {
 public:
  MockClaimSink();
  ~MockClaimSink() override;
  MOCK_METHOD(bool, Send, (const v1::WakeClaim& claim), (override));
  MOCK_METHOD(void, Close, (const absl::Status& status), (override));
};

class MockClaimScheduler : public ClaimScheduler {
 public:
  MockClaimScheduler();
  ~MockClaimScheduler() override;
  MOCK_METHOD(void, Trigger,
              (const std::string& tenant_id, const std::string& stream, int64_t wake_id),
              (override));
  MOCK_METHOD(absl::StatusOr<SessionId>, Connect, (const RunnerSpec& spec, ClaimSinkPtr sink),
              (override));
  MOCK_METHOD(void, Disconnect, (SessionId session), (override));
  MOCK_METHOD(void, Ack, (const AckRequest& request, Callback<AckResult> done), (override));
  MOCK_METHOD(void, Heartbeat,
              (const std::string& runner_id, const std::string& session_id,
               const std::string& principal, Callback<HeartbeatResult> done),
              (override));
  MOCK_METHOD(SchedulerHealth, Health, (), (override));
};

class MockRegistryFollower : public RegistryFollower {
 public:
  MockRegistryFollower();
  ~MockRegistryFollower() override;
  MOCK_METHOD(void, Run, (), (override));
  MOCK_METHOD(void, Stop, (), (override));
  MOCK_METHOD(FollowerStatus, Status, (), (override));
};

class MockWakeAccounting : public WakeAccounting {
 public:
  MockWakeAccounting();
  ~MockWakeAccounting() override;
  MOCK_METHOD(std::vector<PendingStream>, Unaccounted, (const std::vector<PendingStream>& pending),
              (override));
  MOCK_METHOD(int, ForgetParkedWithoutPending,
              (const std::vector<PendingStream>& pending, common::MonotonicTime since), (override));
};

class MockRescanner : public Rescanner {
 public:
  MockRescanner();
  ~MockRescanner() override;
  MOCK_METHOD(void, Start, (), (override));
  MOCK_METHOD(void, Stop, (), (override));
  MOCK_METHOD(RescanStatus, Status, (), (override));
};

}  // namespace wake::runtime
