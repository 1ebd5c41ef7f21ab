// WakeStore on PostgreSQL through a connection pool, with prepared
// statements; single-statement operations run in autocommit (one round trip).
#pragma once

#include <string>

#include "common/postgres.h"
#include "registry-service/wake_store.h"

namespace wake::registry {

class PostgresWakeStore final : public WakeStore {
 public:
  PostgresWakeStore(const std::string& database_url, int pool_size);

  absl::StatusOr<UpsertResult> UpsertRegistration(const sync::Registration& row) override;
  absl::StatusOr<DeleteResult> DeleteRegistrations(const UnregisterSelector& selector) override;
  absl::StatusOr<PersistResult> PersistWakes(const std::vector<WakeDraft>& drafts) override;
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
  common::PgPool pool_;
};

// Converts a wake message to the JSON stored in wakes.message and back.
std::string WakeMessageToJson(const v1::WakeMessage& message);
absl::StatusOr<v1::WakeMessage> WakeMessageFromJson(const std::string& json);

}  // namespace wake::registry
