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

class RegistryService final : public v1::WakeRegistry::CallbackService {
 public:
  // `executor` runs the blocking part of each call (database, barrier);
  // `authenticator` says who calls. Both must outlive the server.
  RegistryService(common::Executor& executor, common::auth::Authenticator& authenticator);

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
  // A request that passed Admit, and the core that serves it.
  template <typename Request>
  struct Admitted {
    RegistryCore* core;
    Request request;
  };

  // What every call checks before any work, in this order: the caller holds
  // one of `roles`, the service has started (else UNAVAILABLE), `validate`
  // accepts a copy of the request (and fills in its defaults), and the
  // request's tenants are ones the principal holds and this registry serves.
  template <typename Request, typename Validate>
  absl::StatusOr<Admitted<Request>> Admit(grpc::CallbackServerContext* context, const char* method,
                                          std::initializer_list<common::auth::Role> roles,
                                          const Request& request, Validate validate);
  // The common shape of a unary handler: Admit, then `call(core, request)` on
  // the executor, whose result answers the call.
  template <typename Request, typename Response, typename Call>
  grpc::ServerUnaryReactor* Serve(grpc::CallbackServerContext* context, const char* method,
                                  std::initializer_list<common::auth::Role> roles,
                                  const Request& request, Response* response,
                                  absl::Status (*validate)(Request&), Call call);
  // Serve for requests whose validation also parses something out of them
  // (a lease, the lease of each entry of a batch, a page token): then
  // `call(core, request, parsed)`.
  template <typename Request, typename Parsed, typename Response, typename Call>
  grpc::ServerUnaryReactor* Serve(grpc::CallbackServerContext* context, const char* method,
                                  std::initializer_list<common::auth::Role> roles,
                                  const Request& request, Response* response,
                                  absl::Status (*validate)(Request&, Parsed*), Call call);
  // Serve for the evaluations, which finish themselves: a LOCAL evaluation
  // that cannot match anything is answered at once with an empty response;
  // otherwise `start(core, request, done)` runs on the executor and calls
  // `done` once, on whatever thread has the result.
  template <typename Request, typename Response, typename Start>
  grpc::ServerUnaryReactor* ServeEvaluation(grpc::CallbackServerContext* context,
                                            const char* method,
                                            std::initializer_list<common::auth::Role> roles,
                                            const Request& request, Response* response,
                                            absl::Status (*validate)(Request&), Start start);
  // Serve for work that never blocks, so needs no worker: `start(core,
  // request, done)` runs on the gRPC thread, and `done` finishes the call.
  template <typename Request, typename Response, typename Start>
  grpc::ServerUnaryReactor* ServeNonBlocking(grpc::CallbackServerContext* context,
                                             const char* method,
                                             std::initializer_list<common::auth::Role> roles,
                                             const Request& request, Response* response,
                                             absl::Status (*validate)(Request&), Start start);
  // Runs `work()` on the executor, unless the client gave up while it waited
  // (CANCELLED); RESOURCE_EXHAUSTED at once when too many calls wait.
  template <typename Work>
  void Post(grpc::CallbackServerContext* context, grpc::ServerUnaryReactor* reactor, Work work);
  // The caller's principal if it has one of `roles` (UNAUTHENTICATED,
  // PERMISSION_DENIED otherwise).
  absl::StatusOr<common::auth::PrincipalPtr> Authorize(
      grpc::CallbackServerContext* context, std::initializer_list<common::auth::Role> roles,
      const char* method);
  static grpc::ServerUnaryReactor* Reject(grpc::CallbackServerContext* context,
                                          const absl::Status& status);

  common::Executor& executor_;
  common::auth::Authenticator& authenticator_;
  std::atomic<RegistryCore*> core_{nullptr};
  std::atomic<ChangeFeed*> feed_{nullptr};
  std::atomic<sync::RegistrationCollection*> collection_{nullptr};
};

}  // namespace wake::registry
