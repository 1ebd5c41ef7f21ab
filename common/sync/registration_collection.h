// The registry's in-memory view of `wake_registrations` (and of which streams
// have pending wakes), filled and kept current only by a SyncSource.
//
// * Rows are keyed by id and indexed by (tenant, source_url) and
//   (tenant, subscriber_url), so evaluation costs O(matches), not a scan; a
//   per-tenant id order makes a page of List() cost O(page), not O(rows).
// * Writes are optimistic: a mutation is visible at once, held until the sync
//   stream shows its transaction id, and rolled back if the write fails.
// * Listeners see enter / update / exit of rows and wake-available events, in
//   commit order; they drive timeout timers and SubscribeChanges.
// * A reset (first sync, must-refetch, resync after reconnect) is applied as
//   one diff when the new snapshot is up to date, so readers never see a
//   half-loaded collection.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/container/btree_set.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/container/inlined_vector.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/executor.h"
#include "common/sync/registration.h"
#include "common/sync/sync_source.h"
#include "common/time_source.h"

namespace wake::sync {

struct CollectionEvent {
  enum class Kind {
    kEnter,          // A registration appeared.
    kUpdate,         // A registration changed (old_row holds the previous version).
    kExit,           // A registration went away (row holds the last version).
    kWakeAvailable,  // A wake became pending for wake.stream.
    kUpToDate,       // Everything committed so far has been applied.
  };
  Kind kind = Kind::kEnter;
  Registration row;
  Registration old_row;
  WakeRow wake;
  // Transaction ids of the batch that caused the event (empty for snapshots
  // and optimistic changes).
  std::vector<int64_t> txids;
};

class RegistrationCollection final : public SyncObserver {
 public:
  using Listener = std::function<void(const CollectionEvent&)>;
  using MutationId = uint64_t;

  // `callbacks`, when given, runs the OnTxid callbacks of each synced
  // transaction (as one task), so the sync source's thread goes on reading.
  explicit RegistrationCollection(common::TimeSource& time, common::Executor* callbacks = nullptr);
  ~RegistrationCollection() override;

  // --- SyncObserver (called by the sync source's thread) ---
  void OnReset() override;
  void OnBatch(SyncBatch batch) override;
  void OnUpToDate() override;
  void OnDisconnected(const absl::Status& why) override;

  // --- Reads: synced rows overlaid with optimistic mutations ---

  // Registrations of `tenant` watching `source_url` (only rows with an id).
  std::vector<Registration> BySource(const std::string& tenant, const std::string& source_url);
  // Calls `fn` for each such registration without copying; `fn` must not
  // call back into the collection. Returns how many were visited.
  size_t ForEachBySource(const std::string& tenant, const std::string& source_url,
                         const std::function<void(const Registration&)>& fn);
  std::vector<Registration> BySubscriber(const std::string& tenant,
                                         const std::string& subscriber_url);
  std::optional<Registration> Get(int64_t id);
  // The first `limit` rows of `tenant` with id > after_id, ordered by id,
  // optionally filtered by source and/or subscriber. Costs O(limit) (plus the
  // pending mutations) whatever the collection's size: unfiltered pages walk
  // the tenant's id order, filtered ones the smaller index list.
  std::vector<Registration> List(const std::string& tenant, const std::string& source_url,
                                 const std::string& subscriber_url, int64_t after_id, size_t limit);
  // Every row of `tenant` (or all tenants when `tenant` is nullopt).
  std::vector<Registration> Snapshot(const std::optional<std::string>& tenant);
  // Pending wakes of `tenant` (or all tenants), ordered by id.
  std::vector<WakeRow> PendingWakes(const std::optional<std::string>& tenant);

