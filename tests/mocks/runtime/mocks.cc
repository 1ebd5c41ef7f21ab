#include "tests/mocks/runtime/mocks.h"

namespace wake::runtime {

// Out of line so every test does not compile the mock machinery again.
MockTriggerSink::MockTriggerSink() = default;
MockTriggerSink::~MockTriggerSink() = default;
MockClaimSink::MockClaimSink() = default;
MockClaimSink::~MockClaimSink() = default;
MockClaimScheduler::MockClaimScheduler() = default;
MockClaimScheduler::~MockClaimScheduler() = default;
MockRegistryFollower::MockRegistryFollower() = default;
MockRegistryFollower::~MockRegistryFollower() = default;
MockWakeAccounting::MockWakeAccounting() = default;
MockWakeAccounting::~MockWakeAccounting() = default;
MockRescanner::MockRescanner() = default;
MockRescanner::~MockRescanner() = default;

}  // namespace wake::runtime
