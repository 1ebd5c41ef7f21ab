// A runner (agent host) for end-to-end tests of runtime-service: opens
// StreamWakeClaims, collects the claims it receives, acks and heartbeats.
//
//   auto runner = TestRunner::Connect(Connect(runtime->address), {.runner_id = "r1"});
//   auto claim = (*runner)->NextClaim(absl::Seconds(5));
//   (*runner)->Ack(*claim);
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "grpcpp/grpcpp.h"
#include "wake/v1/runtime.grpc.pb.h"

namespace wake::testing {

struct TestRunnerOptions {
  std::string runner_id = "test-runner";
  // Empty: a fresh id per Connect.
  std::string session_id;
  std::string tenant_id;
  std::vector<std::string> stream_prefixes;
  int max_in_flight = 0;
  // Ack every claim as soon as it arrives (all its wakes).
  bool auto_ack = false;
};

class TestRunner {
 public:
  // Opens the stream and waits until the runtime has registered the session
  // (its initial metadata). Returns the stream's status if it refused, or
  // UNAVAILABLE at once if the runtime cannot be reached (no wait_for_ready).
  static absl::StatusOr<std::unique_ptr<TestRunner>> Connect(std::shared_ptr<grpc::Channel> channel,
                                                             TestRunnerOptions options);

  // Closes the stream (as a runner that goes away would) and joins.
  ~TestRunner();

  const std::string& session_id() const { return options_.session_id; }

  // The next claim not yet taken by NextClaim, waiting up to `timeout`.
  // DEADLINE_EXCEEDED if none came; the stream's status if it ended.
  absl::StatusOr<v1::WakeClaim> NextClaim(absl::Duration timeout);

  // Every claim received so far, in arrival order.
  std::vector<v1::WakeClaim> Received();

  absl::StatusOr<v1::AckClaimResponse> Ack(const v1::WakeClaim& claim,
                                           const std::vector<int64_t>& wake_ids = {});
  absl::StatusOr<v1::HeartbeatResponse> Heartbeat();
  // A heartbeat in the name of another session of this runner (stale ones).
  absl::StatusOr<v1::HeartbeatResponse> HeartbeatAs(const std::string& session_id);

  // Cancels the stream without waiting for anything else (runner gone).
  void Disconnect();

  // Blocks until the stream ended; its status.
  absl::Status WaitClosed(absl::Duration timeout);

 private:
  TestRunner(std::shared_ptr<grpc::Channel> channel, TestRunnerOptions options);
  void ReadLoop();

  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::WakeRuntime::Stub> stub_;
  TestRunnerOptions options_;
  grpc::ClientContext context_;
  std::unique_ptr<grpc::ClientReader<v1::WakeClaim>> reader_;
  std::thread reader_thread_;

  absl::Mutex mu_;
  std::deque<v1::WakeClaim> unread_ ABSL_GUARDED_BY(mu_);
  std::vector<v1::WakeClaim> received_ ABSL_GUARDED_BY(mu_);
  std::optional<absl::Status> closed_ ABSL_GUARDED_BY(mu_);
};

}  // namespace wake::testing
