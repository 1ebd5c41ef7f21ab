// ClaimScheduler over the registry's claim RPCs (wake.v1.WakeRegistry).
//
// All state sits behind one mutex. Every entry point changes state under the
// lock and collects what must happen outside it (registry calls, sends to
// runners) as effects, run after unlocking, so completions may re-enter the
// scheduler from any thread, including inline from a synchronous mock.
//
// One class, its member functions spread over files by concern (the private
// declarations below are grouped the same way): claim_scheduler_impl.cc
// (triggers, the per-stream state machine, ClaimWakes and its outcomes),
// claim_scheduler_dispatch.cc (runner sessions, holding and delivering
// claims), claim_scheduler_acks.cc, claim_scheduler_leases.cc (heartbeats,
// lease expiry, releases) and claim_scheduler_health.cc (health, the rescan's
// accounting, graceful shutdown). The per-stream state and its phases are in
// stream_state.h.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/node_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "common/executor.h"
#include "common/time_source.h"
#include "runtime-service/bounded_id_set.h"
#include "runtime-service/claim_scheduler.h"
#include "runtime-service/parked_streams.h"
#include "runtime-service/registry_calls.h"
#include "runtime-service/runner_pool.h"
#include "runtime-service/stream_state.h"
#include "runtime-service/wake_accounting.h"
#include "wake/v1/registry.grpc.pb.h"

namespace wake::runtime {

struct SchedulerOptions {
  // Recorded by the registry as the holder of the claims this runtime takes.
  std::string runtime_id = "runtime";
  // Told, for each claim sent to a runner, how long since its stream was
  // queued by a trigger (a wake announced, more pending, a redelivery):
  // the dispatch latency metric. Runs under the scheduler's lock: cheap only.
  std::function<void(absl::Duration)> on_dispatch;
  // Lease asked for on ClaimWakes and ExtendClaims. ALREADY_CLAIMED is
  // retried after one lease, when the other holder's claim has been acked or
  // has expired.
  absl::Duration lease = absl::Seconds(30);
  // A claim no connected runner can take (the one it was taken for left
  // while ClaimWakes was in flight) waits this long for one, then is
  // released, never extended: the registry announces the release, so a
  // runtime with a runner for the stream claims it at once. Shorter than
  // the lease.
  absl::Duration hold_timeout = absl::Seconds(1);
  // Backoff of failed ClaimWakes calls.
  absl::Duration retry_initial = absl::Milliseconds(100);
  absl::Duration retry_max = absl::Seconds(30);
  // Deadline of every registry call.
  absl::Duration rpc_timeout = absl::Seconds(10);
  // AckWakes and ReleaseClaim failing with ABORTED (a deadlock or
  // serialization failure in the store) are made again after a backoff from
  // abort_retry_initial up to abort_retry_max: an ack at most
  // max_ack_attempts times in all before the runner gets the error (the claim
  // stays delivered), a release until it lands or the claim is gone.
  absl::Duration abort_retry_initial = absl::Milliseconds(10);
  absl::Duration abort_retry_max = absl::Seconds(1);
  int max_ack_attempts = 4;
  // ClaimWakes calls in flight at once; further streams wait their turn.
  int max_concurrent_claims = 64;
  // Carry ClaimWakes and AckWakes in batches (ClaimStreams, AckClaims) while
  // others are in flight (RegistryCalls); the service turns it on.
  bool batch_registry_calls = false;
  // Ask every ack to claim what is pending for the stream in the ack's
  // transaction (AckWakes claim_next) when the runner has room for it. Off:
  // measured, it saved nothing once claims and acks travel in batches (the
  // ack then needs a transaction of its own instead of one statement).
  bool claim_next_in_ack = false;
  // An announced wake can be invisible to ClaimWakes for a moment: the
  // registry learns of it from the WAL, where PostgreSQL puts the commit
  // before it shows the transaction to new snapshots. A claim that finds
  // nothing although a wake announced for the stream is still unaccounted
  // for looks again after recheck_initial, then 10x later each time, at most
  // max_rechecks times (then the wake is taken as claimed by another runtime).
  absl::Duration recheck_initial = absl::Milliseconds(10);
  int max_rechecks = 3;
};

class ClaimSchedulerImpl final : public ClaimScheduler, public WakeAccounting {
 public:
  // `registry`, `time` and `executor` must outlive this object.
  ClaimSchedulerImpl(v1::WakeRegistry::StubInterface& registry, common::TimeSource& time,
                     common::Executor& executor, SchedulerOptions options);
  ~ClaimSchedulerImpl() override;

