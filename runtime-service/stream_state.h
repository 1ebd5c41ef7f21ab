// The state ClaimSchedulerImpl keeps per stream, and the phases of its
// claim cycle. The transitions are the scheduler's (claim_scheduler_*.cc);
// ready_, parked_, held_ and retries_ named below are its queues.
//
//   kIdle      -> kClaiming   its turn came (ready_), for a runner that
//                             serves it; without one it parks instead.
//   kClaiming  -> kHeld or kDelivered (CLAIMED), kBackoff (the call failed),
//                 kIdle (NOTHING_PENDING, ALREADY_CLAIMED, a failure during
//                 shutdown), kReleasing (CLAIMED during shutdown).
//   kBackoff   -> kIdle       retry_at passed; still queued, in its old place.
//   kHeld      -> kDelivered  a runner with room; kReleasing after
//                             hold_timeout or at shutdown.
//   kDelivered -> kAcking     the runner acks; kReleasing when its session
//                             leaves or at shutdown.
//   kAcking    -> kIdle (acked, or the claim is gone), kHeld or kDelivered
//                 (the ack's claim_next claimed more), kDelivered (a
//                 transient failure: the runner may ack again), kReleasing
//                 (that, with the session gone).
//   kReleasing -> kIdle (released, or the claim is gone: claimed anew; or the
//                 release failed during shutdown: the lease runs out), kHeld
//                 (the release failed: handed to another runner as it is).
//                 ABORTED is retried in kReleasing.
// A held or delivered claim whose lease runs out (or is not extended) is
// dropped: the stream goes kIdle and is queued to claim its wakes again. An
// idle stream with nothing queued, unseen or due for a retry is forgotten.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "absl/container/flat_hash_set.h"
#include "common/backoff.h"
#include "common/time_source.h"
#include "runtime-service/claim_scheduler.h"
#include "wake/v1/runtime.pb.h"

namespace wake::runtime {

// Where a stream is in its claim cycle.
enum class StreamPhase {
  kIdle,       // No claim; may wait in ready_ or parked_ for its turn to claim.
  kClaiming,   // ClaimWakes in flight.
  kBackoff,    // ClaimWakes failed; retried when retry_at passes.
  kHeld,       // Claimed, waiting in held_ (hold_timeout) for a runner with room.
  kDelivered,  // Sent to a runner session.
  kAcking,     // AckWakes in flight.
  kReleasing,  // ReleaseClaim in flight.
};

// A claim this runtime holds for the stream.
struct StreamClaim {
  v1::WakeClaim message;
  absl::flat_hash_set<int64_t> wake_ids;  // Of message.wakes().
  // Local, monotonic view of the lease: past it the claim is considered lost.
  common::MonotonicTime lease_deadline;
  SessionId session = 0;                // Holder while kDelivered / kAcking.
  uint64_t held_seq = 0;                // Position in held_ while kHeld.
  common::MonotonicTime hold_deadline;  // Released then, while kHeld.
};

// Everything the scheduler keeps per (tenant, stream).
struct StreamState {
  StreamPhase phase = StreamPhase::kIdle;
  // A trigger is waiting for the next claim; `queued_seq` orders it among
  // the other waiting streams by the arrival of its first trigger.
  bool queued = false;
  uint64_t queued_seq = 0;
  // Some queued trigger names no particular wake (or is a retry, a
  // redelivery, more_pending): the next claim is needed whatever the
  // current one carries. Otherwise the queued triggers were announcements,
  // and a claim carrying all of them makes the next one unnecessary.
  bool queued_anonymous = false;
  // Queued and idle, but no connected runner may take the stream now: it
  // waits in parked_ (keeping queued_seq) until one connects or gains room.
  bool parked = false;
  // Sequence of the trigger the current claim attempt serves (kept when a
  // failed attempt is retried, so the retry keeps its place).
  uint64_t attempt_seq = 0;
  // The idempotency key of the claim attempt under way, kept while it is
  // retried after a failure: a claim the registry took but whose answer
  // was lost comes back to the retry instead of holding the stream until
  // its lease runs out. Cleared when an answer arrives.
  std::string claim_key;
  // While kClaiming: the session whose room the claim is reserved in.
  SessionId reserved = 0;
  std::optional<StreamClaim> claim;
  std::unique_ptr<common::Backoff> backoff;  // While ClaimWakes fails.
  std::optional<common::MonotonicTime> retry_at;
  // Wakes announced for the stream that no claim of this runtime has
  // carried yet: while any is left, the stream is claimed again (see
  // SchedulerOptions::recheck_initial).
  absl::flat_hash_set<int64_t> unseen;
  // Looks again since a claim last found wakes.
  int rechecks = 0;
  // When a trigger (or a redelivery) last queued the stream.
  common::MonotonicTime last_queued;
  // When the stream last became queued (from not queued), and that time
  // for the claim attempt under way: dispatch latency (metrics).
  std::optional<common::MonotonicTime> queued_since;
  std::optional<common::MonotonicTime> attempt_since;
  // While a ReleaseClaim failing with ABORTED is retried.
  std::unique_ptr<common::Backoff> release_backoff;
};

}  // namespace wake::runtime
