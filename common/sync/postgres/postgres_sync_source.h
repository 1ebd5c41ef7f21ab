// The embedded `postgres` sync source: follows wake_registrations and wakes
// through a temporary logical replication slot (pgoutput over libpq's
// replication protocol). Each (re)connection creates a fresh slot, reads a
// consistent snapshot with the slot's exported snapshot, then streams every
// transaction committed after it, one SyncBatch per transaction with its
// xid8. Barrier() compares the server's WAL flush position with the stream's
// position, so a reader can see its own and everybody's committed writes.
#pragma once

#include <cstdint>
#include <memory>
#include <set>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/sync/postgres/pgoutput.h"
#include "common/sync/sync_source.h"
#include "common/time_source.h"

namespace wake::sync {

class PqConnection;

struct PostgresSyncSourceOptions {
  // Must exist (the registry's migrations create it).
  std::string publication = "wakeline_sync";
  // Slots are named <prefix>_<random hex>; [a-z0-9_], at most 40 characters.
  std::string slot_prefix = "wakeline_sync";
  // Reconnect backoff (full jitter, see common/backoff.h).
  absl::Duration backoff_initial = absl::Milliseconds(100);
  absl::Duration backoff_max = absl::Seconds(5);
  // Limit for connecting and for each setup query of one attempt.
  absl::Duration connect_timeout = absl::Seconds(10);
  // How often the stream reports its position (lets the server recycle WAL);
  // each report asks for an answer, and a server silent for three intervals
  // is taken as gone.
  absl::Duration status_interval = absl::Seconds(10);
  // While a Barrier waits, how often to ask the walsender for its position
  // again (it also reports by itself when it runs out of WAL).
  absl::Duration barrier_repoll_interval = absl::Milliseconds(20);
  // Snapshot rows per OnBatch.
  int snapshot_batch_rows = 1000;
};

class PostgresSyncSource final : public SyncSource {
 public:
  // `database_url`: libpq URI or key=value string of the registry database.
  PostgresSyncSource(std::string database_url, common::TimeSource& time,
                     PostgresSyncSourceOptions options = {});
  // Stops (see Stop()).
  ~PostgresSyncSource() override;

  PostgresSyncSource(const PostgresSyncSource&) = delete;
  PostgresSyncSource& operator=(const PostgresSyncSource&) = delete;

  // INVALID_ARGUMENT at once for an unparseable URL, a missing publication,
  // missing tables or columns, wal_level below logical or a role without
  // REPLICATION; UNAVAILABLE naming the last error when not up to date
  // within `startup_timeout` (the source is then stopped); FAILED_PRECONDITION
  // when called twice.
  absl::Status Start(SyncObserver& observer, absl::Duration startup_timeout) override;

  // One `SELECT pg_current_wal_flush_lsn()` shared by every caller that
  // arrived before it was sent, then a wait until the stream has delivered
  // that position (asking the walsender for its position when needed).
  // Only transactions whose commit record is flushed count as committed: the
  // default synchronous_commit=on guarantees that when COMMIT returns. (Rare:
  // a flush position inside a WAL record, left by a background page flush,
  // is only reached once more WAL is flushed.)
  // UNAVAILABLE on timeout (naming why: disconnected, or behind), or after
  // Stop(); FAILED_PRECONDITION before Start().
  absl::Status Barrier(absl::Duration timeout) override;

  // Closes every connection (the temporary slot goes with its session) and
  // joins the streaming thread; pending Barrier calls return UNAVAILABLE.
  // Must not be called from an observer callback.
  void Stop() override;

  // The current replication slot, "" while disconnected (for tests and
  // logs).
  std::string SlotName();

  // Counters for tests and benchmarks.
  struct Stats {
    uint64_t barrier_calls = 0;
    // Flush-position queries sent; fewer than barrier_calls when concurrent
    // callers shared them.
    uint64_t flush_queries = 0;
    // Standby status updates that asked the walsender for its position.
    uint64_t reply_requests = 0;
    // Connections that reached up-to-date (1 + successful resyncs).
    uint64_t sessions_up_to_date = 0;
  };
  Stats stats();