  void Trigger(const std::string& tenant_id, const std::string& stream, int64_t wake_id) override;
  absl::StatusOr<SessionId> Connect(const RunnerSpec& spec, ClaimSinkPtr sink) override;
  void Disconnect(SessionId session) override;
  void Ack(const AckRequest& request, Callback<AckResult> done) override;
  void Heartbeat(const std::string& runner_id, const std::string& session_id,
                 const std::string& principal, Callback<HeartbeatResult> done) override;
  SchedulerHealth Health() override;

  std::vector<PendingStream> Unaccounted(const std::vector<PendingStream>& pending) override;
  int ForgetParkedWithoutPending(const std::vector<PendingStream>& pending,
                                 common::MonotonicTime since) override;

  // Graceful shutdown, in this order: BeginShutdown() stops claiming and
  // connecting and releases the claims no runner holds; runners may still
  // ack what they hold; ReleaseAll() releases the rest; AwaitSettled() waits
  // (real time) until no claim is held and no claim/release call is in
  // flight. Returns false on timeout.
  void BeginShutdown();
  void ReleaseAll();
  bool AwaitSettled(absl::Duration timeout);
  // Blocks (real time) until no claim is delivered to a runner or being
  // acked, or `timeout` passed: gives runners a chance to finish on SIGTERM.
  bool AwaitRunnersDone(absl::Duration timeout);

 private:
  using Key = StreamKey;
  using Effects = std::vector<std::function<void()>>;

  // The per-stream state (stream_state.h); the member functions below move
  // it between phases.
  using Phase = StreamPhase;
  using Claim = StreamClaim;

  // --- claim_scheduler_impl.cc: plumbing, triggers, the per-stream state
  // machine up to a claim, and the outcomes of ClaimWakes.

  // Runs the effects collected under mu_; called after unlocking.
  static void Run(Effects& fx);
  // Runs `work` (outside mu_) once `delay` has passed.
  void DelayLocked(absl::Duration delay, std::function<void()> work)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void OnDelayTimer();

  void TriggerLocked(const Key& key, int64_t wake_id, Effects& fx)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // `for_announcements`: queued only to find announced wakes (see
  // StreamState::queued_anonymous).
  void QueueLocked(StreamState& state, bool for_announcements = false)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Starts what can start now: held claims go to runners with room, ready
  // streams are claimed for a runner that serves them (or parked), and
  // runners that gained room take parked streams.
  void PumpLocked(Effects& fx) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ClaimReadyLocked(Effects& fx) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Moves parked streams to ready_ for the sessions that gained room, the
  // oldest first and as many as each has room for; false if none moved.
  bool RefillLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // A queued idle stream waits for its turn: in ready_, or in parked_ if
  // already parked.
  void EnqueueLocked(const Key& key, StreamState& state) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ParkLocked(const Key& key, StreamState& state) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void UnparkLocked(const Key& key, StreamState& state) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void GoIdleLocked(const Key& key, StreamState& state) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void MaybeForgetLocked(const Key& key) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ScheduleRetryLocked(const Key& key, StreamState& state, common::MonotonicTime at)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void CancelRetryLocked(const Key& key, StreamState& state) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ArmRetryTimerLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void OnRetryTimer();

  // Completion of ClaimWakes: classifies the answer and hands it to the
  // handler of its outcome below (or to TakeClaimLocked).
  void OnClaimed(const Key& key, common::MonotonicTime sent,
                 absl::StatusOr<v1::ClaimWakesResponse> result);
  // The call failed, or the answer broke the protocol (a CLAIMED answer
  // without wakes is given back): the attempt is retried after a backoff.
  void OnClaimFailedLocked(const Key& key, StreamState& state,
                           const absl::StatusOr<v1::ClaimWakesResponse>& result,
                           const absl::Status& failure, Effects& fx)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // NOTHING_PENDING or ALREADY_CLAIMED: the stream goes idle, and is looked
  // at again later if a wake may still be stranded.
  void OnClaimSkippedLocked(const Key& key, StreamState& state, v1::ClaimStatus status)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // A CLAIMED answer (of ClaimWakes, or of an ack's claim_next) sent at
  // `sent`: the stream's claim, delivered to `runner` if it has room, else
  // held for another.
  void TakeClaimLocked(const Key& key, StreamState& state, v1::ClaimWakesResponse& claimed,
                       common::MonotonicTime sent, SessionId runner, Effects& fx)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // --- claim_scheduler_dispatch.cc: runner sessions, holding and delivering
  // claims.

