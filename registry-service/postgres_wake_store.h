// WakeStore on PostgreSQL through a connection pool, with prepared
// statements; single-statement operations run in autocommit (one round trip).
// Concurrent upserts, and concurrent wakes without one-shot or timeout gates,
// are group-committed: one statement and one transaction for many callers.
#pragma once

#include <string>

#include "common/executor.h"
#include "common/postgres.h"
#include "registry-service/group_commit.h"
#include "registry-service/wake_store.h"

namespace wake::registry {

class PostgresWakeStore final : public WakeStore {
 public:
  // `executor` runs the batches of the *Async callers.
  PostgresWakeStore(const std::string& database_url, int pool_size, common::Executor& executor);
  ~PostgresWakeStore() override;

  absl::StatusOr<UpsertResult> UpsertRegistration(const sync::Registration& row) override;
  void UpsertRegistrationAsync(const sync::Registration& row,
                               std::function<void(absl::StatusOr<UpsertResult>)> done) override;
  absl::StatusOr<DeleteResult> DeleteRegistrations(const UnregisterSelector& selector) override;
  absl::StatusOr<PersistResult> PersistWakes(const std::vector<WakeDraft>& drafts) override;
  void PersistWakesAsync(const std::vector<WakeDraft>& drafts,
                         std::function<void(absl::StatusOr<PersistResult>)> done) override;
  absl::StatusOr<ClaimResult> ClaimWakes(const std::string& tenant_id, const std::string& stream,
                                         const std::string& runner_id,
                                         const std::string& session_id,
                                         absl::Duration lease) override;
  absl::StatusOr<AckResult> AckWakes(const ClaimKey& claim,
                                     const std::vector<int64_t>& wake_ids) override;
  absl::StatusOr<std::vector<ExtendResult>> ExtendClaims(const std::vector<ClaimKey>& claims,
                                                         absl::Duration lease) override;
  absl::StatusOr<int64_t> ReleaseClaim(const ClaimKey& claim) override;
  absl::StatusOr<int64_t> ReleaseExpiredClaims() override;

 private:
  absl::StatusOr<UpsertResult> UpsertAlone(const sync::Registration& row);
  std::vector<absl::StatusOr<UpsertResult>> UpsertBatch(
      const std::vector<const sync::Registration*>& rows);
  absl::StatusOr<PersistResult> PersistAlone(const std::vector<WakeDraft>& drafts);
  std::vector<absl::StatusOr<PersistResult>> PersistBatch(
      const std::vector<const std::vector<WakeDraft>*>& calls);

  common::PgPool pool_;
  GroupCommit<sync::Registration, UpsertResult> upserts_;
  GroupCommit<std::vector<WakeDraft>, PersistResult> persists_;
};

// Converts a wake message to the JSON stored in wakes.message and back.
std::string WakeMessageToJson(const v1::WakeMessage& message);
absl::StatusOr<v1::WakeMessage> WakeMessageFromJson(const std::string& json);

}  // namespace wake::registry
