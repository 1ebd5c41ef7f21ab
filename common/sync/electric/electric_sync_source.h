// The `electric` sync source: follows `wake_registrations` (and, unless
// switched off, `wakes`) through Electric's HTTP shape API.
//
// Each table is one shape, followed by its own thread: initial sync from
// offset -1 page by page (electric-offset / electric-handle) until the
// up-to-date control message, then live long polls with the cursor. A 409 or
// must-refetch on either shape resyncs both under a fresh snapshot (the
// observer has one OnReset for the whole source). 5xx, timeouts, connection
// errors and malformed responses are retried from the same position with
// jittered backoff (never sooner than a Retry-After asks); a response is only
// applied once it parsed completely. docs/electric.md has the rules and the
// Electric source file each one follows.
//
// Transactions: a transaction's messages are delivered together, once its
// last message (`last: true`), a message of a later transaction or an
// up-to-date has arrived; a response that ends inside a transaction holds its
// messages back until the rest arrives. Electric's txids are the 32-bit xids
// of pgoutput; they are widened to xid8 like the postgres source does.
//
// Stops: a row that cannot be decoded stops the source (DATA_LOSS, naming
// table, key and column): retrying the same offset would fail forever. A
// request Electric rejects after startup (400, 401, 403) is reported and
// retried at the longest backoff.
//
// Read barrier: Electric's global_last_seen_lsn is the position of the last
// transaction it processed, so it never reaches the database's WAL position
// on a quiet database. Instead, a barrier writes this replica's row of
// `wake_sync_markers` (one write serves every barrier waiting at the time),
// waits for that write in the markers shape, and then until every data shape
// has delivered an up-to-date at or past the position Electric reported with
// the marker (a shape that is behind leaves its long poll for a non-live
// request).
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

// The marker table (registry-service/migrations/0004_sync_markers.sql).
inline constexpr char kMarkersTable[] = "wake_sync_markers";

struct ElectricSyncConfig {
  // Electric's base URL, e.g. "http://electric:3000".
  std::string url;
  // ELECTRIC_SECRET, sent as the `secret` parameter when set.
  std::string secret;
  // Empty = all tenants; otherwise the shapes carry `where tenant_id = '...'`.
  std::string tenant;
  // Also follow `wakes` (SyncTable::kWakes). Off = registrations only.
  bool follow_wakes = true;
  // This replica's row in wake_sync_markers; unique per process. Empty: a
  // random one.
  std::string marker_id;

  absl::Duration request_timeout = absl::Seconds(30);
  absl::Duration live_timeout = absl::Seconds(90);
  absl::Duration connect_timeout = absl::Seconds(10);
  absl::Duration backoff_initial = absl::Milliseconds(100);
  absl::Duration backoff_max = absl::Seconds(10);
  // Pause between barrier requests of a shape Electric has not brought to
  // the marker's position yet.
  absl::Duration barrier_poll_interval = absl::Milliseconds(10);
};

// What the source needs from the database itself.
struct ElectricDatabase {
  // Sets this replica's marker row (replica_id = marker id) to `seq` in a
  // transaction of its own, committed when it returns OK. Empty: Barrier()
  // fails with FAILED_PRECONDITION and no markers shape is followed.
  std::function<absl::Status(const std::string& marker_id, int64_t seq)> write_marker;
  // The database's next xid8 (pg_snapshot_xmax(pg_current_snapshot())): the
  // first reference for widening Electric's 32-bit txids, before a
  // snapshot-end message gives one. May be empty.
  std::function<absl::StatusOr<int64_t>()> next_xid;
};

// Makes one HTTP client per shape. Defaults to CurlHttpClient.
using HttpClientFactory = std::function<HttpClientPtr()>;

class ElectricSyncSource final : public SyncSource {
 public:
  ElectricSyncSource(ElectricSyncConfig config, common::TimeSource& time, ElectricDatabase database,
                     HttpClientFactory http_factory = nullptr);
  ~ElectricSyncSource() override;

  ElectricSyncSource(const ElectricSyncSource&) = delete;
  ElectricSyncSource& operator=(const ElectricSyncSource&) = delete;

  // INVALID_ARGUMENT for a bad URL or a shape Electric rejects (400 etc., with
  // Electric's message), UNAUTHENTICATED for a rejected secret, DATA_LOSS for
  // a row that cannot be decoded; UNAVAILABLE (naming the last error) when
  // the shapes are not up to date within `startup_timeout`;
  // FAILED_PRECONDITION when called twice. On failure everything is stopped
  // again.
  absl::Status Start(SyncObserver& observer, absl::Duration startup_timeout) override;

