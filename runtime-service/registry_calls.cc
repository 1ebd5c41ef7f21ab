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

// What differs between the two kinds of batch: their messages, where the
// answer of each entry is, and the batch RPC.
struct RegistryCalls::ClaimKind {
  using Request = v1::ClaimWakesRequest;
  using Response = v1::ClaimWakesResponse;
  using BatchRequest = v1::ClaimStreamsRequest;
  using BatchResponse = v1::ClaimStreamsResponse;
  static constexpr const char* kWrongCount = "ClaimStreams: wrong number of answers";
  // The claims together outgrew the answer: such an entry goes alone.
  static constexpr bool kExhaustedGoesAlone = true;
  static Request* Add(BatchRequest& batch) { return batch.add_claims(); }
  static int Answers(const BatchResponse& batch) { return batch.claims_size(); }
  static v1::ClaimOutcome& Outcome(BatchResponse& batch, int i) { return *batch.mutable_claims(i); }
  static Response& Answer(v1::ClaimOutcome& outcome) { return *outcome.mutable_claim(); }
  static grpc::Status Call(Stub& stub, grpc::ClientContext* context, const BatchRequest& request,
                           BatchResponse* response) {
    return stub.ClaimStreams(context, request, response);
  }
  static void CallAsync(AsyncApi* api, grpc::ClientContext* context, const BatchRequest* request,
                        BatchResponse* response, Callback done) {
    api->ClaimStreams(context, request, response, std::move(done));
  }
};

struct RegistryCalls::AckKind {
  using Request = v1::AckWakesRequest;
  using Response = v1::AckWakesResponse;
  using BatchRequest = v1::AckClaimsRequest;
  using BatchResponse = v1::AckClaimsResponse;
  static constexpr const char* kWrongCount = "AckClaims: wrong number of answers";
  // The registry drops an ack's `next` claim instead of failing the entry.
  static constexpr bool kExhaustedGoesAlone = false;
  static Request* Add(BatchRequest& batch) { return batch.add_acks(); }
  static int Answers(const BatchResponse& batch) { return batch.acks_size(); }
  static v1::AckOutcome& Outcome(BatchResponse& batch, int i) { return *batch.mutable_acks(i); }
  static Response& Answer(v1::AckOutcome& outcome) { return *outcome.mutable_ack(); }
  static grpc::Status Call(Stub& stub, grpc::ClientContext* context, const BatchRequest& request,
                           BatchResponse* response) {
    return stub.AckClaims(context, request, response);
  }
  static void CallAsync(AsyncApi* api, grpc::ClientContext* context, const BatchRequest* request,
                        BatchResponse* response, Callback done) {
    api->AckClaims(context, request, response, std::move(done));
  }
};

RegistryCalls::ClaimQueue& RegistryCalls::QueueLocked(ClaimKind) { return claims_; }

RegistryCalls::AckQueue& RegistryCalls::QueueLocked(AckKind) { return acks_; }

void RegistryCalls::Alone(ClaimKind, v1::ClaimWakesRequest request,
                          Done<v1::ClaimWakesResponse> done) {
  ClaimWakesAlone(std::move(request), std::move(done));
}

void RegistryCalls::Alone(AckKind, v1::AckWakesRequest request, Done<v1::AckWakesResponse> done) {
  AckWakesAlone(std::move(request), std::move(done));
}

void RegistryCalls::ClaimWakes(v1::ClaimWakesRequest request, Done<v1::ClaimWakesResponse> done) {
  Submit(ClaimKind(), std::move(request), std::move(done));
}

void RegistryCalls::AckWakes(v1::AckWakesRequest request, Done<v1::AckWakesResponse> done) {
  Submit(AckKind(), std::move(request), std::move(done));
}

template <typename Kind>
void RegistryCalls::Submit(Kind kind, typename Kind::Request request,
                           Done<typename Kind::Response> done) {
  if (!batching_.enabled) {
    Alone(kind, std::move(request), std::move(done));
    return;
  }
  bool alone = false;
  Entries<typename Kind::Request, typename Kind::Response> entries;
  {
    absl::MutexLock lock(&batch_mu_);
    entries = EnqueueLocked(QueueLocked(kind), request, done, &alone);
  }
  if (alone) {
    Alone(kind, std::move(request), std::move(done));
    return;
  }
  if (!entries.empty()) SendBatch(kind, std::move(entries));
}

template <typename Kind>
void RegistryCalls::SendBatch(Kind kind,
                              Entries<typename Kind::Request, typename Kind::Response> entries) {
  using Response = typename Kind::Response;
  using BatchRequest = typename Kind::BatchRequest;
  using BatchResponse = typename Kind::BatchResponse;
  BatchRequest batch;
  for (const auto& entry : entries) *Kind::Add(batch) = entry.first;
  auto held = std::make_shared<decltype(entries)>(std::move(entries));
  Start<BatchRequest, BatchResponse>(
      std::move(batch),
      [this, kind, held](absl::StatusOr<BatchResponse> result) {
        auto& entries = *held;
        if (!result.ok() && absl::IsUnimplemented(result.status())) {
          {
            absl::MutexLock lock(&batch_mu_);
            QueueLocked(kind).unsupported = true;
          }
          for (auto& [request, done] : entries) Alone(kind, std::move(request), std::move(done));
        } else {
          for (size_t i = 0; i < entries.size(); ++i) {
            Done<Response>& done = entries[i].second;
            if (!result.ok()) {
              done(result.status());
            } else if (Kind::Answers(*result) != static_cast<int>(entries.size())) {
              done(absl::InternalError(Kind::kWrongCount));
            } else if (auto& outcome = Kind::Outcome(*result, static_cast<int>(i));
                       Kind::kExhaustedGoesAlone &&
                       outcome.code() == static_cast<int>(absl::StatusCode::kResourceExhausted)) {
              Alone(kind, std::move(entries[i].first), std::move(done));
            } else if (outcome.code() != 0) {
              done(EntryStatus(outcome.code(), outcome.message()));
            } else {
              done(std::move(Kind::Answer(outcome)));
            }
          }
        }
        bool alone = false;
        Entries<typename Kind::Request, Response> next;
        {
          absl::MutexLock lock(&batch_mu_);
          next = NextLocked(QueueLocked(kind), &alone);
        }
        if (alone) {
          for (auto& [request, done] : next) Alone(kind, std::move(request), std::move(done));
        } else if (!next.empty()) {
          SendBatch(kind, std::move(next));
        }
      },
      &Kind::Call, &Kind::CallAsync);
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
