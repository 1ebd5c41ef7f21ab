// WakeStore on PostgreSQL through a connection pool, with prepared
// statements; single-statement operations run in autocommit (one round trip).
// Concurrent upserts, concurrent wakes without one-shot or timeout gates, and
// concurrent claims and acks (of different streams) are group-committed: one
// statement and one transaction for many callers. The claim methods are in
// postgres_wake_store_claims.cc, the rest in postgres_wake_store.cc, and the
// SQL of every statement in store_sql.cc.
#pragma once

#include <atomic>
#include <functional>
#include <pqxx/pqxx>
#include <string>

#include "absl/synchronization/mutex.h"
#include "common/executor.h"
#include "common/logging.h"
#include "common/postgres.h"
#include "registry-service/group_commit.h"
#include "registry-service/wake_store.h"

namespace wake::registry {

// Size bounds the store keeps (registry flags of the same names).
struct StoreLimits {
  // A closing debounce window becomes several wakes of at most this size.
  int64_t max_wake_bytes = 2 << 20;
  // A claim takes pending wakes in id order while they fit in these (always
  // at least one); the rest stay pending.
  int64_t max_claim_bytes = (4 << 20) - (256 << 10);
  int max_claim_wakes = 1000;
  // A debounce window holding this many changes or bytes closes early.
  int debounce_max_changes = 1000;
  int64_t debounce_max_bytes = 1 << 20;
};

// The bytes a wake takes in a ClaimWakesResponse (an upper bound: ids and
// timestamps counted at their largest).
int64_t WakeSizeBytes(const std::string& tenant_id, const std::string& stream,
                      const std::string& source_event_key, const v1::WakeMessage& message);

class PostgresWakeStore final : public WakeStore {
 public:
  // `executor` runs the batches of the *Async callers.
  PostgresWakeStore(const std::string& database_url, int pool_size, common::Executor& executor,
                    StoreLimits limits = StoreLimits());
  ~PostgresWakeStore() override;

  absl::StatusOr<UpsertResult> UpsertRegistration(const sync::Registration& row) override;
  void UpsertRegistrationAsync(const sync::Registration& row,
                               std::function<void(absl::StatusOr<UpsertResult>)> done) override;
  absl::StatusOr<DeleteResult> DeleteRegistrations(const UnregisterSelector& selector) override;
  absl::StatusOr<PersistResult> PersistWakes(const std::vector<WakeDraft>& drafts) override;
  void PersistWakesAsync(const std::vector<WakeDraft>& drafts,
                         std::function<void(absl::StatusOr<PersistResult>)> done) override;
  absl::StatusOr<WindowResult> CloseDebounceWindow(const WindowKey& window) override;
  absl::StatusOr<std::vector<WindowKey>> DueDebounceWindows(int limit) override;
  absl::StatusOr<int64_t> SweepEventKeys(const KeyRetention& retention, int limit) override;

  // ClaimStore, in postgres_wake_store_claims.cc.
  absl::StatusOr<ClaimResult> ClaimWakes(const std::string& tenant_id, const std::string& stream,
                                         const std::string& runner_id,
                                         const std::string& session_id,
                                         absl::Duration lease) override;
  std::vector<absl::StatusOr<ClaimResult>> ClaimStreams(
      const std::vector<ClaimSpec>& claims) override;
  absl::StatusOr<AckResult> AckWakes(const ClaimKey& claim,
                                     const std::vector<int64_t>& wake_ids) override;
  std::vector<absl::StatusOr<AckResult>> AckClaims(const std::vector<AckSpec>& acks) override;
  absl::StatusOr<std::vector<ExtendResult>> ExtendClaims(const std::vector<ClaimKey>& claims,
                                                         absl::Duration lease) override;
  absl::StatusOr<int64_t> ReleaseClaim(const ClaimKey& claim) override;
  absl::StatusOr<int64_t> ReleaseExpiredClaims() override;

  // Told the kind ("upsert", "persist", "claim", "ack") and number of calls
  // of every group-commit batch (metrics). Set before the first call.
  using BatchObserver = std::function<void(const char* kind, size_t calls)>;
  void SetBatchObserver(BatchObserver observer) { on_batch_ = std::move(observer); }