  // Writes a marker (shared with every caller that arrived before the write
  // was sent) and returns OK once the marker came back through Electric and
  // every data shape delivered an up-to-date at or past its position.
  // UNAVAILABLE when that does not happen within `timeout`, the marker cannot
  // be written or the source stopped; FAILED_PRECONDITION when not running or
  // without a marker writer.
  absl::Status Barrier(absl::Duration timeout) override;

  // Must not be called from an observer callback.
  void Stop() override;

  struct Stats {
    uint64_t barrier_calls = 0;
    // Marker rows written; fewer than barrier_calls when callers shared them.
    uint64_t marker_writes = 0;
  };
  Stats stats();
  const std::string& marker_id() const { return config_.marker_id; }

 private:
  struct Shape {
    std::string name;
    SyncTable table;
    bool markers = false;  // The barrier's markers shape (never delivered).
    HttpClientPtr http;
    std::unique_ptr<ElectricShapeClient> client;
    std::thread thread;
  };
  // Per-shape progress in the current epoch (a reset starts a new epoch).
  struct Progress {
    bool synced = false;  // Delivered an up-to-date since the last reset.
    uint64_t lsn = 0;     // Highest global_last_seen_lsn of those up-to-dates.
    // Markers shape: this replica's highest marker seq delivered since the
    // last up-to-date (it counts once an up-to-date follows).
    int64_t marker_seq = 0;
  };
  // The messages of a transaction whose end has not arrived yet.
  struct OpenTransaction {
    std::string id;  // Its lsn header (or txids), "" when nothing is open.
    std::vector<ShapeChange> changes;
  };
  // A response turned into complete transactions.
  struct Assembled {
    SyncBatch batch;
    int64_t marker_seq = 0;  // Highest seq of this replica's marker row seen.
  };

  void RunShape(size_t index);
  // Applies one assembled response unless the epoch moved on; false if dropped.
  bool Deliver(size_t index, uint64_t epoch, Assembled assembled, const ShapeResponse& response);
  void ReportFailure(size_t index, const absl::Status& status);
  // The source cannot go on (a row that cannot be decoded): every shape stops.
  void StopWithError(size_t index, const absl::Status& status);
  // Starts a new epoch (unless someone already did since `epoch`) and makes
  // every shape resync; returns the current epoch.
  uint64_t BeginReset(size_t index, uint64_t epoch);
  // Waits `delay` of the time source's time; false when stopping.
  bool Pause(absl::Duration delay);
  // Closes complete transactions of `response` into a batch; what is still
  // open stays in `open`. DATA_LOSS for a row that cannot be decoded.
  absl::StatusOr<Assembled> Assemble(const Shape& shape, const ShapeResponse& response,
                                     OpenTransaction* open);
  absl::Status Decode(const Shape& shape, const ShapeChange& change, Assembled* out);
  int64_t WidenXid(int64_t xid);
  void NoteXidReference(int64_t xid8);

  bool BarrierWantedLocked(size_t index) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool CaughtUpLocked(uint64_t lsn) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Makes sure a marker written after the call's arrival has been committed;
  // returns its seq.
  absl::StatusOr<int64_t> WriteMarkerLocked(const bool& timed_out)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void WakeShapes();

  ElectricSyncConfig config_;
  common::TimeSource& time_;
  const ElectricDatabase database_;
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
  absl::Status stopped_ ABSL_GUARDED_BY(mu_);     // Stopped by an undecodable row.
  absl::Status last_error_ ABSL_GUARDED_BY(mu_);  // For startup / barrier messages.
  uint64_t epoch_ ABSL_GUARDED_BY(mu_) = 1;
  uint64_t reset_delivered_epoch_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<Progress> progress_ ABSL_GUARDED_BY(mu_);
  // Target LSNs of the barrier calls now waiting for the data shapes.
  std::multiset<uint64_t> barrier_targets_ ABSL_GUARDED_BY(mu_);
  // Marker rounds: a caller needs a write sent after it arrived.
  uint64_t marker_rounds_issued_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t marker_rounds_done_ ABSL_GUARDED_BY(mu_) = 0;
  bool marker_in_flight_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status marker_error_ ABSL_GUARDED_BY(mu_);  // Of the last round.
  int64_t marker_written_seq_ ABSL_GUARDED_BY(mu_) = 0;
  // The highest seq of this replica's marker the markers shape delivered (up
  // to date), and the LSN Electric reported with it.
  int64_t marker_seen_seq_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t marker_lsn_ ABSL_GUARDED_BY(mu_) = 0;
  Stats stats_ ABSL_GUARDED_BY(mu_);

  absl::Mutex xid_mu_;
  // Every widened xid is the xid8 nearest this (the highest xid8 known).
  int64_t xid_reference_ ABSL_GUARDED_BY(xid_mu_) = 0;
};

}  // namespace wake::sync
