// The claim half of the registry's store: a runner claims a stream's pending
// wakes under a lease, acks them (ending the claim), extends the lease while
// it works, or releases the claim; claims whose lease ran out are swept.
// WakeStore (wake_store.h) extends it with registrations and wakes.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "wake/v1/registry.pb.h"

namespace wake::registry {

struct ClaimResult {
  v1::ClaimStatus status = v1::CLAIM_STATUS_UNSPECIFIED;
  std::string claim_token;
  std::vector<v1::Wake> wakes;  // Ordered by id.
  absl::Time lease_expires_at;
};

// One stream to claim, for a holder, under a lease.
struct ClaimSpec {
  std::string tenant_id;
  std::string stream;
  std::string runner_id;
  std::string session_id;
  absl::Duration lease;
  // ClaimWakesRequest.idempotency_key; empty: none. The claim's token is
  // derived from it (and the tenant and stream), so a retry with the same key
  // finds the claim its first attempt took.
  std::string idempotency_key;
};

struct AckResult {
  int64_t acked = 0;
  bool more_pending = false;
  // Asked for (AckSpec::next) and more_pending: the stream's next claim,
  // taken in the ack's transaction.
  std::optional<ClaimResult> next;
};

struct ClaimKey {
  std::string tenant_id;
  std::string stream;
  std::string claim_token;
};

// One claim to ack: its wakes to delete (all when empty), and, with `next`,
// the claim of the stream's wakes still pending once it ended, in the same
// transaction.
struct AckSpec {
  ClaimKey claim;
  std::vector<int64_t> wake_ids;
  std::optional<ClaimSpec> next;
};

struct ExtendResult {
  ClaimKey claim;
  bool extended = false;
  absl::Time lease_expires_at;
};

class ClaimStore {
 public:
  virtual ~ClaimStore() = default;

  // Claims every pending wake of the stream (and wakes of an expired claim).
  // The claim's commit is not waited for (synchronous_commit off): a claim
  // lost in a database crash only makes its wakes pending again, and its
  // ack then fails. So for ClaimStreams.
  virtual absl::StatusOr<ClaimResult> ClaimWakes(const std::string& tenant_id,
                                                 const std::string& stream,
                                                 const std::string& runner_id,
                                                 const std::string& session_id,
                                                 absl::Duration lease) = 0;

  // ClaimWakes for each entry, in one statement and one transaction where
  // possible; one result per entry, in order. An entry naming a stream an
  // earlier entry claimed is ALREADY_CLAIMED. An entry whose idempotency key
  // took the stream's live claim takes that claim again (a retry whose first
  // answer was lost): CLAIMED, the same token, its lease renewed.
  virtual std::vector<absl::StatusOr<ClaimResult>> ClaimStreams(
      const std::vector<ClaimSpec>& claims) = 0;

  // Deletes the acked wakes of a live claim and ends it; the claim's other
  // wakes become pending. FAILED_PRECONDITION when the claim is not live.
  // Returns once the commit is flushed: an ack is never lost.
  virtual absl::StatusOr<AckResult> AckWakes(const ClaimKey& claim,
                                             const std::vector<int64_t>& wake_ids) = 0;

  // AckWakes for each entry in one transaction where possible, each with its
  // own result, in order; an entry with `next` claims its stream again in
  // that transaction when wakes are pending after the ack.
  virtual std::vector<absl::StatusOr<AckResult>> AckClaims(const std::vector<AckSpec>& acks) = 0;

  // Renews the lease of each live claim (a runner's heartbeat): one result
  // per entry, in order; `extended` is false for a claim that is not live.
  virtual absl::StatusOr<std::vector<ExtendResult>> ExtendClaims(
      const std::vector<ClaimKey>& claims, absl::Duration lease) = 0;

  // Ends the claim; returns how many wakes are pending again.
  // FAILED_PRECONDITION when the claim is not live.
  virtual absl::StatusOr<int64_t> ReleaseClaim(const ClaimKey& claim) = 0;

  // Ends every claim whose lease has expired; its wakes become pending.
  // Returns how many claims were ended.
  virtual absl::StatusOr<int64_t> ReleaseExpiredClaims() = 0;
};

using ClaimStorePtr = std::unique_ptr<ClaimStore>;

}  // namespace wake::registry
