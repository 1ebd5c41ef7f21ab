// Follows whether a sync source can follow its upstream, for the registry's
// gRPC health: a SyncObserver that forwards every call to the collection and
// reports a failure (OnDisconnected with any code but UNAVAILABLE: the
// upstream rejects this replica's requests, or the source stopped on data it
// cannot decode) and the recovery that follows (the next OnUpToDate).
// UNAVAILABLE disconnects are transient and retried: they change nothing.
#pragma once

#include <functional>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "common/sync/sync_source.h"

namespace wake::sync {

class SyncHealthObserver final : public SyncObserver {
 public:
  // `on_change(healthy, why)` runs on the source's thread, outside any lock
  // of this class, once per change of state; `why` is OK when healthy.
  using OnChange = std::function<void(bool healthy, const absl::Status& why)>;
  SyncHealthObserver(SyncObserver& inner, OnChange on_change)
      : inner_(inner), on_change_(std::move(on_change)) {}

  void OnReset() override { inner_.OnReset(); }
  void OnBatch(SyncBatch batch) override { inner_.OnBatch(std::move(batch)); }
  void OnUpToDate() override {
    inner_.OnUpToDate();
    if (Set(absl::OkStatus())) on_change_(true, absl::OkStatus());
  }
  void OnDisconnected(const absl::Status& why) override {
    inner_.OnDisconnected(why);
    if (!absl::IsUnavailable(why) && !why.ok() && Set(why)) on_change_(false, why);
  }

  // OK while following; otherwise why not.
  absl::Status failure() {
    absl::MutexLock lock(&mu_);
    return failure_;
  }

 private:
  // Records the state; true when it changed between healthy and failed.
  bool Set(const absl::Status& status) {
    absl::MutexLock lock(&mu_);
    const bool changed = failure_.ok() != status.ok();
    failure_ = status;
    return changed;
  }

  SyncObserver& inner_;
  const OnChange on_change_;
  absl::Mutex mu_;
  absl::Status failure_ ABSL_GUARDED_BY(mu_);
};

}  // namespace wake::sync