  // The same a page at a time, so a subscriber's snapshot never copies the
  // collection: rows after `cursor` (ordered by tenant, then id), at most
  // `limit`; the cursor moves past them and is done after the last page.
  struct SnapshotCursor {
    std::string tenant;
    int64_t after_id = 0;
    bool done = false;
  };
  std::vector<Registration> SnapshotPage(const std::optional<std::string>& tenant,
                                         SnapshotCursor* cursor, size_t limit);
  // Pending wakes with id > *after_id, at most `limit`, ordered by id;
  // *after_id moves past them. Empty once there are no more.
  std::vector<WakeRow> PendingWakesPage(const std::optional<std::string>& tenant, int64_t* after_id,
                                        size_t limit);
  // True when the sync stream has shown a wake of (tenant, stream) that is
  // pending (committed, not claimed, not deleted as far as the stream knows).
  bool HasPendingWake(const std::string& tenant, const std::string& stream);
  size_t size();
  // Number of wakes the stream has shown pending (for metrics).
  size_t PendingWakeCount();
  bool up_to_date();

  // --- Optimistic mutations ---

  // Makes `row` visible at once (keyed by its identity; id may still be 0).
  MutationId BeginUpsert(const Registration& row);
  // Hides the rows with these ids at once (one intent, however many rows).
  MutationId BeginDelete(const std::vector<int64_t>& ids);
  // The write committed: `row` (upserts) is the stored row, `txid` its
  // transaction (0 when nothing was written, which ends the mutation). The
  // mutation stays visible until the sync stream shows `txid`.
  void Commit(MutationId id, const std::optional<Registration>& row, int64_t txid);
  // The write failed: undo the mutation.
  void Rollback(MutationId id);
  // Blocks until the sync stream has shown `txid` (true) or `timeout` of the
  // time source passed (false; the write is then accepted as committed and
  // its mutation stays visible until the txid shows or a reset). Waiters sit
  // on their own mutex (readers of the collection never re-check them) and
  // share one timer.
  bool AwaitTxid(int64_t txid, absl::Duration timeout);
  // AwaitTxid without a parked thread: `done(true)` runs once the stream
  // shows `txid` (on the callback executor, else the sync source's thread;
  // at once, here, if it already has), `done(false)` on the time source's
  // timer thread after `timeout`. Exactly one call; `done` must not block.
  void OnTxid(int64_t txid, absl::Duration timeout, std::function<void(bool)> done);
  bool TxidSeen(int64_t txid);

  // --- Listeners ---
  int AddListener(Listener listener);
  void RemoveListener(int handle);

  // Number of optimistic mutations not yet confirmed (for tests and health).
  size_t PendingMutations();

 private:
  struct Mutation {
    enum class Kind { kUpsert, kDelete } kind;
    Registration row;          // kUpsert.
    std::vector<int64_t> ids;  // kDelete.
    int64_t txid = 0;          // Set by Commit.
    bool committed = false;
  };
  using RowPtr = std::shared_ptr<const Registration>;
  // Keyed by a hash of (tenant, url) rather than the strings themselves to
  // keep memory per row small; readers re-check the row's own fields, so a
  // collision costs a comparison, never a wrong match. Most keys hold one or a
  // few ids: an inline vector is far smaller than a set. Kept sorted, so a
  // filtered page starts with a binary search.
  using IdList = absl::InlinedVector<int64_t, 1>;
  using Index = absl::flat_hash_map<uint64_t, IdList>;
  struct Table {
    absl::flat_hash_map<int64_t, RowPtr> by_id;
    Index by_source;
    Index by_subscriber;
    // Ids of each tenant in order: unfiltered pages.
    absl::flat_hash_map<std::string, absl::btree_set<int64_t>> by_tenant;
    std::map<int64_t, WakeRow> pending_wakes;
    // Number of pending wakes per StreamKey(tenant, stream).
    absl::flat_hash_map<std::string, int> pending_streams;
  };

  static std::string StreamKey(const std::string& tenant, const std::string& stream);

  static uint64_t IndexKey(const std::string& tenant, const std::string& url);
  static void Insert(Table& table, RowPtr row);
  static void Erase(Table& table, int64_t id);
  // Applies one change to `table`, appending the resulting events.
  static void Apply(Table& table, const RowChange& change, const std::vector<int64_t>& txids,
                    std::vector<CollectionEvent>* events);

