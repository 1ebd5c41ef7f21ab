// The `electric` sync source: follows `wake_registrations` (and, unless
// switched off, `wakes`) through Electric's HTTP shape API.
//
// Each table is one shape, followed by its own thread: initial sync from
// offset -1 page by page (electric-offset / electric-handle) until the
// up-to-date control message, then live long polls with the cursor. A 409 or
// must-refetch on either shape resyncs both under a fresh snapshot (the
// observer has one OnReset for the whole source). 5xx, timeouts, connection
// errors and malformed responses are retried from the same position with
// jittered backoff; a response is only applied once it parsed completely.
//
// Read barrier: the caller's "current LSN" (pg_current_wal_lsn()) is compared
// with the global_last_seen_lsn of the last up-to-date each shape delivered;
// a shape that is behind interrupts its long poll and asks Electric once more
// without `live` (one request serves every waiting caller), repeating at
// `barrier_poll_interval` while Electric itself lags.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/sync/electric/electric_shape_client.h"
#include "common/sync/electric/http_client.h"
#include "common/sync/sync_source.h"
#include "common/time_source.h"

namespace wake::sync {

struct ElectricSyncConfig {
  // Electric's base URL, e.g. "http://electric:3000".
  std::string url;
  // ELECTRIC_SECRET, sent as the `secret` parameter when set.
  std::string secret;
  // Empty = all tenants; otherwise the shapes carry `where tenant_id = '...'`.
  std::string tenant;
  // Also follow `wakes` (SyncTable::kWakes). Off = registrations only.
  bool follow_wakes = true;

  absl::Duration request_timeout = absl::Seconds(30);
  absl::Duration live_timeout = absl::Seconds(90);
  absl::Duration connect_timeout = absl::Seconds(10);
  absl::Duration backoff_initial = absl::Milliseconds(100);
  absl::Duration backoff_max = absl::Seconds(10);
  // Pause between barrier requests while Electric has not reached the target.
  absl::Duration barrier_poll_interval = absl::Milliseconds(25);
};

// Returns the database's current WAL position (pg_current_wal_lsn()).
using CurrentLsnProvider = std::function<absl::StatusOr<uint64_t>()>;

// Makes one HTTP client per shape. Defaults to CurlHttpClient.
using HttpClientFactory = std::function<HttpClientPtr()>;

class ElectricSyncSource final : public SyncSource {
 public:
  // `current_lsn` may be empty; Barrier() then fails with FAILED_PRECONDITION.
  ElectricSyncSource(ElectricSyncConfig config, common::TimeSource& time,
                     CurrentLsnProvider current_lsn, HttpClientFactory http_factory = nullptr);
  ~ElectricSyncSource() override;

  ElectricSyncSource(const ElectricSyncSource&) = delete;
  ElectricSyncSource& operator=(const ElectricSyncSource&) = delete;

  // INVALID_ARGUMENT for a bad URL or a shape Electric rejects (400 etc., with
  // Electric's message); UNAVAILABLE (naming the last error) when the shapes
  // are not up to date within `startup_timeout`; FAILED_PRECONDITION when
  // called twice. On failure everything is stopped again.
  absl::Status Start(SyncObserver& observer, absl::Duration startup_timeout) override;

  // OK once every shape has delivered an up-to-date whose
  // global_last_seen_lsn is at or past the WAL position read at the call.
  // UNAVAILABLE when that does not happen within `timeout` or the position
  // cannot be read; FAILED_PRECONDITION when not running or no provider.
  absl::Status Barrier(absl::Duration timeout) override;

  // Must not be called from an observer callback.
  void Stop() override;

 private:
  struct Shape {
    std::string name;
    SyncTable table;
    HttpClientPtr http;
    std::unique_ptr<ElectricShapeClient> client;
    std::thread thread;
  };
  // Per-shape progress in the current epoch (a reset starts a new epoch).
  struct Progress {
    bool synced = false;  // Delivered an up-to-date since the last reset.
    uint64_t lsn = 0;     // global_last_seen_lsn of that up-to-date.
  };

  void RunShape(size_t index);
  // Applies one parsed response unless the epoch moved on; false if dropped.
  bool Deliver(size_t index, uint64_t epoch, SyncBatch batch, const ShapeResponse& response);
  void ReportFailure(size_t index, const absl::Status& status);
  // Starts a new epoch (unless someone already did since `epoch`) and makes
  // every shape resync; returns the current epoch.
  uint64_t BeginReset(size_t index, uint64_t epoch);
  // Waits `delay` of the time source's time; false when stopping.
  bool Pause(absl::Duration delay);
  absl::StatusOr<SyncBatch> ToBatch(const Shape& shape, const ShapeResponse& response) const;

  bool BarrierWantedLocked(size_t index) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool CaughtUpLocked(uint64_t lsn) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void WakeShapes();

  const ElectricSyncConfig config_;
  common::TimeSource& time_;
  const CurrentLsnProvider current_lsn_;
  // Fixed at construction; threads are started by Start().
  std::vector<std::unique_ptr<Shape>> shapes_;

  // Serializes observer calls; taken before mu_, never while holding it.
  absl::Mutex observer_mu_ ABSL_ACQUIRED_BEFORE(mu_);
  SyncObserver* observer_ = nullptr;  // Set by Start() before any thread runs.

  absl::Mutex stop_mu_;  // Serializes Stop().

  mutable absl::Mutex mu_;
  bool started_ ABSL_GUARDED_BY(mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool up_to_date_once_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status fatal_ ABSL_GUARDED_BY(mu_);       // Rejected configuration (startup).
  absl::Status last_error_ ABSL_GUARDED_BY(mu_);  // For startup / barrier messages.
  uint64_t epoch_ ABSL_GUARDED_BY(mu_) = 1;
  uint64_t reset_delivered_epoch_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<Progress> progress_ ABSL_GUARDED_BY(mu_);
  // Target LSNs of the barrier calls now waiting.
  std::multiset<uint64_t> barrier_targets_ ABSL_GUARDED_BY(mu_);
};

}  // namespace wake::sync
