#include "registry-service/registry_service.h"

#include "common/auth/grpc_auth.h"
#include "common/status_util.h"
#include "registry-service/subscribe_reactor.h"
#include "registry-service/validation.h"

namespace wake::registry {
namespace {

using common::auth::Principal;
using common::auth::PrincipalPtr;
using common::auth::Role;

// Registrations and evaluations.
constexpr std::initializer_list<Role> kClientRoles = {Role::kClient, Role::kAdmin};
// The claim RPCs.
constexpr std::initializer_list<Role> kRuntimeRoles = {Role::kRuntime, Role::kAdmin};

// Every worker is busy and --max-queued-calls calls already wait.
absl::Status Overloaded() {
  return absl::ResourceExhaustedError(
      "registry overloaded: too many calls waiting for a worker (--max-queued-calls); retry "
      "with backoff");
}

const absl::Status& Starting() {
  static const absl::Status* const kStarting =
      new absl::Status(absl::UnavailableError("registry is starting; retry shortly"));
  return *kStarting;
}

}  // namespace

RegistryServiceImpl::RegistryServiceImpl(common::Executor& executor,
                                         common::auth::Authenticator& authenticator)
    : executor_(executor), authenticator_(authenticator) {}

absl::StatusOr<PrincipalPtr> RegistryServiceImpl::Authorize(grpc::CallbackServerContext* context,
                                                            std::initializer_list<Role> roles,
                                                            const char* method) {
  absl::StatusOr<PrincipalPtr> principal = common::auth::AuthenticateCall(authenticator_, *context);
  if (!principal.ok()) return principal.status();
  if (absl::Status s = common::auth::RequireRole(**principal, roles, method); !s.ok()) return s;
  return principal;
}

void RegistryServiceImpl::Attach(RegistryCore* core, ChangeFeed* feed,
                                 sync::RegistrationCollection* collection) {
  feed_.store(feed);
  collection_.store(collection);
  core_.store(core);
}

grpc::ServerUnaryReactor* RegistryServiceImpl::Reject(grpc::CallbackServerContext* context,
                                                      const absl::Status& status) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  reactor->Finish(common::ToGrpcStatus(status));
  return reactor;
}

template <typename Response, typename Work>
grpc::ServerUnaryReactor* RegistryServiceImpl::Offload(grpc::CallbackServerContext* context,
                                                       Response* response, Work work) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  const bool queued =
      executor_.TryPost([context, reactor, response, work = std::move(work)]() mutable {
        // The client gave up while the call waited: its work would be wasted.
        if (context->IsCancelled()) {
          reactor->Finish(grpc::Status::CANCELLED);
          return;
        }
        absl::StatusOr<Response> result = work();
        if (result.ok()) *response = std::move(*result);
        reactor->Finish(common::ToGrpcStatus(result.status()));
      });
  if (!queued) reactor->Finish(common::ToGrpcStatus(Overloaded()));
  return reactor;
}

template <typename Request, typename Response, typename Validate, typename Call>
grpc::ServerUnaryReactor* RegistryServiceImpl::Serve(grpc::CallbackServerContext* context,
                                                     const char* method,
                                                     std::initializer_list<Role> roles,
                                                     const Request& request, Response* response,
                                                     Validate validate, Call call) {
  absl::StatusOr<PrincipalPtr> principal = Authorize(context, roles, method);
  if (!principal.ok()) return Reject(context, principal.status());
  RegistryCore* core = core_.load();
  if (core == nullptr) return Reject(context, Starting());
  Request valid = request;
  if (absl::Status s = validate(valid); !s.ok()) return Reject(context, s);
  if (auto s = common::auth::RequireTenant(**principal, valid.tenant_id()); !s.ok()) {
    return Reject(context, s);
  }
  if (absl::Status s = core->CheckTenant(valid.tenant_id()); !s.ok()) return Reject(context, s);
  return Offload(context, response, [core, call = std::move(call), valid = std::move(valid)] {
    return call(core, valid);
  });
}

