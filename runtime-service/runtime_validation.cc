#include "runtime-service/runtime_validation.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "common/proto_time.h"
#include "common/status_util.h"
#include "common/text_check.h"

namespace wake::runtime {
namespace {

constexpr size_t kMaxIdBytes = 256;
constexpr size_t kMaxStreamBytes = 2048;
constexpr size_t kMaxTokenBytes = 1024;
constexpr int kMaxPrefixes = 64;
constexpr int kMaxWakeIds = 10000;

absl::Status RequiredId(const std::string& field, const std::string& value, size_t max_bytes) {
  return common::CheckText(field, value, max_bytes, /*required=*/true);
}

absl::StatusOr<std::string> Tenant(const std::string& tenant_id) {
  if (tenant_id.empty()) return std::string("default");
  if (auto s = common::CheckText("tenant_id", tenant_id, kMaxIdBytes, true); !s.ok()) return s;
  return tenant_id;
}

}  // namespace

absl::StatusOr<RunnerSpec> ToRunnerSpec(const v1::StreamWakeClaimsRequest& request) {
  RunnerSpec spec;
  if (auto s = RequiredId("runner_id", request.runner_id(), kMaxIdBytes); !s.ok()) return s;
  if (auto s = RequiredId("session_id", request.session_id(), kMaxIdBytes); !s.ok()) return s;
  absl::StatusOr<std::string> tenant = Tenant(request.tenant_id());
  if (!tenant.ok()) return tenant.status();
  if (request.stream_prefixes_size() > kMaxPrefixes) {
    return common::InvalidField("stream_prefixes",
                                absl::StrCat("at most ", kMaxPrefixes, " entries"));
  }
  for (int i = 0; i < request.stream_prefixes_size(); ++i) {
    const std::string field = absl::StrCat("stream_prefixes[", i, "]");
    if (auto s = RequiredId(field, request.stream_prefixes(i), kMaxStreamBytes); !s.ok()) return s;
  }
  if (request.max_in_flight() < 0 || request.max_in_flight() > kMaxMaxInFlight) {
    return common::InvalidField(
        "max_in_flight", absl::StrCat("must be between 0 (default ", kDefaultMaxInFlight, ") and ",
                                      kMaxMaxInFlight, ", got ", request.max_in_flight()));
  }
  spec.runner_id = request.runner_id();
  spec.session_id = request.session_id();
  spec.tenant_id = *std::move(tenant);
  spec.stream_prefixes.assign(request.stream_prefixes().begin(), request.stream_prefixes().end());
  spec.max_in_flight = request.max_in_flight() == 0 ? kDefaultMaxInFlight : request.max_in_flight();
  return spec;
}

absl::StatusOr<AckRequest> ToAckRequest(const v1::AckClaimRequest& request) {
  if (auto s = RequiredId("runner_id", request.runner_id(), kMaxIdBytes); !s.ok()) return s;
  if (auto s = RequiredId("session_id", request.session_id(), kMaxIdBytes); !s.ok()) return s;
  absl::StatusOr<std::string> tenant = Tenant(request.tenant_id());
  if (!tenant.ok()) return tenant.status();
  if (auto s = RequiredId("stream", request.stream(), kMaxStreamBytes); !s.ok()) return s;
  if (auto s = RequiredId("claim_token", request.claim_token(), kMaxTokenBytes); !s.ok()) return s;
  if (request.wake_ids_size() > kMaxWakeIds) {
    return common::InvalidField("wake_ids", absl::StrCat("at most ", kMaxWakeIds, " entries"));
  }
  for (int i = 0; i < request.wake_ids_size(); ++i) {
    if (request.wake_ids(i) <= 0) {
      return common::InvalidField(absl::StrCat("wake_ids[", i, "]"),
                                  absl::StrCat("must be positive, got ", request.wake_ids(i)));
    }
  }
  AckRequest ack;
  ack.runner_id = request.runner_id();
  ack.session_id = request.session_id();
  ack.tenant_id = *std::move(tenant);
  ack.stream = request.stream();
  ack.claim_token = request.claim_token();
  ack.wake_ids.assign(request.wake_ids().begin(), request.wake_ids().end());
  return ack;
}

absl::Status ValidateHeartbeat(const v1::HeartbeatRequest& request) {
  if (auto s = RequiredId("runner_id", request.runner_id(), kMaxIdBytes); !s.ok()) return s;
  return RequiredId("session_id", request.session_id(), kMaxIdBytes);
}

void ToProto(const HeartbeatResult& result, v1::HeartbeatResponse* response) {
  response->set_extended(result.extended);
  if (result.lease_expires_at.has_value()) {
    common::ToProto(*result.lease_expires_at, response->mutable_lease_expires_at());
  }
}

void ToProto(const SchedulerHealth& scheduler, const FollowerStatus& follower,
             const RescanStatus& rescan, v1::GetHealthResponse* response) {
  response->set_connected_runners(scheduler.connected_runners);
  response->set_active_claims(scheduler.active_claims);
  response->set_queued_streams(scheduler.queued_streams);
  response->set_waiting_for_runner(scheduler.waiting_for_runner);
  response->set_registry_connected(follower.up_to_date);
  // While the change stream is down its error is the one that matters.
  if (!follower.up_to_date && !follower.last_error.empty()) {
    response->set_last_error(follower.last_error);
  } else if (!scheduler.last_error.empty()) {
    response->set_last_error(scheduler.last_error);
  } else if (!follower.last_error.empty()) {
    response->set_last_error(follower.last_error);
  } else {
    response->set_last_error(rescan.last_error);
  }
  v1::RuntimeCounters* counters = response->mutable_counters();
  counters->set_events_received(follower.events_received);
  counters->set_reconnects(follower.reconnects);
  counters->set_claims_succeeded(scheduler.counters.claims_succeeded);
  counters->set_claims_skipped(scheduler.counters.claims_skipped);
  counters->set_claims_failed(scheduler.counters.claims_failed);
  counters->set_claims_dispatched(scheduler.counters.claims_dispatched);
  counters->set_claims_acked(scheduler.counters.claims_acked);
  counters->set_claims_released(scheduler.counters.claims_released);
  counters->set_rescans(rescan.rescans);
  counters->set_rescan_found(rescan.found);
}

}  // namespace wake::runtime
