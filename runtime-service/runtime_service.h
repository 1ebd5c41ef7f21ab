// The gRPC adapter of wake.v1.WakeRuntime (callback API): authenticates the
// caller, converts protos, calls the ClaimScheduler, maps absl::Status to
// grpc::Status. StreamWakeClaims, AckClaim and Heartbeat need the role runner
// or admin and a tenant the principal holds; a session's claims can be acked
// and heartbeaten only by the principal that opened it. GetHealth (which
// names streams of every tenant) needs runtime or admin.
#pragma once

#include "common/auth/authenticator.h"
#include "grpcpp/grpcpp.h"
#include "runtime-service/claim_scheduler.h"
#include "runtime-service/registry_follower.h"
#include "runtime-service/rescanner.h"
#include "wake/v1/runtime.grpc.pb.h"

namespace wake::runtime {

// StreamWakeClaims sends this initial metadata (the session id) once the
// session is registered, so a runner can wait for it before relying on it.
inline constexpr char kSessionMetadataKey[] = "wake-session-id";

class RuntimeService final : public v1::WakeRuntime::CallbackService {
 public:
  // The references must outlive the server this service is registered with;
  // `rescanner` may be null (no rescan counters).
  RuntimeService(ClaimScheduler& scheduler, RegistryFollower& follower,
                 common::auth::Authenticator& authenticator, Rescanner* rescanner = nullptr);

  grpc::ServerWriteReactor<v1::WakeClaim>* StreamWakeClaims(
      grpc::CallbackServerContext* context, const v1::StreamWakeClaimsRequest* request) override;
  grpc::ServerUnaryReactor* AckClaim(grpc::CallbackServerContext* context,
                                     const v1::AckClaimRequest* request,
                                     v1::AckClaimResponse* response) override;
  grpc::ServerUnaryReactor* Heartbeat(grpc::CallbackServerContext* context,
                                      const v1::HeartbeatRequest* request,
                                      v1::HeartbeatResponse* response) override;
  grpc::ServerUnaryReactor* GetHealth(grpc::CallbackServerContext* context,
                                      const v1::GetHealthRequest* request,
                                      v1::GetHealthResponse* response) override;

 private:
  ClaimScheduler& scheduler_;
  RegistryFollower& follower_;
  common::auth::Authenticator& authenticator_;
  Rescanner* const rescanner_;
};

}  // namespace wake::runtime