  void RemoveSessionLocked(SessionId id, Effects& fx) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void HoldLocked(const Key& key, StreamState& state) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ArmHoldTimerLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void OnHoldTimer();
  void DispatchHeldLocked(Effects& fx) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void DeliverLocked(const Key& key, StreamState& state, SessionId session, Effects& fx)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Detaches the claim from its session or from held_ (not from the stream).
  void DetachClaimLocked(const Key& key, StreamState& state) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // --- claim_scheduler_acks.cc: acks.

  // Attempt `attempt` of an ack; `known`: of a claim this runtime holds.
  void SendAck(const Key& key, v1::AckWakesRequest ack, std::vector<int64_t> wake_ids, int attempt,
               bool known, Callback<AckResult> done);
  void OnAcked(const Key& key, v1::AckWakesRequest request, std::vector<int64_t> wake_ids,
               int attempt, bool known, common::MonotonicTime sent,
               absl::StatusOr<v1::AckWakesResponse> result, Callback<AckResult> done);
  // Remembers wakes acked through this runtime: gone for good, so a late
  // announcement of one needs no claim to account for it.
  void RememberAckedLocked(const Claim& claim, const std::vector<int64_t>& wake_ids)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // --- claim_scheduler_leases.cc: heartbeats, lease expiry, releases.

  // Whether an ack or release failed because the registry no longer knows
  // the claim.
  static bool ClaimIsGone(const absl::Status& status);
  // Applies the ExtendClaims answer of a heartbeat; `done` gets the result.
  void OnExtended(common::MonotonicTime sent_at, absl::StatusOr<v1::ExtendClaimsResponse> result,
                  Callback<HeartbeatResult> done);
  void OnLeaseTimer();
  // The claim ended without an ack (lease lost, claim gone): claim the stream
  // again so its wakes are redelivered.
  void DropClaimLocked(const Key& key, StreamState& state, Effects& fx)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ReleaseLocked(const Key& key, StreamState& state, Effects& fx)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void SendRelease(const Key& key, const std::string& token);
  void OnReleased(const Key& key, const std::string& token,
                  absl::StatusOr<v1::ReleaseClaimResponse> result);

  // --- claim_scheduler_health.cc: health, the rescan's accounting, shutdown.

  void RecordErrorLocked(const std::string& what, const absl::Status& status)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  common::TimeSource& time_;
  const SchedulerOptions options_;

  absl::Mutex mu_;
  absl::node_hash_map<Key, StreamState> streams_ ABSL_GUARDED_BY(mu_);
  // Idle streams with a queued trigger, by trigger arrival.
  std::set<std::pair<uint64_t, Key>> ready_ ABSL_GUARDED_BY(mu_);
  // Idle streams with a queued trigger that no connected runner can take
  // now, per tenant, by trigger arrival.
  ParkedStreams parked_ ABSL_GUARDED_BY(mu_);
  // Claims waiting for a runner, in the order they were claimed.
  std::set<std::pair<uint64_t, Key>> held_ ABSL_GUARDED_BY(mu_);
  std::set<std::pair<common::MonotonicTime, Key>> retries_ ABSL_GUARDED_BY(mu_);
  RunnerPool pool_ ABSL_GUARDED_BY(mu_);
  uint64_t next_seq_ ABSL_GUARDED_BY(mu_) = 1;
  int claims_in_flight_ ABSL_GUARDED_BY(mu_) = 0;
  int releases_in_flight_ ABSL_GUARDED_BY(mu_) = 0;
  int active_claims_ ABSL_GUARDED_BY(mu_) = 0;
  // Claims delivered to a runner (kDelivered or kAcking).
  int delivered_claims_ ABSL_GUARDED_BY(mu_) = 0;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  // Set by the destructor: delayed work no longer runs.
  bool destroying_ ABSL_GUARDED_BY(mu_) = false;
  std::multimap<common::MonotonicTime, std::function<void()>> delayed_ ABSL_GUARDED_BY(mu_);
  SchedulerCounters counters_ ABSL_GUARDED_BY(mu_);
  // Recently acked wake ids (see RememberAckedLocked).
  BoundedIdSet acked_ids_ ABSL_GUARDED_BY(mu_);
  // Wake ids announced to this runtime (Trigger), for the rescan.
  BoundedIdSet announced_ids_ ABSL_GUARDED_BY(mu_);
  std::string last_error_ ABSL_GUARDED_BY(mu_);

  // Timers before calls_: calls_ is destroyed first and waits for running
  // completions, which may still touch the timers.
  common::TimerPtr retry_timer_;
  common::TimerPtr lease_timer_;
  common::TimerPtr hold_timer_;
  common::TimerPtr delay_timer_;
  RegistryCalls calls_;
};

}  // namespace wake::runtime