template <typename Request, typename Response, typename Validate, typename Start>
grpc::ServerUnaryReactor* RegistryServiceImpl::ServeAsync(grpc::CallbackServerContext* context,
                                                          const char* method,
                                                          const Request& request,
                                                          Response* response, Validate validate,
                                                          Start start) {
  absl::StatusOr<PrincipalPtr> principal = Authorize(context, kClientRoles, method);
  if (!principal.ok()) return Reject(context, principal.status());
  RegistryCore* core = core_.load();
  if (core == nullptr) return Reject(context, Starting());
  Request valid = request;
  if (absl::Status s = validate(valid); !s.ok()) return Reject(context, s);
  if (auto s = common::auth::RequireTenant(**principal, valid.tenant_id()); !s.ok()) {
    return Reject(context, s);
  }
  if (absl::Status s = core->CheckTenant(valid.tenant_id()); !s.ok()) return Reject(context, s);
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  if (valid.consistency() == v1::LOCAL &&
      core->NoCandidates(valid.tenant_id(), valid.source_url())) {
    reactor->Finish(grpc::Status::OK);  // Nothing can match: answer on the gRPC thread.
    return reactor;
  }
  const bool queued = executor_.TryPost(
      [context, core, reactor, response, start = std::move(start), valid = std::move(valid)] {
        if (context->IsCancelled()) {
          reactor->Finish(grpc::Status::CANCELLED);
          return;
        }
        start(core, valid, [reactor, response](absl::StatusOr<Response> result) {
          if (result.ok()) *response = std::move(*result);
          reactor->Finish(common::ToGrpcStatus(result.status()));
        });
      });
  if (!queued) reactor->Finish(common::ToGrpcStatus(Overloaded()));
  return reactor;
}

grpc::ServerUnaryReactor* RegistryServiceImpl::RegisterWake(grpc::CallbackServerContext* context,
                                                            const v1::RegisterWakeRequest* request,
                                                            v1::RegisterWakeResponse* response) {
  absl::StatusOr<PrincipalPtr> principal = Authorize(context, kClientRoles, "RegisterWake");
  if (!principal.ok()) return Reject(context, principal.status());
  RegistryCore* core = core_.load();
  if (core == nullptr) return Reject(context, Starting());
  v1::RegisterWakeRequest valid = *request;
  if (absl::Status s = ValidateRegisterWake(valid); !s.ok()) return Reject(context, s);
  if (auto s = common::auth::RequireTenant(**principal, valid.tenant_id()); !s.ok()) {
    return Reject(context, s);
  }
  if (absl::Status s = core->CheckTenant(valid.tenant_id()); !s.ok()) return Reject(context, s);
  // No thread waits for the write: the group commit's batch runner and then
  // the sync stream (which confirms the txid) finish the call.
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  core->RegisterWakeAsync(valid,
                          [reactor, response](absl::StatusOr<v1::RegisterWakeResponse> result) {
                            if (result.ok()) *response = std::move(*result);
                            reactor->Finish(common::ToGrpcStatus(result.status()));
                          });
  return reactor;
}

grpc::ServerUnaryReactor* RegistryServiceImpl::UnregisterWakes(
    grpc::CallbackServerContext* context, const v1::UnregisterWakesRequest* request,
    v1::UnregisterWakesResponse* response) {
  return Serve(context, "UnregisterWakes", kClientRoles, *request, response,
               ValidateUnregisterWakes,
               [](RegistryCore* core, const v1::UnregisterWakesRequest& valid) {
                 return core->UnregisterWakes(valid);
               });
}

grpc::ServerUnaryReactor* RegistryServiceImpl::EvaluateRunFinished(
    grpc::CallbackServerContext* context, const v1::EvaluateRunFinishedRequest* request,
    v1::EvaluateRunFinishedResponse* response) {
  // The worker waits for the read barrier only; the wakes' group commit
  // finishes the call.
  return ServeAsync(context, "EvaluateRunFinished", *request, response, ValidateEvaluateRunFinished,
                    [](RegistryCore* core, const v1::EvaluateRunFinishedRequest& valid,
                       RegistryCore::Done<v1::EvaluateRunFinishedResponse> done) {
                      core->EvaluateRunFinishedAsync(valid, std::move(done));
                    });
}

grpc::ServerUnaryReactor* RegistryServiceImpl::EvaluateChange(
    grpc::CallbackServerContext* context, const v1::EvaluateChangeRequest* request,
    v1::EvaluateChangeResponse* response) {
  return ServeAsync(context, "EvaluateChange", *request, response, ValidateEvaluateChange,
                    [](RegistryCore* core, const v1::EvaluateChangeRequest& valid,
                       RegistryCore::Done<v1::EvaluateChangeResponse> done) {
                      core->EvaluateChangeAsync(valid, std::move(done));
                    });
}

