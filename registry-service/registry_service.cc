#include "registry-service/registry_service.h"

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
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
// The claim RPCs, and SubscribeChanges with all_tenants.
constexpr std::initializer_list<Role> kRuntimeRoles = {Role::kRuntime, Role::kAdmin};
// SubscribeChanges.
constexpr std::initializer_list<Role> kSubscriberRoles = {Role::kClient, Role::kRuntime,
                                                          Role::kAdmin};

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

// The callback that answers a unary call with `result`.
template <typename Response>
auto FinishWith(grpc::ServerUnaryReactor* reactor, Response* response) {
  return [reactor, response](absl::StatusOr<Response> result) {
    if (result.ok()) *response = std::move(*result);
    reactor->Finish(common::ToGrpcStatus(result.status()));
  };
}

// The tenant checks of Admit, one overload per shape of request.

// One tenant: the principal holds it (PERMISSION_DENIED naming `field`), and
// this registry serves it.
absl::Status CheckTenant(const Principal& principal, const RegistryCore& core,
                         const std::string& tenant, absl::string_view field = "tenant_id") {
  if (absl::Status s = common::auth::RequireTenant(principal, tenant, field); !s.ok()) return s;
  return core.CheckTenant(tenant);
}

// A request of one tenant, its tenant_id.
template <typename Request>
absl::Status CheckTenants(const Principal& principal, const RegistryCore& core,
                          const Request& request) {
  return CheckTenant(principal, core, request.tenant_id());
}

// The entries of a batch, one after the other; errors name `field`[i].
template <typename Entries>
absl::Status CheckEntryTenants(const Principal& principal, const RegistryCore& core,
                               const char* field, const Entries& entries) {
  for (int i = 0; i < entries.size(); ++i) {
    if (absl::Status s = CheckTenant(principal, core, entries.Get(i).tenant_id(),
                                     absl::StrCat(field, "[", i, "].tenant_id"));
        !s.ok()) {
      return s;
    }
  }
  return absl::OkStatus();
}

absl::Status CheckTenants(const Principal& principal, const RegistryCore& core,
                          const v1::ClaimStreamsRequest& request) {
  return CheckEntryTenants(principal, core, "claims", request.claims());
}

absl::Status CheckTenants(const Principal& principal, const RegistryCore& core,
                          const v1::AckClaimsRequest& request) {
  return CheckEntryTenants(principal, core, "acks", request.acks());
}

// ExtendClaims checks the principal against every entry before asking the
// core about any (unlike CheckEntryTenants, one entry at a time): kept as it
// is, since the order decides which error a request with two bad entries gets.
absl::Status CheckTenants(const Principal& principal, const RegistryCore& core,
                          const v1::ExtendClaimsRequest& request) {
  for (int i = 0; i < request.claims_size(); ++i) {
    if (auto s = common::auth::RequireTenant(principal, request.claims(i).tenant_id(),
                                             absl::StrCat("claims[", i, "].tenant_id"));
        !s.ok()) {
      return s;
    }
  }
  for (const v1::ClaimRef& claim : request.claims()) {
    if (absl::Status s = core.CheckTenant(claim.tenant_id()); !s.ok()) return s;
  }
  return absl::OkStatus();
}

// SubscribeChanges with all_tenants needs a runtime role and a principal
// that holds every tenant; without, it is a request of one tenant.
absl::Status CheckTenants(const Principal& principal, const RegistryCore& core,
                          const v1::SubscribeChangesRequest& request) {
  if (!request.all_tenants()) return CheckTenant(principal, core, request.tenant_id());
  if (auto s =
          common::auth::RequireRole(principal, kRuntimeRoles, "SubscribeChanges with all_tenants");
      !s.ok()) {
    return s;
  }
  if (!principal.all_tenants) {
    return absl::PermissionDeniedError(
        absl::StrCat("all_tenants: principal \"", principal.name, "\" does not hold every tenant"));
  }
  return absl::OkStatus();
}

}  // namespace

RegistryService::RegistryService(common::Executor& executor,
                                 common::auth::Authenticator& authenticator)
    : executor_(executor), authenticator_(authenticator) {}

