// Request validation for wake.v1.WakeRegistry. Each function checks one
// request, fills in defaults (empty tenant -> "default"), and returns
// INVALID_ARGUMENT whose message starts with the offending field's path.
// Nothing is written before validation passes.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "wake/v1/registry.pb.h"

namespace wake::registry {

inline constexpr char kDefaultTenant[] = "default";
inline constexpr size_t kMaxTenantBytes = 256;
inline constexpr size_t kMaxUrlBytes = 2048;
inline constexpr size_t kMaxManifestKeyBytes = 512;
inline constexpr size_t kMaxKeyBytes = 1024;
inline constexpr size_t kMaxCollectionBytes = 256;
inline constexpr int kMaxCollections = 64;
inline constexpr size_t kMaxValueBytes = 1 << 20;
inline constexpr int32_t kMaxDebounceMs = 86400000;
inline constexpr int32_t kDefaultPageSize = 100;
inline constexpr int32_t kMaxPageSize = 1000;
inline constexpr absl::Duration kDefaultLease = absl::Seconds(30);
// Entries of one ClaimStreams or AckClaims call at most.
inline constexpr int kMaxBatchEntries = 256;

absl::Status ValidateRegisterWake(v1::RegisterWakeRequest& request);
absl::Status ValidateUnregisterWakes(v1::UnregisterWakesRequest& request);
absl::Status ValidateEvaluateRunFinished(v1::EvaluateRunFinishedRequest& request);
absl::Status ValidateEvaluateChange(v1::EvaluateChangeRequest& request);
// Also parses the page token into *after_id.
absl::Status ValidateListRegistrations(v1::ListRegistrationsRequest& request, int64_t* after_id);
absl::Status ValidateSubscribeChanges(v1::SubscribeChangesRequest& request);
absl::Status ValidateClaimWakes(v1::ClaimWakesRequest& request, absl::Duration* lease);
// Also the lease of the next claim (claim_next), into *lease.
absl::Status ValidateAckWakes(v1::AckWakesRequest& request, absl::Duration* lease);
// The batches: each entry as above; *leases gets the lease of each.
absl::Status ValidateClaimStreams(v1::ClaimStreamsRequest& request,
                                  std::vector<absl::Duration>* leases);
absl::Status ValidateAckClaims(v1::AckClaimsRequest& request, std::vector<absl::Duration>* leases);
absl::Status ValidateExtendClaims(v1::ExtendClaimsRequest& request, absl::Duration* lease);
absl::Status ValidateReleaseClaim(v1::ReleaseClaimRequest& request);

}  // namespace wake::registry
