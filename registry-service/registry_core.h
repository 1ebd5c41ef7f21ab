// The registry's operations behind wake.v1.WakeRegistry, free of gRPC:
// optimistic writes confirmed by txid, the read barrier, evaluation, paged
// reads, claims, and the sweeper that returns wakes of expired leases.
//
// Requests are validated (validation.h) before they reach this class.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/executor.h"
#include "common/sync/registration_collection.h"
#include "common/sync/sync_source.h"
#include "common/time_source.h"
#include "registry-service/evaluator.h"
#include "registry-service/wake_store.h"
#include "wake/v1/registry.pb.h"

namespace wake::registry {

struct RegistryOptions {
  // How long a write waits for the sync stream to show its txid.
  absl::Duration write_confirm_timeout = absl::Seconds(2);
  // How long the read barrier may take before the request is UNAVAILABLE.
  absl::Duration barrier_timeout = absl::Seconds(5);
  // A ClaimWakes that finds nothing although the sync stream has shown a
  // pending wake of that stream retries for up to this long: logical decoding
  // can show a commit a little before other sessions' snapshots see it.
  absl::Duration claim_visibility_wait = absl::Milliseconds(250);
  // How often the sweeper runs (0 = never): it returns the wakes of expired
  // claims to pending, closes debounce windows that are due (whichever
  // replica opened them), and forgets expired event keys.
  absl::Duration sweep_interval = absl::Seconds(1);
  // How long event keys are remembered after they made a wake.
  KeyRetention key_retention;
  // Expired event keys are looked for this often (each look reads the
  // pages not yet summarized by the keys' BRIN index), in batches of
  // key_sweep_batch rows per statement (short transactions), at most
  // key_sweep_batches statements per look: 5,000 keys a second at most.
  absl::Duration key_sweep_interval = absl::Seconds(10);
  int key_sweep_batch = 1000;
  int key_sweep_batches = 50;
  // Due debounce windows closed per sweep at most.
  int window_sweep_batch = 100;
  // When set, the only tenant this registry serves.
  std::optional<std::string> tenant;
  // Told how long each read barrier took and whether it succeeded (metrics).
  std::function<void(absl::Duration took, bool ok)> on_barrier;
  // An evaluation whose request (the change its wakes carry) is larger is
  // INVALID_ARGUMENT: no wake may outgrow what a claim can carry.
  int64_t max_wake_bytes = 2 << 20;
  // Answers stop adding wakes (evaluations: the rest are counted in
  // wakes_omitted) or registrations (ListRegistrations: the page ends) before
  // they pass this.
  int64_t max_response_bytes = (4 << 20) - (64 << 10);
};

class RegistryCore {
 public:
  RegistryCore(sync::RegistrationCollection& collection, sync::SyncSource& sync, WakeStore& store,
               Evaluator& evaluator, common::TimeSource& time, common::Executor& executor,
               RegistryOptions options);
  ~RegistryCore();

  // INVALID_ARGUMENT when this registry is scoped to another tenant.
  absl::Status CheckTenant(const std::string& tenant) const;
  // The only tenant this registry serves, if it is scoped to one.
  const std::optional<std::string>& tenant() const { return options_.tenant; }

  absl::StatusOr<v1::RegisterWakeResponse> RegisterWake(const v1::RegisterWakeRequest& request);
  // RegisterWake without a parked thread: `done` runs once, usually on the
  // sync source's thread when the txid shows up (on the store's thread when
  // the write fails or needs no confirmation). `done` must not block.
  using RegisterDone = std::function<void(absl::StatusOr<v1::RegisterWakeResponse>)>;
  void RegisterWakeAsync(const v1::RegisterWakeRequest& request, RegisterDone done);
  absl::StatusOr<v1::UnregisterWakesResponse> UnregisterWakes(
      const v1::UnregisterWakesRequest& request);
  absl::StatusOr<v1::EvaluateRunFinishedResponse> EvaluateRunFinished(
      const v1::EvaluateRunFinishedRequest& request);
  absl::StatusOr<v1::EvaluateChangeResponse> EvaluateChange(
      const v1::EvaluateChangeRequest& request);
  // The evaluations without waiting for the wakes' shared write: `done` runs
  // once, on the caller's thread or the store's batch thread. The caller's
  // thread blocks for the read barrier, so it must not be a gRPC thread.
  template <typename Response>
  using Done = std::function<void(absl::StatusOr<Response>)>;
  void EvaluateRunFinishedAsync(const v1::EvaluateRunFinishedRequest& request,
                                Done<v1::EvaluateRunFinishedResponse> done);
  void EvaluateChangeAsync(const v1::EvaluateChangeRequest& request,
                           Done<v1::EvaluateChangeResponse> done);
  absl::StatusOr<v1::ListRegistrationsResponse> ListRegistrations(
      const v1::ListRegistrationsRequest& request, int64_t after_id);
  absl::StatusOr<v1::ClaimWakesResponse> ClaimWakes(const v1::ClaimWakesRequest& request,
                                                    absl::Duration lease);
  // `leases`: the validated lease of each entry.
  absl::StatusOr<v1::ClaimStreamsResponse> ClaimStreams(const v1::ClaimStreamsRequest& request,
                                                        const std::vector<absl::Duration>& leases);
  // `lease`: the next claim's (claim_next), validated.
  absl::StatusOr<v1::AckWakesResponse> AckWakes(const v1::AckWakesRequest& request,
                                                absl::Duration lease);
  absl::StatusOr<v1::AckClaimsResponse> AckClaims(const v1::AckClaimsRequest& request,
                                                  const std::vector<absl::Duration>& leases);
  absl::StatusOr<v1::ExtendClaimsResponse> ExtendClaims(const v1::ExtendClaimsRequest& request,
                                                        absl::Duration lease);
  absl::StatusOr<v1::ReleaseClaimResponse> ReleaseClaim(const v1::ReleaseClaimRequest& request);

  // True when a LOCAL evaluation of (tenant, source) cannot match anything,
  // so it can be answered without leaving the calling thread.
  bool NoCandidates(const std::string& tenant, const std::string& source_url);

  // The read barrier (STRONG consistency).
  absl::Status Barrier();

 private:
  void Sweep();
  // ClaimWakes of the store for one entry, else ClaimStreams.
  std::vector<absl::StatusOr<ClaimResult>> Claim(const std::vector<ClaimSpec>& claims);
  // Claims in one store call; entries that found nothing although the
  // synced view shows a pending wake of their stream look again, briefly.
  std::vector<absl::StatusOr<ClaimResult>> ClaimWithVisibilityWait(
      const std::vector<ClaimSpec>& claims);
  // Whether an entry of `entry_bytes` still fits in a batch answer holding
  // *bytes (max_response_bytes; the first entry always does); if so, counts it.
  bool Fits(size_t entry_bytes, size_t* bytes) const;
  // Releases a claim taken for an answer it did not fit in.
  void GiveBack(const ClaimKey& claim);

  sync::RegistrationCollection& collection_;
  sync::SyncSource& sync_;
  WakeStore& store_;
  Evaluator& evaluator_;
  common::TimeSource& time_;
  common::Executor& executor_;
  const RegistryOptions options_;
  common::TimerPtr sweep_timer_;
  absl::Mutex mu_;
  bool sweeping_ ABSL_GUARDED_BY(mu_) = false;
  // When the sweeper last looked for expired event keys (only it touches it).
  std::optional<common::MonotonicTime> keys_swept_at_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace wake::registry