void RegistryService::Attach(RegistryCore* core, ChangeFeed* feed,
                             sync::RegistrationCollection* collection) {
  feed_.store(feed);
  collection_.store(collection);
  core_.store(core);
}

absl::StatusOr<PrincipalPtr> RegistryService::Authorize(grpc::CallbackServerContext* context,
                                                        std::initializer_list<Role> roles,
                                                        const char* method) {
  absl::StatusOr<PrincipalPtr> principal = common::auth::AuthenticateCall(authenticator_, *context);
  if (!principal.ok()) return principal.status();
  if (absl::Status s = common::auth::RequireRole(**principal, roles, method); !s.ok()) return s;
  return principal;
}

grpc::ServerUnaryReactor* RegistryService::Reject(grpc::CallbackServerContext* context,
                                                  const absl::Status& status) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  reactor->Finish(common::ToGrpcStatus(status));
  return reactor;
}

template <typename Request, typename Validate>
absl::StatusOr<RegistryService::Admitted<Request>> RegistryService::Admit(
    grpc::CallbackServerContext* context, const char* method, std::initializer_list<Role> roles,
    const Request& request, Validate validate) {
  absl::StatusOr<PrincipalPtr> principal = Authorize(context, roles, method);
  if (!principal.ok()) return principal.status();
  RegistryCore* core = core_.load();
  if (core == nullptr) return Starting();
  Request valid = request;
  if (absl::Status s = validate(valid); !s.ok()) return s;
  if (absl::Status s = CheckTenants(**principal, *core, valid); !s.ok()) return s;
  return Admitted<Request>{core, std::move(valid)};
}

template <typename Work>
void RegistryService::Post(grpc::CallbackServerContext* context, grpc::ServerUnaryReactor* reactor,
                           Work work) {
  const bool queued = executor_.TryPost([context, reactor, work = std::move(work)]() mutable {
    // The client gave up while the call waited: its work would be wasted.
    if (context->IsCancelled()) {
      reactor->Finish(grpc::Status::CANCELLED);
      return;
    }
    work();
  });
  if (!queued) reactor->Finish(common::ToGrpcStatus(Overloaded()));
}

template <typename Request, typename Response, typename Call>
grpc::ServerUnaryReactor* RegistryService::Serve(grpc::CallbackServerContext* context,
                                                 const char* method,
                                                 std::initializer_list<Role> roles,
                                                 const Request& request, Response* response,
                                                 absl::Status (*validate)(Request&), Call call) {
  absl::StatusOr<Admitted<Request>> admitted = Admit(context, method, roles, request, validate);
  if (!admitted.ok()) return Reject(context, admitted.status());
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  Post(context, reactor,
       [finish = FinishWith(reactor, response), call = std::move(call),
        admitted = *std::move(admitted)] { finish(call(admitted.core, admitted.request)); });
  return reactor;
}

template <typename Request, typename Parsed, typename Response, typename Call>
grpc::ServerUnaryReactor* RegistryService::Serve(grpc::CallbackServerContext* context,
                                                 const char* method,
                                                 std::initializer_list<Role> roles,
                                                 const Request& request, Response* response,
                                                 absl::Status (*validate)(Request&, Parsed*),
                                                 Call call) {
  Parsed parsed{};
  absl::StatusOr<Admitted<Request>> admitted =
      Admit(context, method, roles, request,
            [validate, &parsed](Request& valid) { return validate(valid, &parsed); });
  if (!admitted.ok()) return Reject(context, admitted.status());
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  Post(context, reactor,
       [finish = FinishWith(reactor, response), call = std::move(call),
        admitted = *std::move(admitted),
        parsed = std::move(parsed)] { finish(call(admitted.core, admitted.request, parsed)); });
  return reactor;
}

