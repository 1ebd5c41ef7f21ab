// The gRPC adapter of wake.v1.WakeRegistry (callback API): authenticates the
// caller, validates and converts requests, checks the caller's role and
// tenants, runs blocking work on an executor, maps statuses.
// Until Attach() is called (startup), every RPC answers UNAVAILABLE.
//
// Who may call what (docs/security.md): registrations and evaluations need
// the role client or admin; the claim RPCs runtime or admin; SubscribeChanges
// any of client, runtime, admin, and all_tenants runtime or admin with every
// tenant. The request's tenant must be one the principal holds.
#pragma once

#include <atomic>

#include "common/auth/authenticator.h"
#include "common/executor.h"
#include "common/sync/registration_collection.h"
#include "registry-service/change_feed.h"
#include "registry-service/registry_core.h"
#include "wake/v1/registry.grpc.pb.h"

namespace wake::registry {

class RegistryServiceImpl final : public v1::WakeRegistry::CallbackService {
 public:
  // `executor` runs the blocking part of each call (database, barrier);
  // `authenticator` says who calls. Both must outlive the server.
  RegistryServiceImpl(common::Executor& executor, common::auth::Authenticator& authenticator);

  // Makes the service live. The objects must outlive the server.
  void Attach(RegistryCore* core, ChangeFeed* feed, sync::RegistrationCollection* collection);

  grpc::ServerUnaryReactor* RegisterWake(grpc::CallbackServerContext* context,
                                         const v1::RegisterWakeRequest* request,
                                         v1::RegisterWakeResponse* response) override;
  grpc::ServerUnaryReactor* UnregisterWakes(grpc::CallbackServerContext* context,
                                            const v1::UnregisterWakesRequest* request,
                                            v1::UnregisterWakesResponse* response) override;
  grpc::ServerUnaryReactor* EvaluateRunFinished(grpc::CallbackServerContext* context,
                                                const v1::EvaluateRunFinishedRequest* request,
                                                v1::EvaluateRunFinishedResponse* response) override;
  grpc::ServerUnaryReactor* EvaluateChange(grpc::CallbackServerContext* context,
                                           const v1::EvaluateChangeRequest* request,
                                           v1::EvaluateChangeResponse* response) override;
  grpc::ServerUnaryReactor* ListRegistrations(grpc::CallbackServerContext* context,
                                              const v1::ListRegistrationsRequest* request,
                                              v1::ListRegistrationsResponse* response) override;
  grpc::ServerWriteReactor<v1::ChangeEvent>* SubscribeChanges(
      grpc::CallbackServerContext* context, const v1::SubscribeChangesRequest* request) override;
  grpc::ServerUnaryReactor* ClaimWakes(grpc::CallbackServerContext* context,
                                       const v1::ClaimWakesRequest* request,
                                       v1::ClaimWakesResponse* response) override;
  grpc::ServerUnaryReactor* ClaimStreams(grpc::CallbackServerContext* context,
                                         const v1::ClaimStreamsRequest* request,
                                         v1::ClaimStreamsResponse* response) override;
  grpc::ServerUnaryReactor* AckWakes(grpc::CallbackServerContext* context,
                                     const v1::AckWakesRequest* request,
                                     v1::AckWakesResponse* response) override;
  grpc::ServerUnaryReactor* AckClaims(grpc::CallbackServerContext* context,
                                      const v1::AckClaimsRequest* request,
                                      v1::AckClaimsResponse* response) override;
  grpc::ServerUnaryReactor* ExtendClaims(grpc::CallbackServerContext* context,
                                         const v1::ExtendClaimsRequest* request,
                                         v1::ExtendClaimsResponse* response) override;
  grpc::ServerUnaryReactor* ReleaseClaim(grpc::CallbackServerContext* context,
                                         const v1::ReleaseClaimRequest* request,
                                         v1::ReleaseClaimResponse* response) override;

 private:
  template <typename Response, typename Work>
  grpc::ServerUnaryReactor* Offload(grpc::CallbackServerContext* context, Response* response,
                                    Work work);
  // The common shape of a unary handler: UNAVAILABLE while starting, then
  // `validate` on a copy of the request, the tenant check, and `call(core,
  // request)` on the executor. With `answer_now(core, request)` true the call
  // finishes at once with an empty response (nothing can match).
  template <typename Request, typename Response, typename Validate, typename Call>
  grpc::ServerUnaryReactor* Serve(grpc::CallbackServerContext* context, const char* method,
                                  std::initializer_list<common::auth::Role> roles,
                                  const Request& request, Response* response, Validate validate,
                                  Call call);
  // The batched claim RPCs (runtime roles): `validate(request, &leases)`,
  // the tenant checks of every entry of `entries(request)` (named
  // `field`[i] in errors), then `call(core, request, leases)` on the
  // executor.
  template <typename Request, typename Response, typename Validate, typename Entries, typename Call>
  grpc::ServerUnaryReactor* ServeBatch(grpc::CallbackServerContext* context, const char* method,
                                       const char* field, const Request& request,
                                       Response* response, Validate validate, Entries entries,
                                       Call call);
  // The caller's principal if it has one of `roles` (UNAUTHENTICATED,
  // PERMISSION_DENIED otherwise).
  absl::StatusOr<common::auth::PrincipalPtr> Authorize(
      grpc::CallbackServerContext* context, std::initializer_list<common::auth::Role> roles,
      const char* method);
  // Serve for calls that finish themselves: `start(core, request, done)` runs
  // on the executor and calls `done` once, on whatever thread has the result.
  template <typename Request, typename Response, typename Validate, typename Start>
  grpc::ServerUnaryReactor* ServeAsync(grpc::CallbackServerContext* context, const char* method,
                                       const Request& request, Response* response,
                                       Validate validate, Start start);
  static grpc::ServerUnaryReactor* Reject(grpc::CallbackServerContext* context,
                                          const absl::Status& status);

  common::Executor& executor_;
  common::auth::Authenticator& authenticator_;
  std::atomic<RegistryCore*> core_{nullptr};
  std::atomic<ChangeFeed*> feed_{nullptr};
  std::atomic<sync::RegistrationCollection*> collection_{nullptr};
};

}  // namespace wake::registry
