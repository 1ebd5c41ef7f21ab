// The sync interface: how a registry replica's in-memory collections are
// filled and kept current. Two implementations: `postgres` (logical
// replication, embedded default) and `electric` (Electric's shape API).
//
// A source is never a one-time load: after its initial snapshot it follows
// every committed change, and it reports up-to-date only when everything
// committed up to that point has been delivered.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "common/sync/registration.h"

namespace wake::sync {

enum class SyncTable { kRegistrations, kWakes };

struct RowChange {
  SyncTable table = SyncTable::kRegistrations;
  ChangeOp op = ChangeOp::kInsert;
  // Set when table == kRegistrations. For kDelete, the deleted row (sources
  // must deliver at least its id; `postgres` and `electric` with
  // replica=full deliver the whole row).
  std::optional<Registration> registration;
  // Set when table == kWakes. For kDelete at least id/tenant_id/stream.
  std::optional<WakeRow> wake;
};

// Snapshot rows, or the changes of committed transactions, in commit order.
struct SyncBatch {
  std::vector<RowChange> changes;
  // Postgres transaction ids (xid8, as pg_current_xact_id() returns) that
  // this batch completes. Empty for snapshot rows.
  std::vector<int64_t> txids;
  // When the batch's transaction committed, when the source knows it (the
  // postgres source, from pgoutput's Commit); unset for snapshot rows and
  // for Electric, whose messages carry no commit time.
  std::optional<absl::Time> committed_at;
};

// Receives what a source delivers. All calls come from the source's own
// thread, one at a time, in order.
class SyncObserver {
 public:
  virtual ~SyncObserver() = default;

  // A fresh snapshot follows (first sync, must-refetch, or resync after a
  // reconnect that could not resume): the observer must forget every synced
  // row once the snapshot's OnUpToDate arrives.
  virtual void OnReset() = 0;

  virtual void OnBatch(SyncBatch batch) = 0;

  // Everything committed up to now has been delivered (after the snapshot,
  // and again whenever the source catches up).
  virtual void OnUpToDate() = 0;

  // The source lost its upstream. UNAVAILABLE: a transient fault, retried
  // with backoff. Any other code: it cannot follow until something changes
  // (INVALID_ARGUMENT / UNAUTHENTICATED / PERMISSION_DENIED: the upstream
  // rejects the configuration, still retried slowly; DATA_LOSS: it stopped on
  // data it cannot decode); the replica must not report itself serving until
  // the next OnUpToDate.
  virtual void OnDisconnected(const absl::Status& why) = 0;
};

class SyncSource {
 public:
  virtual ~SyncSource() = default;

  // Starts following in the background and blocks until the first
  // OnUpToDate has been delivered. UNAVAILABLE (naming the cause) if that
  // does not happen within `startup_timeout`; INVALID_ARGUMENT for a
  // configuration the upstream rejects. Call once.
  virtual absl::Status Start(SyncObserver& observer, absl::Duration startup_timeout) = 0;

  // Read barrier: returns OK once every transaction that committed before
  // this call has been delivered (OnBatch returned). Concurrent callers share
  // upstream round trips. UNAVAILABLE if that cannot be established within
  // `timeout` (source disconnected, database down).
  virtual absl::Status Barrier(absl::Duration timeout) = 0;

  // Stops following and releases upstream resources (replication slot,
  // HTTP requests). Idempotent; no observer call happens after it returns.
  virtual void Stop() = 0;
};

using SyncSourcePtr = std::unique_ptr<SyncSource>;

}  // namespace wake::sync
