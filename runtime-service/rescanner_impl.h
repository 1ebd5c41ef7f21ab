// Rescanner over the registry's SubscribeChanges: a snapshot from "-1" (kinds
// WAKE and CONTROL, all tenants) read up to its first UP_TO_DATE, then
// cancelled.
//
// A wake becomes pending in the registry's collection a moment before the
// live follower hears of it, so the snapshot is compared with what the
// scheduler knows only once the follower has caught up with the snapshot's
// offset ("<epoch>_<seq>" of one registry process; when the epochs differ or
// an offset is not of that form, after `settle` instead). The follower only
// wants wakes, and the registry moves its offset past the registration
// changes it skips only once per 1024 of them: a follower that is up to date
// and has received nothing for `settle` counts as caught up. The registry takes
// the snapshot's offset before reading its pending wakes, so a wake made
// pending in between is announced just after that offset: what is still
// unaccounted then is looked at again `settle` later, and only what is
// unaccounted both times is counted and triggered.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/executor.h"
#include "common/time_source.h"
#include "grpcpp/client_context.h"
#include "runtime-service/registry_follower.h"
#include "runtime-service/rescanner.h"
#include "runtime-service/trigger_sink.h"
#include "runtime-service/wake_accounting.h"
#include "wake/v1/registry.grpc.pb.h"

namespace wake::runtime {

struct RescanOptions {
  // Time between rescans; zero turns rescanning off.
  absl::Duration interval = absl::Seconds(30);
  // See the file comment.
  absl::Duration settle = absl::Seconds(1);
  // How often the follower's offset is looked at while waiting for it, and
  // how long it may take to catch up before the rescan is skipped.
  absl::Duration catch_up_poll = absl::Milliseconds(50);
  absl::Duration catch_up_timeout = absl::Seconds(10);
  // Deadline of the snapshot read.
  absl::Duration read_timeout = absl::Seconds(60);
};

class RescannerImpl final : public Rescanner {
 public:
  // The references must outlive this object. The snapshot is read (blocking)
  // on `executor`; the comparison runs on `time`'s timer.
  RescannerImpl(v1::WakeRegistry::StubInterface& registry, RegistryFollower& follower,
                WakeAccounting& accounting, TriggerSink& triggers, common::TimeSource& time,
                common::Executor& executor, RescanOptions options);
  // Stops and waits for a snapshot read under way (the executor must still
  // run the work posted to it).
  ~RescannerImpl() override;

  void Start() override;
  void Stop() override;
  RescanStatus Status() override;

 private:
  enum class Stage {
    kIdle,        // Waiting for the next rescan (timer armed when started).
    kReading,     // The snapshot read is on the executor.
    kCatchingUp,  // Waiting for the follower (or the settle time).
    kSettling,    // Unaccounted wakes found; looking again after `settle`.
  };

  void OnTimer();
  void Read();
  // Compares once the follower caught up; otherwise re-arms the timer.
  void CatchUp();
  void Compare();
  void Recheck();
  // Ends the current rescan and arms the timer for the next one.
  void FinishLocked(bool completed) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  v1::WakeRegistry::StubInterface& registry_;
  RegistryFollower& follower_;
  WakeAccounting& accounting_;
  TriggerSink& triggers_;
  common::TimeSource& time_;
  common::Executor& executor_;
  const RescanOptions options_;

  absl::Mutex mu_;
  bool started_ ABSL_GUARDED_BY(mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  Stage stage_ ABSL_GUARDED_BY(mu_) = Stage::kIdle;
  // The executor has a Read() queued or running.
  bool reading_ ABSL_GUARDED_BY(mu_) = false;
  grpc::ClientContext* context_ ABSL_GUARDED_BY(mu_) = nullptr;
  // The snapshot of the current rescan.
  std::vector<PendingStream> snapshot_ ABSL_GUARDED_BY(mu_);
  std::string snapshot_offset_ ABSL_GUARDED_BY(mu_);
  common::MonotonicTime snapshot_started_ ABSL_GUARDED_BY(mu_);
  common::MonotonicTime snapshot_read_ ABSL_GUARDED_BY(mu_);
  // The follower's offset as last seen while catching up, and since when.
  std::string follower_offset_seen_ ABSL_GUARDED_BY(mu_);
  common::MonotonicTime follower_still_since_ ABSL_GUARDED_BY(mu_);
  std::vector<PendingStream> candidates_ ABSL_GUARDED_BY(mu_);
  RescanStatus status_ ABSL_GUARDED_BY(mu_);
  common::TimerPtr timer_;
};

}  // namespace wake::runtime