template <typename Request, typename Response, typename Start>
grpc::ServerUnaryReactor* RegistryService::ServeEvaluation(
    grpc::CallbackServerContext* context, const char* method, std::initializer_list<Role> roles,
    const Request& request, Response* response, absl::Status (*validate)(Request&), Start start) {
  absl::StatusOr<Admitted<Request>> admitted = Admit(context, method, roles, request, validate);
  if (!admitted.ok()) return Reject(context, admitted.status());
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  RegistryCore* core = admitted->core;
  const Request& valid = admitted->request;
  if (valid.consistency() == v1::LOCAL &&
      core->NoCandidates(valid.tenant_id(), valid.source_url())) {
    reactor->Finish(grpc::Status::OK);  // Nothing can match: answer on the gRPC thread.
    return reactor;
  }
  Post(context, reactor,
       [finish = FinishWith(reactor, response), start = std::move(start),
        admitted = *std::move(admitted)] { start(admitted.core, admitted.request, finish); });
  return reactor;
}

template <typename Request, typename Response, typename Start>
grpc::ServerUnaryReactor* RegistryService::ServeNonBlocking(
    grpc::CallbackServerContext* context, const char* method, std::initializer_list<Role> roles,
    const Request& request, Response* response, absl::Status (*validate)(Request&), Start start) {
  absl::StatusOr<Admitted<Request>> admitted = Admit(context, method, roles, request, validate);
  if (!admitted.ok()) return Reject(context, admitted.status());
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  start(admitted->core, admitted->request, FinishWith(reactor, response));
  return reactor;
}

grpc::ServerUnaryReactor* RegistryService::RegisterWake(grpc::CallbackServerContext* context,
                                                        const v1::RegisterWakeRequest* request,
                                                        v1::RegisterWakeResponse* response) {
  // No thread waits for the write: the group commit's batch runner and then
  // the sync stream (which confirms the txid) finish the call.
  return ServeNonBlocking(
      context, "RegisterWake", kClientRoles, *request, response, ValidateRegisterWake,
      [](RegistryCore* core, const v1::RegisterWakeRequest& valid,
         RegistryCore::RegisterDone done) { core->RegisterWakeAsync(valid, std::move(done)); });
}

grpc::ServerUnaryReactor* RegistryService::UnregisterWakes(
    grpc::CallbackServerContext* context, const v1::UnregisterWakesRequest* request,
    v1::UnregisterWakesResponse* response) {
  return Serve(context, "UnregisterWakes", kClientRoles, *request, response,
               ValidateUnregisterWakes,
               [](RegistryCore* core, const v1::UnregisterWakesRequest& valid) {
                 return core->UnregisterWakes(valid);
               });
}

grpc::ServerUnaryReactor* RegistryService::EvaluateRunFinished(
    grpc::CallbackServerContext* context, const v1::EvaluateRunFinishedRequest* request,
    v1::EvaluateRunFinishedResponse* response) {
  // The worker waits for the read barrier only; the wakes' group commit
  // finishes the call.
  return ServeEvaluation(context, "EvaluateRunFinished", kClientRoles, *request, response,
                         ValidateEvaluateRunFinished,
                         [](RegistryCore* core, const v1::EvaluateRunFinishedRequest& valid,
                            RegistryCore::Done<v1::EvaluateRunFinishedResponse> done) {
                           core->EvaluateRunFinishedAsync(valid, std::move(done));
                         });
}

grpc::ServerUnaryReactor* RegistryService::EvaluateChange(grpc::CallbackServerContext* context,
                                                          const v1::EvaluateChangeRequest* request,
                                                          v1::EvaluateChangeResponse* response) {
  return ServeEvaluation(context, "EvaluateChange", kClientRoles, *request, response,
                         ValidateEvaluateChange,
                         [](RegistryCore* core, const v1::EvaluateChangeRequest& valid,
                            RegistryCore::Done<v1::EvaluateChangeResponse> done) {
                           core->EvaluateChangeAsync(valid, std::move(done));
                         });
}

grpc::ServerUnaryReactor* RegistryService::ListRegistrations(
    grpc::CallbackServerContext* context, const v1::ListRegistrationsRequest* request,
    v1::ListRegistrationsResponse* response) {
  return Serve(context, "ListRegistrations", kClientRoles, *request, response,
               ValidateListRegistrations,
               [](RegistryCore* core, const v1::ListRegistrationsRequest& valid, int64_t after_id) {
                 return core->ListRegistrations(valid, after_id);
               });
}

