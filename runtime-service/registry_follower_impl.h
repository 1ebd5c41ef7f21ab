// RegistryFollower over the generated WakeRegistry stub (blocking streaming
// API on the caller's thread: one long-lived stream needs no more).
#pragma once

#include <functional>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/backoff.h"
#include "common/time_source.h"
#include "grpcpp/client_context.h"
#include "runtime-service/registry_follower.h"
#include "runtime-service/trigger_sink.h"
#include "wake/v1/registry.grpc.pb.h"

namespace wake::runtime {

struct FollowerOptions {
  absl::Duration retry_initial = absl::Milliseconds(100);
  absl::Duration retry_max = absl::Seconds(10);
  // Called (outside locks) when the follower becomes up to date or stops
  // being so; main maps it to the gRPC health status.
  std::function<void(bool up_to_date)> on_up_to_date_changed;
};

class RegistryFollowerImpl final : public RegistryFollower {
 public:
  // The references must outlive this object.
  RegistryFollowerImpl(v1::WakeRegistry::StubInterface& registry, TriggerSink& triggers,
                       common::TimeSource& time, FollowerOptions options);
  ~RegistryFollowerImpl() override;

  void Run() override;
  void Stop() override;
  FollowerStatus Status() override;

  // One subscription, from open to end. Returns how long to wait before the
  // next one (zero after MUST_REFETCH). Exposed so tests step through
  // reconnects without threads.
  absl::Duration RunOnce();

 private:
  void SetUpToDate(bool up_to_date);

  v1::WakeRegistry::StubInterface& registry_;
  TriggerSink& triggers_;
  FollowerOptions options_;

  absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool woken_ ABSL_GUARDED_BY(mu_) = false;
  grpc::ClientContext* context_ ABSL_GUARDED_BY(mu_) = nullptr;
  bool subscribed_before_ ABSL_GUARDED_BY(mu_) = false;
  FollowerStatus status_ ABSL_GUARDED_BY(mu_);
  common::Backoff backoff_ ABSL_GUARDED_BY(mu_);
  common::TimerPtr wait_timer_;
};

}  // namespace wake::runtime