 private:
  class Session;

  void Run();
  // One connection's life: connect, slot, snapshot, stream. Returns why it
  // ended (CANCELLED when stopping; ABORTED asks for an immediate resync).
  absl::Status RunSession(bool* reached_up_to_date);
  bool Stopping();

  // Waits `delay` on the time source, or less if Stop() is called.
  void BackoffWait(absl::Duration delay);

  // Barrier helpers.
  absl::StatusOr<pgoutput::Lsn> QueryFlushLsn(common::MonotonicTime deadline);
  void KickStreamer();
  // Barrier deadlines share one timer, armed for the earliest pending one,
  // so a call costs no timer of its own.
  Stats StatsLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void AddDeadlineLocked(common::MonotonicTime deadline) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void RemoveDeadlineLocked(common::MonotonicTime deadline) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void OnDeadlineTimer();
  absl::Status BarrierLocked(common::MonotonicTime deadline, absl::Duration timeout)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const std::string url_;
  common::TimeSource& time_;
  const PostgresSyncSourceOptions options_;
  // Written once by Stop() and never drained: readable from then on.
  int stop_fd_ = -1;
  // Barrier waiters poke the streaming thread through it.
  int kick_fd_ = -1;

  absl::Mutex stop_mu_;  // Serialises Start/Stop.
  std::thread thread_ ABSL_GUARDED_BY(stop_mu_);
  bool started_ ABSL_GUARDED_BY(stop_mu_) = false;

  absl::Mutex mu_;
  SyncObserver* observer_ ABSL_GUARDED_BY(mu_) = nullptr;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;
  bool up_to_date_once_ ABSL_GUARDED_BY(mu_) = false;
  // Startup ends early on a configuration error.
  absl::Status config_error_ ABSL_GUARDED_BY(mu_);
  absl::Status last_error_ ABSL_GUARDED_BY(mu_);
  std::string slot_name_ ABSL_GUARDED_BY(mu_);
  // True between a session's OnUpToDate and its end; then every transaction
  // that committed before delivered_lsn_ has been delivered.
  bool synced_ ABSL_GUARDED_BY(mu_) = false;
  pgoutput::Lsn delivered_lsn_ ABSL_GUARDED_BY(mu_) = 0;
  // Highest position a Barrier waits for.
  pgoutput::Lsn wanted_lsn_ ABSL_GUARDED_BY(mu_) = 0;
  int active_barriers_ ABSL_GUARDED_BY(mu_) = 0;
  std::multiset<common::MonotonicTime> barrier_deadlines_ ABSL_GUARDED_BY(mu_);
  common::MonotonicTime deadline_timer_at_ ABSL_GUARDED_BY(mu_) = common::MonotonicTime::max();
  // The time source's clock when the deadline timer last fired: every
  // deadline up to it has passed.
  common::MonotonicTime deadlines_passed_ ABSL_GUARDED_BY(mu_) = common::MonotonicTime::min();
  Stats stats_ ABSL_GUARDED_BY(mu_);

  // Coalesced flush-position queries: a caller needs a query issued after it
  // arrived (number > queries_issued_ at arrival).
  uint64_t queries_issued_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t queries_done_ ABSL_GUARDED_BY(mu_) = 0;
  bool query_in_flight_ ABSL_GUARDED_BY(mu_) = false;
  pgoutput::Lsn queried_lsn_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Status query_error_ ABSL_GUARDED_BY(mu_);

  common::TimerPtr deadline_timer_;

  // Used only by the caller that leads a query (query_in_flight_).
  absl::Mutex query_conn_mu_;
  std::unique_ptr<PqConnection> query_conn_ ABSL_GUARDED_BY(query_conn_mu_);
};

}  // namespace wake::sync
