#include "runtime-service/runtime_service.h"

#include <deque>
#include <memory>
#include <optional>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "common/auth/grpc_auth.h"
#include "common/status_util.h"
#include "runtime-service/runtime_validation.h"

namespace wake::runtime {
namespace {

using common::auth::PrincipalPtr;
using common::auth::Role;

constexpr std::initializer_list<Role> kRunnerRoles = {Role::kRunner, Role::kAdmin};

absl::StatusOr<PrincipalPtr> Authorize(common::auth::Authenticator& authenticator,
                                       const grpc::CallbackServerContext& context,
                                       std::initializer_list<Role> roles, const char* method) {
  absl::StatusOr<PrincipalPtr> principal = common::auth::AuthenticateCall(authenticator, context);
  if (!principal.ok()) return principal.status();
  if (absl::Status s = common::auth::RequireRole(**principal, roles, method); !s.ok()) return s;
  return principal;
}

grpc::ServerUnaryReactor* Reject(grpc::CallbackServerContext* context, const absl::Status& status) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  reactor->Finish(common::ToGrpcStatus(status));
  return reactor;
}

// One StreamWakeClaims call. gRPC owns the reactor until OnDone, where it
// deletes itself; the scheduler holds only the shared sink, which stops
// accepting claims once the call is over.
class ClaimStreamReactor final : public grpc::ServerWriteReactor<v1::WakeClaim> {
 public:
  class Sink final : public ClaimSink {
   public:
    explicit Sink(ClaimStreamReactor* reactor) : reactor_(reactor) {}

    bool Send(const v1::WakeClaim& claim) override {
      const v1::WakeClaim* to_write = nullptr;
      ClaimStreamReactor* reactor;
      {
        absl::MutexLock lock(&mu_);
        if (reactor_ == nullptr || closing_ || cancelled_) return false;
        queue_.push_back(claim);
        if (started_ && !writing_) {
          writing_ = true;
          to_write = &queue_.front();
        }
        reactor = reactor_;
      }
      // The reactor lives until the write completes: Finish waits for it.
      if (to_write != nullptr) reactor->StartWrite(to_write);
      return true;
    }

    void Close(const absl::Status& status) override { End(status, /*now=*/false); }

    // Ends the stream before it started (bad request, Connect refused).
    void Fail(const absl::Status& status) { End(status, /*now=*/true); }

    // Sends the initial metadata (telling the runner its session is
    // registered), then the claims queued meanwhile. The metadata takes the
    // write slot so no write can overtake it.
    void Start() {
      ClaimStreamReactor* reactor;
      {
        absl::MutexLock lock(&mu_);
        // A Close() that came first still lets the queued claims out.
        if (reactor_ == nullptr || cancelled_) return;
        started_ = true;
        writing_ = true;
        reactor = reactor_;
      }
      reactor->StartSendInitialMetadata();
    }

    void MetadataDone(bool ok) { OpDone(ok, /*wrote_claim=*/false); }
    void WriteDone(bool ok) { OpDone(ok, /*wrote_claim=*/true); }

    void OpDone(bool ok, bool wrote_claim) {
      const v1::WakeClaim* to_write = nullptr;
      ClaimStreamReactor* reactor;
      grpc::Status finish;
      {
        absl::MutexLock lock(&mu_);
        if (wrote_claim) queue_.pop_front();
        if (!ok) cancelled_ = true;
        reactor = reactor_;
        if (!cancelled_ && !queue_.empty()) {
          to_write = &queue_.front();
        } else {
          writing_ = false;
          reactor = TakeFinishLocked();
          finish = finish_status_;
        }
      }
      if (to_write != nullptr) {
        reactor->StartWrite(to_write);
      } else if (reactor != nullptr) {
        reactor->Finish(finish);
      }
    }

    void Cancelled() {
      ClaimStreamReactor* reactor;
      {
        absl::MutexLock lock(&mu_);
        cancelled_ = true;
        if (!closing_) finish_status_ = grpc::Status::CANCELLED;
        reactor = TakeFinishLocked();
      }
      if (reactor != nullptr) reactor->Finish(grpc::Status::CANCELLED);  // Nobody listens.
    }

    void Done() {
      absl::MutexLock lock(&mu_);
      reactor_ = nullptr;
    }

   private:
    void End(const absl::Status& status, bool now) {
      ClaimStreamReactor* reactor = nullptr;
      grpc::Status finish;
      {
        absl::MutexLock lock(&mu_);
        if (reactor_ == nullptr || closing_) return;
        closing_ = true;
        if (now) started_ = true;  // Start() will not come.
        if (!cancelled_) finish_status_ = common::ToGrpcStatus(status);
        reactor = TakeFinishLocked();
        finish = finish_status_;
      }
      if (reactor != nullptr) reactor->Finish(finish);
    }

    // The reactor to call Finish on, once: when cancelled, or when closing
    // and every queued claim is out; never while an operation is outstanding.
    ClaimStreamReactor* TakeFinishLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      if (finished_ || writing_ || reactor_ == nullptr) return nullptr;
      if (!cancelled_ && !(closing_ && started_ && queue_.empty())) return nullptr;
      finished_ = true;
      return reactor_;
    }

