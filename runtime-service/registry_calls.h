// Unary calls from the runtime to the registry, completed through callbacks.
//
// With the real stub the gRPC callback API (`stub.async()`) is used: no thread
// waits per call, which measured clearly faster than blocking calls on a
// pool of threads on these 2-core machines. Stubs that
// offer no callback API (the generated gMock stub returns nullptr from
// async()) get the blocking API run on `executor`, so unit tests drive the
// same code with plain synchronous mock expectations.
//
// With batching on, ClaimWakes and AckWakes calls are carried in batches
// (ClaimStreams, AckClaims): a call goes out at once while fewer than
// `max_in_flight` batches of its kind are in flight, else it waits for the
// next batch, which takes every call waiting (up to `max_entries`). A lone
// call therefore waits for nothing, and under load one RPC and one registry
// transaction serve many streams. A registry that answers a batch
// UNIMPLEMENTED (an older version) gets single calls from then on.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/executor.h"
#include "common/time_source.h"
#include "grpcpp/client_context.h"
#include "wake/v1/registry.grpc.pb.h"

namespace wake::runtime {

// How RegistryCalls batches ClaimWakes and AckWakes (see above).
struct CallBatching {
  bool enabled = false;
  // Calls per batch at most (the registry accepts 256).
  size_t max_entries = 256;
  // Batches of one kind in flight at once.
  int max_in_flight = 2;
};

class RegistryCalls {
 public:
  template <typename Response>
  using Done = std::function<void(absl::StatusOr<Response>)>;

  using Batching = CallBatching;

  // `timeout` is the deadline of each call. The references must outlive this.
  RegistryCalls(v1::WakeRegistry::StubInterface& stub, common::Executor& executor,
                common::TimeSource& time, absl::Duration timeout,
                Batching batching = CallBatching());
  // Cancels what is in flight and waits for running completions; blocking
  // calls still queued on the executor are dropped (their `done` never runs).
  ~RegistryCalls();

  // `done` runs once (unless this object is destroyed first), on a gRPC or
  // executor thread, never inline, with the response or the call's status
  // mapped to absl::Status.
  void ClaimWakes(v1::ClaimWakesRequest request, Done<v1::ClaimWakesResponse> done);
  void AckWakes(v1::AckWakesRequest request, Done<v1::AckWakesResponse> done);
  void ExtendClaims(v1::ExtendClaimsRequest request, Done<v1::ExtendClaimsResponse> done);
  void ReleaseClaim(v1::ReleaseClaimRequest request, Done<v1::ReleaseClaimResponse> done);

  // Cancels every call in flight (they complete with CANCELLED).
  void CancelAll();

 private:
  template <typename Request, typename Response>
  struct Call {
    grpc::ClientContext context;
    Request request;
    Response response;
    Done<Response> done;
  };

  // Outlives this object in the tasks posted to the executor, so a task that
  // starts after destruction sees `closed` and drops its call.
  struct Shared {
    absl::Mutex mu;
    bool closed ABSL_GUARDED_BY(mu) = false;
    // Calls whose completion is still to come (for CancelAll).
    absl::flat_hash_set<grpc::ClientContext*> in_flight ABSL_GUARDED_BY(mu);
    // Callback-API calls started and blocking calls running right now: the
    // destructor waits for both.
    int pending_callbacks ABSL_GUARDED_BY(mu) = 0;
    int running_blocking ABSL_GUARDED_BY(mu) = 0;
  };

  template <typename Request, typename Response, typename SyncMethod, typename AsyncMethod>
  void Start(Request request, Done<Response> done, SyncMethod sync, AsyncMethod async);

  void ClaimWakesAlone(v1::ClaimWakesRequest request, Done<v1::ClaimWakesResponse> done);
  void AckWakesAlone(v1::AckWakesRequest request, Done<v1::AckWakesResponse> done);

  // The calls of one kind waiting for a batch, and its batches in flight.
  template <typename Request, typename Response>
  struct Queue {
    std::deque<std::pair<Request, Done<Response>>> waiting;
    int in_flight = 0;
    // The registry answered UNIMPLEMENTED: single calls from now on.
    bool unsupported = false;
  };
  using ClaimQueue = Queue<v1::ClaimWakesRequest, v1::ClaimWakesResponse>;
  using AckQueue = Queue<v1::AckWakesRequest, v1::AckWakesResponse>;
  template <typename Request, typename Response>
  using Entries = std::vector<std::pair<Request, Done<Response>>>;

  // Queues a call (moved from) and returns the entries of a batch to send
  // now, if one may start; with *alone, batches are unsupported and the call
  // is left as it was.
  template <typename Request, typename Response>
  Entries<Request, Response> EnqueueLocked(Queue<Request, Response>& queue, Request& request,
                                           Done<Response>& done, bool* alone)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(batch_mu_);
  // After a batch of `queue` completed: the next batch to send, if any, or
  // with *alone (batches unsupported) every waiting call, to send singly.
  template <typename Request, typename Response>
  Entries<Request, Response> NextLocked(Queue<Request, Response>& queue, bool* alone)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(batch_mu_);
  // The two kinds of batched call (registry_calls.cc): their messages and RPCs.
  struct ClaimKind;
  struct AckKind;
  ClaimQueue& QueueLocked(ClaimKind) ABSL_EXCLUSIVE_LOCKS_REQUIRED(batch_mu_);
  AckQueue& QueueLocked(AckKind) ABSL_EXCLUSIVE_LOCKS_REQUIRED(batch_mu_);
  void Alone(ClaimKind, v1::ClaimWakesRequest request, Done<v1::ClaimWakesResponse> done);
  void Alone(AckKind, v1::AckWakesRequest request, Done<v1::AckWakesResponse> done);
  // A call of `Kind`: alone, or into its queue and maybe out in a batch.
  template <typename Kind>
  void Submit(Kind kind, typename Kind::Request request, Done<typename Kind::Response> done);
  // Sends one batch and answers each of its calls; then the next batch.
  template <typename Kind>
  void SendBatch(Kind kind, Entries<typename Kind::Request, typename Kind::Response> entries);

  v1::WakeRegistry::StubInterface& stub_;
  common::Executor& executor_;
  common::TimeSource& time_;
  const absl::Duration timeout_;
  const Batching batching_;
  const std::shared_ptr<Shared> shared_ = std::make_shared<Shared>();
  absl::Mutex batch_mu_;
  ClaimQueue claims_ ABSL_GUARDED_BY(batch_mu_);
  AckQueue acks_ ABSL_GUARDED_BY(batch_mu_);
};

}  // namespace wake::runtime
