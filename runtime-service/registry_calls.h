// Unary calls from the runtime to the registry, completed through callbacks.
//
// With the real stub the gRPC callback API (`stub.async()`) is used: no thread
// waits per call, which PERF_FACTS.md measured as clearly faster. Stubs that
// offer no callback API (the generated gMock stub returns nullptr from
// async()) get the blocking API run on `executor`, so unit tests drive the
// same code with plain synchronous mock expectations.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>

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

class RegistryCalls {
 public:
  template <typename Response>
  using Done = std::function<void(absl::StatusOr<Response>)>;

  // `timeout` is the deadline of each call. The references must outlive this.
  RegistryCalls(v1::WakeRegistry::StubInterface& stub, common::Executor& executor,
                common::TimeSource& time, absl::Duration timeout);
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

  v1::WakeRegistry::StubInterface& stub_;
  common::Executor& executor_;
  common::TimeSource& time_;
  const absl::Duration timeout_;
  const std::shared_ptr<Shared> shared_ = std::make_shared<Shared>();
};

}  // namespace wake::runtime