  // Group-commit statements that failed, so their calls ran one at a time
  // (for tests: a batch statement that never works would still give right
  // answers, only slowly).
  int64_t failed_batches() const { return failed_batches_.load(); }

 private:
  absl::StatusOr<UpsertResult> UpsertAlone(const sync::Registration& row);
  std::vector<absl::StatusOr<UpsertResult>> UpsertBatch(
      const std::vector<const sync::Registration*>& rows);
  absl::StatusOr<PersistResult> PersistAlone(const std::vector<WakeDraft>& drafts);
  std::vector<absl::StatusOr<PersistResult>> PersistBatch(
      const std::vector<const std::vector<WakeDraft>*>& calls);

  // Claims and acks (postgres_wake_store_claims.cc).
  //
  // One claim_streams / ack_claims statement for `calls` (one or more); an
  // error status when the statement itself failed.
  absl::StatusOr<std::vector<absl::StatusOr<ClaimResult>>> ClaimStatement(
      const std::vector<const ClaimSpec*>& calls);
  absl::StatusOr<std::vector<absl::StatusOr<AckResult>>> AckStatement(
      const std::vector<const AckSpec*>& calls);
  // claim_streams (and the removal of claim rows that found their wakes
  // gone) for `calls` inside `tx`; `async` lets the transaction commit
  // without waiting for its WAL flush. One result per call, repeats of a
  // stream included.
  absl::StatusOr<std::vector<ClaimResult>> RunClaims(pqxx::transaction_base& tx,
                                                     const std::vector<const ClaimSpec*>& calls,
                                                     bool async);

  // After a failed batch statement: runs each call alone, so one bad call
  // cannot fail the others.
  template <typename Result, typename Call, typename Alone>
  std::vector<absl::StatusOr<Result>> EachAlone(const char* event, const absl::Status& why,
                                                const std::vector<const Call*>& calls,
                                                Alone alone) {
    ++failed_batches_;
    common::LogDebug(event, {{"calls", calls.size()}, {"error", std::string(why.message())}});
    std::vector<absl::StatusOr<Result>> results;
    results.reserve(calls.size());
    for (const Call* call : calls) results.push_back(alone(*call));
    return results;
  }

  // A group-commit run of claims or acks: `statement` for the whole batch,
  // or for each call alone when the batch statement failed.
  template <typename Result, typename Call>
  std::vector<absl::StatusOr<Result>> StatementOrEachAlone(
      const char* event, const std::vector<const Call*>& calls,
      absl::StatusOr<std::vector<absl::StatusOr<Result>>> (PostgresWakeStore::*statement)(
          const std::vector<const Call*>&)) {
    absl::StatusOr<std::vector<absl::StatusOr<Result>>> results = (this->*statement)(calls);
    if (results.ok()) return *std::move(results);
    if (calls.size() == 1) return {results.status()};
    return EachAlone<Result>(event, results.status(), calls,
                             [this, statement](const Call& call) -> absl::StatusOr<Result> {
                               auto alone = (this->*statement)({&call});
                               if (!alone.ok()) return alone.status();
                               return (*alone)[0];
                             });
  }

  void ObserveBatch(const char* kind, size_t calls) const {
    if (on_batch_) on_batch_(kind, calls);
  }

  BatchObserver on_batch_;
  const StoreLimits limits_;
  std::atomic<int64_t> failed_batches_{0};
  // Where SweepEventKeys looks next for marks of deleted registrations.
  absl::Mutex mark_cursor_mu_;
  std::string mark_cursor_tenant_ ABSL_GUARDED_BY(mark_cursor_mu_);
  int64_t mark_cursor_id_ ABSL_GUARDED_BY(mark_cursor_mu_) = -1;
  common::PgPool pool_;
  GroupCommit<sync::Registration, UpsertResult> upserts_;
  GroupCommit<std::vector<WakeDraft>, PersistResult> persists_;
  GroupCommit<ClaimSpec, ClaimResult> claims_;
  GroupCommit<AckSpec, AckResult> acks_;
};

// Converts a wake message to the JSON stored in wakes.message and back.
std::string WakeMessageToJson(const v1::WakeMessage& message);
// One change as stored in a debounce window (the same form as in a message).
std::string WakeChangeToJson(const v1::WakeChange& change);
absl::StatusOr<v1::WakeMessage> WakeMessageFromJson(const std::string& json);

}  // namespace wake::registry