grpc::ServerUnaryReactor* RegistryServiceImpl::ListRegistrations(
    grpc::CallbackServerContext* context, const v1::ListRegistrationsRequest* request,
    v1::ListRegistrationsResponse* response) {
  absl::StatusOr<PrincipalPtr> principal = Authorize(context, kClientRoles, "ListRegistrations");
  if (!principal.ok()) return Reject(context, principal.status());
  RegistryCore* core = core_.load();
  if (core == nullptr) return Reject(context, Starting());
  v1::ListRegistrationsRequest valid = *request;
  int64_t after_id = 0;
  if (absl::Status s = ValidateListRegistrations(valid, &after_id); !s.ok()) {
    return Reject(context, s);
  }
  if (auto s = common::auth::RequireTenant(**principal, valid.tenant_id()); !s.ok()) {
    return Reject(context, s);
  }
  if (absl::Status s = core->CheckTenant(valid.tenant_id()); !s.ok()) return Reject(context, s);
  return Offload(context, response, [core, valid = std::move(valid), after_id] {
    return core->ListRegistrations(valid, after_id);
  });
}

grpc::ServerWriteReactor<v1::ChangeEvent>* RegistryServiceImpl::SubscribeChanges(
    grpc::CallbackServerContext* context, const v1::SubscribeChangesRequest* request) {
  absl::StatusOr<PrincipalPtr> principal =
      Authorize(context, {Role::kClient, Role::kRuntime, Role::kAdmin}, "SubscribeChanges");
  if (!principal.ok()) return new RejectReactor(principal.status());
  RegistryCore* core = core_.load();
  if (core == nullptr) return new RejectReactor(Starting());
  v1::SubscribeChangesRequest valid = *request;
  if (absl::Status s = ValidateSubscribeChanges(valid); !s.ok()) return new RejectReactor(s);
  if (valid.all_tenants()) {
    if (auto s = common::auth::RequireRole(**principal, kRuntimeRoles,
                                           "SubscribeChanges with "
                                           "all_tenants");
        !s.ok()) {
      return new RejectReactor(s);
    }
    if (!(*principal)->all_tenants) {
      return new RejectReactor(absl::PermissionDeniedError(absl::StrCat(
          "all_tenants: principal \"", (*principal)->name, "\" does not hold every tenant")));
    }
    // A registry serving one tenant never streams another's, whatever its
    // collection holds (the postgres sync source follows every tenant).
    if (core->tenant().has_value()) {
      valid.set_all_tenants(false);
      valid.set_tenant_id(*core->tenant());
    }
  } else {
    if (auto s = common::auth::RequireTenant(**principal, valid.tenant_id()); !s.ok()) {
      return new RejectReactor(s);
    }
    if (absl::Status s = core->CheckTenant(valid.tenant_id()); !s.ok()) {
      return new RejectReactor(s);
    }
  }
  auto* reactor = new SubscribeReactor(*feed_.load(), *collection_.load(), valid);
  reactor->Start();
  return reactor;
}

grpc::ServerUnaryReactor* RegistryServiceImpl::ClaimWakes(grpc::CallbackServerContext* context,
                                                          const v1::ClaimWakesRequest* request,
                                                          v1::ClaimWakesResponse* response) {
  absl::StatusOr<PrincipalPtr> principal = Authorize(context, kRuntimeRoles, "ClaimWakes");
  if (!principal.ok()) return Reject(context, principal.status());
  RegistryCore* core = core_.load();
  if (core == nullptr) return Reject(context, Starting());
  v1::ClaimWakesRequest valid = *request;
  absl::Duration lease;
  if (absl::Status s = ValidateClaimWakes(valid, &lease); !s.ok()) return Reject(context, s);
  if (auto s = common::auth::RequireTenant(**principal, valid.tenant_id()); !s.ok()) {
    return Reject(context, s);
  }
  if (absl::Status s = core->CheckTenant(valid.tenant_id()); !s.ok()) return Reject(context, s);
  return Offload(context, response, [core, valid = std::move(valid), lease] {
    return core->ClaimWakes(valid, lease);
  });
}

grpc::ServerUnaryReactor* RegistryServiceImpl::AckWakes(grpc::CallbackServerContext* context,
                                                        const v1::AckWakesRequest* request,
                                                        v1::AckWakesResponse* response) {
  absl::StatusOr<PrincipalPtr> principal = Authorize(context, kRuntimeRoles, "AckWakes");
  if (!principal.ok()) return Reject(context, principal.status());
  RegistryCore* core = core_.load();
  if (core == nullptr) return Reject(context, Starting());
  v1::AckWakesRequest valid = *request;
  absl::Duration lease;
  if (absl::Status s = ValidateAckWakes(valid, &lease); !s.ok()) return Reject(context, s);
  if (auto s = common::auth::RequireTenant(**principal, valid.tenant_id()); !s.ok()) {
    return Reject(context, s);
  }
  if (absl::Status s = core->CheckTenant(valid.tenant_id()); !s.ok()) return Reject(context, s);
  return Offload(context, response,
                 [core, valid = std::move(valid), lease] { return core->AckWakes(valid, lease); });
}

