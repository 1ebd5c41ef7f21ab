#include "runtime-service/registry_calls.h"

#include <utility>

#include "common/status_util.h"

namespace wake::runtime {

RegistryCalls::RegistryCalls(v1::WakeRegistry::StubInterface& stub, common::Executor& executor,
                             common::TimeSource& time, absl::Duration timeout)
    : stub_(stub), executor_(executor), time_(time), timeout_(timeout) {}

RegistryCalls::~RegistryCalls() {
  Shared& shared = *shared_;
  absl::MutexLock lock(&shared.mu);
  shared.closed = true;
  for (grpc::ClientContext* context : shared.in_flight) context->TryCancel();
  auto quiet = [&shared]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(shared.mu) {
    return shared.pending_callbacks == 0 && shared.running_blocking == 0;
  };
  shared.mu.Await(absl::Condition(&quiet));
}

template <typename Request, typename Response, typename SyncMethod, typename AsyncMethod>
void RegistryCalls::Start(Request request, Done<Response> done, SyncMethod sync,
                          AsyncMethod async) {
  auto call = std::make_shared<Call<Request, Response>>();
  call->request = std::move(request);
  call->done = std::move(done);
  call->context.set_deadline(absl::ToChronoTime(time_.SystemNow() + timeout_));
  v1::WakeRegistry::StubInterface::async_interface* api = stub_.async();
  {
    absl::MutexLock lock(&shared_->mu);
    if (shared_->closed) return;
    shared_->in_flight.insert(&call->context);
    if (api != nullptr) ++shared_->pending_callbacks;
  }
  // Runs the caller's callback, then lets the destructor go on.
  auto complete = [shared = shared_, call](const grpc::Status& status, bool callback_api) {
    {
      absl::MutexLock lock(&shared->mu);
      shared->in_flight.erase(&call->context);
    }
    absl::StatusOr<Response> result =
        status.ok() ? absl::StatusOr<Response>(std::move(call->response))
                    : absl::StatusOr<Response>(common::FromGrpcStatus(status));
    Done<Response> done = std::move(call->done);
    done(std::move(result));
    absl::MutexLock lock(&shared->mu);
    if (callback_api) {
      --shared->pending_callbacks;
    } else {
      --shared->running_blocking;
    }
  };
  if (api != nullptr) {
    async(api, &call->context, &call->request, &call->response,
          [complete](grpc::Status status) { complete(status, true); });
    return;
  }
  executor_.Post([shared = shared_, stub = &stub_, call, sync, complete] {
    {
      absl::MutexLock lock(&shared->mu);
      if (shared->closed) {
        shared->in_flight.erase(&call->context);
        return;
      }
      ++shared->running_blocking;
    }
    complete(sync(*stub, &call->context, call->request, &call->response), false);
  });
}

void RegistryCalls::CancelAll() {
  absl::MutexLock lock(&shared_->mu);
  for (grpc::ClientContext* context : shared_->in_flight) context->TryCancel();
}

using Stub = v1::WakeRegistry::StubInterface;
using AsyncApi = v1::WakeRegistry::StubInterface::async_interface;
using Callback = std::function<void(grpc::Status)>;

void RegistryCalls::ClaimWakes(v1::ClaimWakesRequest request,
                               Done<v1::ClaimWakesResponse> done) {
  Start<v1::ClaimWakesRequest, v1::ClaimWakesResponse>(
      std::move(request), std::move(done),
      [](Stub& stub, grpc::ClientContext* context, const v1::ClaimWakesRequest& req,
         v1::ClaimWakesResponse* resp) { return stub.ClaimWakes(context, req, resp); },
      [](AsyncApi* api, grpc::ClientContext* context, const v1::ClaimWakesRequest* req,
         v1::ClaimWakesResponse* resp, Callback cb) {
        api->ClaimWakes(context, req, resp, std::move(cb));
      });
}

void RegistryCalls::AckWakes(v1::AckWakesRequest request, Done<v1::AckWakesResponse> done) {
  Start<v1::AckWakesRequest, v1::AckWakesResponse>(
      std::move(request), std::move(done),
      [](Stub& stub, grpc::ClientContext* context, const v1::AckWakesRequest& req,
         v1::AckWakesResponse* resp) { return stub.AckWakes(context, req, resp); },
      [](AsyncApi* api, grpc::ClientContext* context, const v1::AckWakesRequest* req,
         v1::AckWakesResponse* resp, Callback cb) {
        api->AckWakes(context, req, resp, std::move(cb));
      });
}

void RegistryCalls::ExtendClaims(v1::ExtendClaimsRequest request,
                                 Done<v1::ExtendClaimsResponse> done) {
  Start<v1::ExtendClaimsRequest, v1::ExtendClaimsResponse>(
      std::move(request), std::move(done),
      [](Stub& stub, grpc::ClientContext* context, const v1::ExtendClaimsRequest& req,
         v1::ExtendClaimsResponse* resp) { return stub.ExtendClaims(context, req, resp); },
      [](AsyncApi* api, grpc::ClientContext* context, const v1::ExtendClaimsRequest* req,
         v1::ExtendClaimsResponse* resp, Callback cb) {
        api->ExtendClaims(context, req, resp, std::move(cb));
      });
}

void RegistryCalls::ReleaseClaim(v1::ReleaseClaimRequest request,
                                 Done<v1::ReleaseClaimResponse> done) {
  Start<v1::ReleaseClaimRequest, v1::ReleaseClaimResponse>(
      std::move(request), std::move(done),
      [](Stub& stub, grpc::ClientContext* context, const v1::ReleaseClaimRequest& req,
         v1::ReleaseClaimResponse* resp) { return stub.ReleaseClaim(context, req, resp); },
      [](AsyncApi* api, grpc::ClientContext* context, const v1::ReleaseClaimRequest* req,
         v1::ReleaseClaimResponse* resp, Callback cb) {
        api->ReleaseClaim(context, req, resp, std::move(cb));
      });
}

}  // namespace wake::runtime