  bool HiddenLocked(int64_t id) const ABSL_SHARED_LOCKS_REQUIRED(mu_);
  // Every mutation leaves mutations_ through here (keeps hidden_ids_ right).
  using MutationMap = std::map<MutationId, Mutation>;
  MutationMap::iterator EraseMutationLocked(MutationMap::iterator it)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void NoteTxidsLocked(const std::vector<int64_t>& txids) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool SeenLocked(int64_t txid) const ABSL_SHARED_LOCKS_REQUIRED(txid_mu_) {
    return seen_txids_.contains(txid);
  }
  void OnWaitTimer();
  void Notify(const std::vector<CollectionEvent>& events);
  // Arms the shared timer for `deadline` unless it fires earlier already.
  void ArmWaitTimerLocked(common::MonotonicTime deadline) ABSL_EXCLUSIVE_LOCKS_REQUIRED(txid_mu_);
  // Takes the OnTxid callbacks of txids just seen (to run outside the locks).
  void TakeSeenCallbacksLocked(const std::vector<int64_t>& txids,
                               std::vector<std::function<void(bool)>>* ready)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(txid_mu_);

  common::TimeSource& time_;
  common::Executor* const callbacks_;

  absl::Mutex mu_;
  Table table_ ABSL_GUARDED_BY(mu_);
  // During a reset, the new snapshot is built here and swapped in at up-to-date.
  std::unique_ptr<Table> staged_ ABSL_GUARDED_BY(mu_);
  bool up_to_date_ ABSL_GUARDED_BY(mu_) = false;
  MutationMap mutations_ ABSL_GUARDED_BY(mu_);
  // Ids hidden by pending delete mutations, with how many hide each: reads
  // check one hash lookup per row instead of every mutation.
  absl::flat_hash_map<int64_t, int> hidden_ids_ ABSL_GUARDED_BY(mu_);
  MutationId next_mutation_ ABSL_GUARDED_BY(mu_) = 1;
  // Recently seen txids (the stream may show a txid before the writer asks).
  // Lock order: mu_ before txid_mu_.
  absl::Mutex txid_mu_ ABSL_ACQUIRED_AFTER(mu_);
  absl::flat_hash_set<int64_t> seen_txids_ ABSL_GUARDED_BY(txid_mu_);
  std::deque<int64_t> seen_order_ ABSL_GUARDED_BY(txid_mu_);
  // Deadlines of AwaitTxid callers, the one timer armed for the earliest, and
  // the time it last fired (every deadline up to it has passed).
  std::multiset<common::MonotonicTime> wait_deadlines_ ABSL_GUARDED_BY(txid_mu_);
  common::MonotonicTime wait_timer_at_ ABSL_GUARDED_BY(txid_mu_) = common::MonotonicTime::max();
  common::MonotonicTime waits_expired_up_to_ ABSL_GUARDED_BY(txid_mu_);
  // OnTxid callbacks by txid, and their deadlines (deadline -> (txid, ticket)).
  struct TxidCallback {
    uint64_t ticket = 0;
    common::MonotonicTime deadline;
    std::function<void(bool)> done;
  };
  absl::flat_hash_map<int64_t, std::vector<TxidCallback>> txid_callbacks_ ABSL_GUARDED_BY(txid_mu_);
  std::multimap<common::MonotonicTime, std::pair<int64_t, uint64_t>> callback_deadlines_
      ABSL_GUARDED_BY(txid_mu_);
  uint64_t next_ticket_ ABSL_GUARDED_BY(txid_mu_) = 1;

  absl::Mutex listeners_mu_;
  std::map<int, Listener> listeners_ ABSL_GUARDED_BY(listeners_mu_);
  int next_listener_ ABSL_GUARDED_BY(listeners_mu_) = 1;

  // Last: destroyed (and so disarmed) first.
  common::TimerPtr wait_timer_;
};

}  // namespace wake::sync