template <typename Request, typename Response, typename Validate, typename Entries, typename Call>
grpc::ServerUnaryReactor* RegistryServiceImpl::ServeBatch(grpc::CallbackServerContext* context,
                                                          const char* method, const char* field,
                                                          const Request& request,
                                                          Response* response, Validate validate,
                                                          Entries entries, Call call) {
  absl::StatusOr<PrincipalPtr> principal = Authorize(context, kRuntimeRoles, method);
  if (!principal.ok()) return Reject(context, principal.status());
  RegistryCore* core = core_.load();
  if (core == nullptr) return Reject(context, Starting());
  Request valid = request;
  std::vector<absl::Duration> leases;
  if (absl::Status s = validate(valid, &leases); !s.ok()) return Reject(context, s);
  const auto& list = entries(valid);
  for (int i = 0; i < list.size(); ++i) {
    if (auto s = common::auth::RequireTenant(**principal, list.Get(i).tenant_id(),
                                             absl::StrCat(field, "[", i, "].tenant_id"));
        !s.ok()) {
      return Reject(context, s);
    }
    if (absl::Status s = core->CheckTenant(list.Get(i).tenant_id()); !s.ok()) {
      return Reject(context, s);
    }
  }
  return Offload(context, response,
                 [core, call = std::move(call), valid = std::move(valid),
                  leases = std::move(leases)] { return call(core, valid, leases); });
}

grpc::ServerUnaryReactor* RegistryServiceImpl::ClaimStreams(grpc::CallbackServerContext* context,
                                                            const v1::ClaimStreamsRequest* request,
                                                            v1::ClaimStreamsResponse* response) {
  return ServeBatch(
      context, "ClaimStreams", "claims", *request, response, ValidateClaimStreams,
      [](const v1::ClaimStreamsRequest& valid) -> const auto& { return valid.claims(); },
      [](RegistryCore* core, const v1::ClaimStreamsRequest& valid,
         const std::vector<absl::Duration>& leases) { return core->ClaimStreams(valid, leases); });
}

grpc::ServerUnaryReactor* RegistryServiceImpl::AckClaims(grpc::CallbackServerContext* context,
                                                         const v1::AckClaimsRequest* request,
                                                         v1::AckClaimsResponse* response) {
  return ServeBatch(
      context, "AckClaims", "acks", *request, response, ValidateAckClaims,
      [](const v1::AckClaimsRequest& valid) -> const auto& { return valid.acks(); },
      [](RegistryCore* core, const v1::AckClaimsRequest& valid,
         const std::vector<absl::Duration>& leases) { return core->AckClaims(valid, leases); });
}

grpc::ServerUnaryReactor* RegistryServiceImpl::ExtendClaims(grpc::CallbackServerContext* context,
                                                            const v1::ExtendClaimsRequest* request,
                                                            v1::ExtendClaimsResponse* response) {
  absl::StatusOr<PrincipalPtr> principal = Authorize(context, kRuntimeRoles, "ExtendClaims");
  if (!principal.ok()) return Reject(context, principal.status());
  RegistryCore* core = core_.load();
  if (core == nullptr) return Reject(context, Starting());
  v1::ExtendClaimsRequest valid = *request;
  absl::Duration lease;
  if (absl::Status s = ValidateExtendClaims(valid, &lease); !s.ok()) return Reject(context, s);
  for (int i = 0; i < valid.claims_size(); ++i) {
    if (auto s = common::auth::RequireTenant(**principal, valid.claims(i).tenant_id(),
                                             absl::StrCat("claims[", i, "].tenant_id"));
        !s.ok()) {
      return Reject(context, s);
    }
  }
  for (const v1::ClaimRef& claim : valid.claims()) {
    if (absl::Status s = core->CheckTenant(claim.tenant_id()); !s.ok()) return Reject(context, s);
  }
  return Offload(context, response, [core, valid = std::move(valid), lease] {
    return core->ExtendClaims(valid, lease);
  });
}

grpc::ServerUnaryReactor* RegistryServiceImpl::ReleaseClaim(grpc::CallbackServerContext* context,
                                                            const v1::ReleaseClaimRequest* request,
                                                            v1::ReleaseClaimResponse* response) {
  return Serve(context, "ReleaseClaim", kRuntimeRoles, *request, response, ValidateReleaseClaim,
               [](RegistryCore* core, const v1::ReleaseClaimRequest& valid) {
                 return core->ReleaseClaim(valid);
               });
}

}  // namespace wake::registry