    absl::Mutex mu_;
    ClaimStreamReactor* reactor_ ABSL_GUARDED_BY(mu_);
    // Claims waiting to be written; the front one is being written.
    std::deque<v1::WakeClaim> queue_ ABSL_GUARDED_BY(mu_);
    bool started_ ABSL_GUARDED_BY(mu_) = false;
    // A write (or the initial metadata) is outstanding.
    bool writing_ ABSL_GUARDED_BY(mu_) = false;
    bool closing_ ABSL_GUARDED_BY(mu_) = false;
    bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
    bool finished_ ABSL_GUARDED_BY(mu_) = false;
    grpc::Status finish_status_ ABSL_GUARDED_BY(mu_);
  };

  ClaimStreamReactor(ClaimScheduler& scheduler, common::auth::Authenticator& authenticator,
                     grpc::CallbackServerContext* context,
                     const v1::StreamWakeClaimsRequest& request)
      : scheduler_(scheduler), sink_(std::make_shared<Sink>(this)) {
    absl::StatusOr<PrincipalPtr> principal =
        Authorize(authenticator, *context, kRunnerRoles, "StreamWakeClaims");
    if (!principal.ok()) {
      sink_->Fail(principal.status());
      return;
    }
    absl::StatusOr<RunnerSpec> spec = ToRunnerSpec(request);
    if (!spec.ok()) {
      sink_->Fail(spec.status());
      return;
    }
    if (absl::Status s = common::auth::RequireTenant(**principal, spec->tenant_id); !s.ok()) {
      sink_->Fail(s);
      return;
    }
    spec->principal = (*principal)->name;
    absl::StatusOr<SessionId> session = scheduler_.Connect(*spec, sink_);
    if (!session.ok()) {
      sink_->Fail(session.status());
      return;
    }
    session_ = *session;
    context->AddInitialMetadata(std::string(kSessionMetadataKey), spec->session_id);
    sink_->Start();
  }

  void OnSendInitialMetadataDone(bool ok) override { sink_->MetadataDone(ok); }
  void OnWriteDone(bool ok) override { sink_->WriteDone(ok); }
  void OnCancel() override { sink_->Cancelled(); }
  void OnDone() override {
    sink_->Done();
    if (session_.has_value()) scheduler_.Disconnect(*session_);
    delete this;
  }

 private:
  ClaimScheduler& scheduler_;
  const std::shared_ptr<Sink> sink_;
  // Set in the constructor, before gRPC can call any reaction.
  std::optional<SessionId> session_;
};

}  // namespace

RuntimeService::RuntimeService(ClaimScheduler& scheduler, RegistryFollower& follower,
                               common::auth::Authenticator& authenticator, Rescanner* rescanner)
    : scheduler_(scheduler),
      follower_(follower),
      authenticator_(authenticator),
      rescanner_(rescanner) {}

grpc::ServerWriteReactor<v1::WakeClaim>* RuntimeService::StreamWakeClaims(
    grpc::CallbackServerContext* context, const v1::StreamWakeClaimsRequest* request) {
  return new ClaimStreamReactor(scheduler_, authenticator_, context, *request);
}

grpc::ServerUnaryReactor* RuntimeService::AckClaim(grpc::CallbackServerContext* context,
                                                   const v1::AckClaimRequest* request,
                                                   v1::AckClaimResponse* response) {
  absl::StatusOr<PrincipalPtr> principal =
      Authorize(authenticator_, *context, kRunnerRoles, "AckClaim");
  if (!principal.ok()) return Reject(context, principal.status());
  absl::StatusOr<AckRequest> ack = ToAckRequest(*request);
  if (!ack.ok()) return Reject(context, ack.status());
  // The registry checks only the token, and the runtime's own credential
  // holds every tenant: the runner's tenants are checked here.
  if (absl::Status s = common::auth::RequireTenant(**principal, ack->tenant_id); !s.ok()) {
    return Reject(context, s);
  }
  ack->principal = (*principal)->name;
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  scheduler_.Ack(*ack, [reactor, response](absl::StatusOr<AckResult> result) {
    if (result.ok()) {
      response->set_acked(result->acked);
      response->set_more_pending(result->more_pending);
    }
    reactor->Finish(common::ToGrpcStatus(result.status()));
  });
  return reactor;
}

grpc::ServerUnaryReactor* RuntimeService::Heartbeat(grpc::CallbackServerContext* context,
                                                    const v1::HeartbeatRequest* request,
                                                    v1::HeartbeatResponse* response) {
  absl::StatusOr<PrincipalPtr> principal =
      Authorize(authenticator_, *context, kRunnerRoles, "Heartbeat");
  if (!principal.ok()) return Reject(context, principal.status());
  if (absl::Status valid = ValidateHeartbeat(*request); !valid.ok()) return Reject(context, valid);
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  scheduler_.Heartbeat(request->runner_id(), request->session_id(), (*principal)->name,
                       [reactor, response](absl::StatusOr<HeartbeatResult> result) {
                         if (result.ok()) ToProto(*result, response);
                         reactor->Finish(common::ToGrpcStatus(result.status()));
                       });
  return reactor;
}

grpc::ServerUnaryReactor* RuntimeService::GetHealth(grpc::CallbackServerContext* context,
                                                    const v1::GetHealthRequest* /*request*/,
                                                    v1::GetHealthResponse* response) {
  absl::StatusOr<PrincipalPtr> principal =
      Authorize(authenticator_, *context, {Role::kRuntime, Role::kAdmin}, "GetHealth");
  if (!principal.ok()) return Reject(context, principal.status());
  ToProto(scheduler_.Health(), follower_.Status(),
          rescanner_ != nullptr ? rescanner_->Status() : RescanStatus(), response);
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

}  // namespace wake::runtime
