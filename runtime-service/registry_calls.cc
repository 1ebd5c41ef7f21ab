#include "runtime-service/registry_calls.h"

#include <utility>

#include "common/status_util.h"

namespace wake::runtime {

RegistryCalls::RegistryCalls(v1::WakeRegistry::StubInterface& stub, common::Executor& executor,
                             common::TimeSource& time, absl::Duration timeout, Batching batching)
    : stub_(stub), executor_(executor), time_(time), timeout_(timeout), batching_(batching) {}

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

namespace {

// An entry's status in a batch answer (a google.rpc.Code and its message).
absl::Status EntryStatus(int32_t code, const std::string& message) {
  if (code <= 0 || code > static_cast<int32_t>(absl::StatusCode::kUnauthenticated)) {
    return code == 0 ? absl::OkStatus() : absl::UnknownError(message);
  }
  return absl::Status(static_cast<absl::StatusCode>(code), message);
}

}  // namespace

template <typename Request, typename Response>
RegistryCalls::Entries<Request, Response> RegistryCalls::EnqueueLocked(
    Queue<Request, Response>& queue, Request& request, Done<Response>& done, bool* alone) {
  Entries<Request, Response> entries;
  if (queue.unsupported) {
    *alone = true;
    return entries;
  }
  *alone = false;
  queue.waiting.emplace_back(std::move(request), std::move(done));
  if (queue.in_flight >= batching_.max_in_flight) return entries;
  ++queue.in_flight;
  while (!queue.waiting.empty() && entries.size() < batching_.max_entries) {
    entries.push_back(std::move(queue.waiting.front()));
    queue.waiting.pop_front();
  }
  return entries;
}

template <typename Request, typename Response>
RegistryCalls::Entries<Request, Response> RegistryCalls::NextLocked(Queue<Request, Response>& queue,
                                                                    bool* alone) {
  Entries<Request, Response> entries;
  *alone = queue.unsupported;
  if (queue.waiting.empty() || queue.unsupported) {
    // Without batches, every waiting call goes on its own.
    for (auto& entry : queue.waiting) entries.push_back(std::move(entry));
    queue.waiting.clear();
    --queue.in_flight;
    return entries;
  }
  // The batch slot passes to the next batch.
  while (!queue.waiting.empty() && entries.size() < batching_.max_entries) {
    entries.push_back(std::move(queue.waiting.front()));
    queue.waiting.pop_front();
  }
  return entries;
}

void RegistryCalls::ClaimWakes(v1::ClaimWakesRequest request, Done<v1::ClaimWakesResponse> done) {
  if (!batching_.enabled) {
    ClaimWakesAlone(std::move(request), std::move(done));
    return;
  }
  bool alone = false;
  Entries<v1::ClaimWakesRequest, v1::ClaimWakesResponse> entries;
  {
    absl::MutexLock lock(&batch_mu_);
    entries = EnqueueLocked(claims_, request, done, &alone);
  }
  if (alone) {
    ClaimWakesAlone(std::move(request), std::move(done));
    return;
  }
  if (!entries.empty()) SendClaims(std::move(entries));
}

void RegistryCalls::AckWakes(v1::AckWakesRequest request, Done<v1::AckWakesResponse> done) {
  if (!batching_.enabled) {
    AckWakesAlone(std::move(request), std::move(done));
    return;
  }
  bool alone = false;
  Entries<v1::AckWakesRequest, v1::AckWakesResponse> entries;
  {
    absl::MutexLock lock(&batch_mu_);
    entries = EnqueueLocked(acks_, request, done, &alone);
  }
  if (alone) {
    AckWakesAlone(std::move(request), std::move(done));
    return;
  }
  if (!entries.empty()) SendAcks(std::move(entries));
}

void RegistryCalls::SendClaims(Entries<v1::ClaimWakesRequest, v1::ClaimWakesResponse> entries) {
  v1::ClaimStreamsRequest batch;
  for (const auto& entry : entries) *batch.add_claims() = entry.first;
  auto held = std::make_shared<decltype(entries)>(std::move(entries));
  Start<v1::ClaimStreamsRequest, v1::ClaimStreamsResponse>(
      std::move(batch),
      [this, held](absl::StatusOr<v1::ClaimStreamsResponse> result) {
        auto& entries = *held;
        if (!result.ok() && absl::IsUnimplemented(result.status())) {
          {
            absl::MutexLock lock(&batch_mu_);
            claims_.unsupported = true;
          }
          for (auto& [request, done] : entries) {
            ClaimWakesAlone(std::move(request), std::move(done));
          }
        } else {
          for (size_t i = 0; i < entries.size(); ++i) {
            Done<v1::ClaimWakesResponse>& done = entries[i].second;
            if (!result.ok()) {
              done(result.status());
            } else if (result->claims_size() != static_cast<int>(entries.size())) {
              done(absl::InternalError("ClaimStreams: wrong number of answers"));
            } else if (v1::ClaimOutcome& outcome = *result->mutable_claims(i);
                       outcome.code() == static_cast<int>(absl::StatusCode::kResourceExhausted)) {
              // The claims together outgrew the answer: this one goes alone.
              ClaimWakesAlone(std::move(entries[i].first), std::move(done));
            } else if (outcome.code() != 0) {
              done(EntryStatus(outcome.code(), outcome.message()));
            } else {
              done(std::move(*outcome.mutable_claim()));
            }
          }
        }
        bool alone = false;
        Entries<v1::ClaimWakesRequest, v1::ClaimWakesResponse> next;
        {
          absl::MutexLock lock(&batch_mu_);
          next = NextLocked(claims_, &alone);
        }
        if (alone) {
          for (auto& [request, done] : next) ClaimWakesAlone(std::move(request), std::move(done));
        } else if (!next.empty()) {
          SendClaims(std::move(next));
        }
      },
      [](Stub& stub, grpc::ClientContext* context, const v1::ClaimStreamsRequest& req,
         v1::ClaimStreamsResponse* resp) { return stub.ClaimStreams(context, req, resp); },
      [](AsyncApi* api, grpc::ClientContext* context, const v1::ClaimStreamsRequest* req,
         v1::ClaimStreamsResponse* resp,
         Callback cb) { api->ClaimStreams(context, req, resp, std::move(cb)); });
}

void RegistryCalls::SendAcks(Entries<v1::AckWakesRequest, v1::AckWakesResponse> entries) {
  v1::AckClaimsRequest batch;
  for (const auto& entry : entries) *batch.add_acks() = entry.first;
  auto held = std::make_shared<decltype(entries)>(std::move(entries));
  Start<v1::AckClaimsRequest, v1::AckClaimsResponse>(
      std::move(batch),
      [this, held](absl::StatusOr<v1::AckClaimsResponse> result) {
        auto& entries = *held;
        if (!result.ok() && absl::IsUnimplemented(result.status())) {
          {
            absl::MutexLock lock(&batch_mu_);
            acks_.unsupported = true;
          }
          for (auto& [request, done] : entries) {
            AckWakesAlone(std::move(request), std::move(done));
          }
        } else {
          for (size_t i = 0; i < entries.size(); ++i) {
            Done<v1::AckWakesResponse>& done = entries[i].second;
            if (!result.ok()) {
              done(result.status());
            } else if (result->acks_size() != static_cast<int>(entries.size())) {
              done(absl::InternalError("AckClaims: wrong number of answers"));
            } else if (v1::AckOutcome& outcome = *result->mutable_acks(i); outcome.code() != 0) {
              done(EntryStatus(outcome.code(), outcome.message()));
            } else {
              done(std::move(*outcome.mutable_ack()));
            }
          }
        }
        bool alone = false;
        Entries<v1::AckWakesRequest, v1::AckWakesResponse> next;
        {
          absl::MutexLock lock(&batch_mu_);
          next = NextLocked(acks_, &alone);
        }
        if (alone) {
          for (auto& [request, done] : next) AckWakesAlone(std::move(request), std::move(done));
        } else if (!next.empty()) {
          SendAcks(std::move(next));
        }
      },
      [](Stub& stub, grpc::ClientContext* context, const v1::AckClaimsRequest& req,
         v1::AckClaimsResponse* resp) { return stub.AckClaims(context, req, resp); },
      [](AsyncApi* api, grpc::ClientContext* context, const v1::AckClaimsRequest* req,
         v1::AckClaimsResponse* resp,
         Callback cb) { api->AckClaims(context, req, resp, std::move(cb)); });
}

void RegistryCalls::ClaimWakesAlone(v1::ClaimWakesRequest request,
                                    Done<v1::ClaimWakesResponse> done) {
  Start<v1::ClaimWakesRequest, v1::ClaimWakesResponse>(
      std::move(request), std::move(done),
      [](Stub& stub, grpc::ClientContext* context, const v1::ClaimWakesRequest& req,
         v1::ClaimWakesResponse* resp) { return stub.ClaimWakes(context, req, resp); },
      [](AsyncApi* api, grpc::ClientContext* context, const v1::ClaimWakesRequest* req,
         v1::ClaimWakesResponse* resp,
         Callback cb) { api->ClaimWakes(context, req, resp, std::move(cb)); });
}

void RegistryCalls::AckWakesAlone(v1::AckWakesRequest request, Done<v1::AckWakesResponse> done) {
  Start<v1::AckWakesRequest, v1::AckWakesResponse>(
      std::move(request), std::move(done),
      [](Stub& stub, grpc::ClientContext* context, const v1::AckWakesRequest& req,
         v1::AckWakesResponse* resp) { return stub.AckWakes(context, req, resp); },
      [](AsyncApi* api, grpc::ClientContext* context, const v1::AckWakesRequest* req,
         v1::AckWakesResponse* resp,
         Callback cb) { api->AckWakes(context, req, resp, std::move(cb)); });
}

void RegistryCalls::ExtendClaims(v1::ExtendClaimsRequest request,
                                 Done<v1::ExtendClaimsResponse> done) {
  Start<v1::ExtendClaimsRequest, v1::ExtendClaimsResponse>(
      std::move(request), std::move(done),
      [](Stub& stub, grpc::ClientContext* context, const v1::ExtendClaimsRequest& req,
         v1::ExtendClaimsResponse* resp) { return stub.ExtendClaims(context, req, resp); },
      [](AsyncApi* api, grpc::ClientContext* context, const v1::ExtendClaimsRequest* req,
         v1::ExtendClaimsResponse* resp,
         Callback cb) { api->ExtendClaims(context, req, resp, std::move(cb)); });
}

void RegistryCalls::ReleaseClaim(v1::ReleaseClaimRequest request,
                                 Done<v1::ReleaseClaimResponse> done) {
  Start<v1::ReleaseClaimRequest, v1::ReleaseClaimResponse>(
      std::move(request), std::move(done),
      [](Stub& stub, grpc::ClientContext* context, const v1::ReleaseClaimRequest& req,
         v1::ReleaseClaimResponse* resp) { return stub.ReleaseClaim(context, req, resp); },
      [](AsyncApi* api, grpc::ClientContext* context, const v1::ReleaseClaimRequest* req,
         v1::ReleaseClaimResponse* resp,
         Callback cb) { api->ReleaseClaim(context, req, resp, std::move(cb)); });
}

}  // namespace wake::runtime