// Streaming, so not Serve: the same Admit, then a reactor of its own.
grpc::ServerWriteReactor<v1::ChangeEvent>* RegistryService::SubscribeChanges(
    grpc::CallbackServerContext* context, const v1::SubscribeChangesRequest* request) {
  absl::StatusOr<Admitted<v1::SubscribeChangesRequest>> admitted =
      Admit(context, "SubscribeChanges", kSubscriberRoles, *request, ValidateSubscribeChanges);
  if (!admitted.ok()) return new RejectReactor(admitted.status());
  v1::SubscribeChangesRequest& valid = admitted->request;
  // A registry serving one tenant never streams another's, whatever its
  // collection holds (the postgres sync source follows every tenant).
  const std::optional<std::string>& tenant = admitted->core->tenant();
  if (valid.all_tenants() && tenant.has_value()) {
    valid.set_all_tenants(false);
    valid.set_tenant_id(*tenant);
  }
  auto* reactor = new SubscribeReactor(*feed_.load(), *collection_.load(), valid);
  reactor->Start();
  return reactor;
}

grpc::ServerUnaryReactor* RegistryService::ClaimWakes(grpc::CallbackServerContext* context,
                                                      const v1::ClaimWakesRequest* request,
                                                      v1::ClaimWakesResponse* response) {
  return Serve(context, "ClaimWakes", kRuntimeRoles, *request, response, ValidateClaimWakes,
               [](RegistryCore* core, const v1::ClaimWakesRequest& valid, absl::Duration lease) {
                 return core->ClaimWakes(valid, lease);
               });
}

grpc::ServerUnaryReactor* RegistryService::ClaimStreams(grpc::CallbackServerContext* context,
                                                        const v1::ClaimStreamsRequest* request,
                                                        v1::ClaimStreamsResponse* response) {
  return Serve(
      context, "ClaimStreams", kRuntimeRoles, *request, response, ValidateClaimStreams,
      [](RegistryCore* core, const v1::ClaimStreamsRequest& valid,
         const std::vector<absl::Duration>& leases) { return core->ClaimStreams(valid, leases); });
}

grpc::ServerUnaryReactor* RegistryService::AckWakes(grpc::CallbackServerContext* context,
                                                    const v1::AckWakesRequest* request,
                                                    v1::AckWakesResponse* response) {
  return Serve(context, "AckWakes", kRuntimeRoles, *request, response, ValidateAckWakes,
               [](RegistryCore* core, const v1::AckWakesRequest& valid, absl::Duration lease) {
                 return core->AckWakes(valid, lease);
               });
}

grpc::ServerUnaryReactor* RegistryService::AckClaims(grpc::CallbackServerContext* context,
                                                     const v1::AckClaimsRequest* request,
                                                     v1::AckClaimsResponse* response) {
  return Serve(
      context, "AckClaims", kRuntimeRoles, *request, response, ValidateAckClaims,
      [](RegistryCore* core, const v1::AckClaimsRequest& valid,
         const std::vector<absl::Duration>& leases) { return core->AckClaims(valid, leases); });
}

grpc::ServerUnaryReactor* RegistryService::ExtendClaims(grpc::CallbackServerContext* context,
                                                        const v1::ExtendClaimsRequest* request,
                                                        v1::ExtendClaimsResponse* response) {
  return Serve(context, "ExtendClaims", kRuntimeRoles, *request, response, ValidateExtendClaims,
               [](RegistryCore* core, const v1::ExtendClaimsRequest& valid, absl::Duration lease) {
                 return core->ExtendClaims(valid, lease);
               });
}

grpc::ServerUnaryReactor* RegistryService::ReleaseClaim(grpc::CallbackServerContext* context,
                                                        const v1::ReleaseClaimRequest* request,
                                                        v1::ReleaseClaimResponse* response) {
  return Serve(context, "ReleaseClaim", kRuntimeRoles, *request, response, ValidateReleaseClaim,
               [](RegistryCore* core, const v1::ReleaseClaimRequest& valid) {
                 return core->ReleaseClaim(valid);
               });
}

}  // namespace wake::registry
