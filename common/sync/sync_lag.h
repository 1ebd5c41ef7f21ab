// Measures how far the synced view trails the database: a SyncObserver that
// forwards every call and reports, for each batch whose commit time the
// source knows, the time from that commit to the batch reaching the
// observer (the registry's "sync lag" metric).
#pragma once

#include <functional>

#include "common/sync/sync_source.h"
#include "common/time_source.h"

namespace wake::sync {

class SyncLagObserver final : public SyncObserver {
 public:
  // `on_lag` runs on the source's thread for each such batch, before it is
  // forwarded. Negative lags (clocks of two hosts) are reported as zero.
  SyncLagObserver(SyncObserver& inner, common::TimeSource& time,
                  std::function<void(absl::Duration)> on_lag)
      : inner_(inner), time_(time), on_lag_(std::move(on_lag)) {}

  void OnReset() override { inner_.OnReset(); }
  void OnBatch(SyncBatch batch) override {
    if (batch.committed_at.has_value()) {
      on_lag_(std::max(time_.SystemNow() - *batch.committed_at, absl::ZeroDuration()));
    }
    inner_.OnBatch(std::move(batch));
  }
  void OnUpToDate() override { inner_.OnUpToDate(); }
  void OnDisconnected(const absl::Status& why) override { inner_.OnDisconnected(why); }

 private:
  SyncObserver& inner_;
  common::TimeSource& time_;
  const std::function<void(absl::Duration)> on_lag_;
};

}  // namespace wake::sync
