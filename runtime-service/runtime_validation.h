// Request validation and proto <-> domain conversion for wake.v1.WakeRuntime.
// Every error is INVALID_ARGUMENT with a message starting with the field.
#pragma once

#include "absl/status/statusor.h"
#include "runtime-service/claim_scheduler.h"
#include "runtime-service/registry_follower.h"
#include "runtime-service/rescanner.h"
#include "wake/v1/runtime.pb.h"

namespace wake::runtime {

inline constexpr int kDefaultMaxInFlight = 16;
inline constexpr int kMaxMaxInFlight = 1024;

absl::StatusOr<RunnerSpec> ToRunnerSpec(const v1::StreamWakeClaimsRequest& request);
absl::StatusOr<AckRequest> ToAckRequest(const v1::AckClaimRequest& request);
absl::Status ValidateHeartbeat(const v1::HeartbeatRequest& request);

void ToProto(const HeartbeatResult& result, v1::HeartbeatResponse* response);
void ToProto(const SchedulerHealth& scheduler, const FollowerStatus& follower,
             const RescanStatus& rescan, v1::GetHealthResponse* response);

}  // namespace wake::runtime
