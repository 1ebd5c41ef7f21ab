// ClaimSchedulerImpl, part 1 of 5: construction, the plumbing every part
// shares (effects run after unlocking, delayed work), and the per-stream
// state machine up to a claim: triggers queue a stream, the pump claims
// queued streams for runners that serve them (or parks them until one
// can), failed claims back off, and each ClaimWakes answer is handled by
// its outcome. claim_scheduler_impl.h lists the other parts.
#include "runtime-service/claim_scheduler_impl.h"

#include <sys/random.h>

#include <memory>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "common/proto_time.h"

namespace wake::runtime {
namespace {

// A claim attempt's idempotency key: 128 random bits in hex. Empty if the
// kernel has no randomness to give (the claim then simply has no key).
std::string NewClaimKey() {
  unsigned char bytes[16];
  if (getrandom(bytes, sizeof(bytes), 0) != static_cast<ssize_t>(sizeof(bytes))) return "";
  return absl::BytesToHexString(
      absl::string_view(reinterpret_cast<const char*>(bytes), sizeof(bytes)));
}

// Why a ClaimWakes call failed: the call's error, or INTERNAL for an answer
// the registry must never give. OK for the outcomes the scheduler handles:
// CLAIMED (with wakes), NOTHING_PENDING and ALREADY_CLAIMED.
absl::Status ClaimFailure(const absl::StatusOr<v1::ClaimWakesResponse>& result) {
  if (!result.ok()) return result.status();
  if (result->status() == v1::CLAIMED && result->wakes().empty()) {
    // Broken invariant on the registry side.
    return absl::InternalError("ClaimWakes: CLAIMED with no wakes");
  }
  if (result->status() != v1::CLAIMED && result->status() != v1::NOTHING_PENDING &&
      result->status() != v1::ALREADY_CLAIMED) {
    return absl::InternalError(
        absl::StrCat("ClaimWakes: unknown claim status ", static_cast<int>(result->status())));
  }
  return absl::OkStatus();
}

// How many acked wake ids are remembered (about 1 MB).
constexpr size_t kAckedIdsKept = 1 << 16;
// How many announced wake ids are remembered for the rescan (about 3 MB).
constexpr size_t kAnnouncedIdsKept = 1 << 17;

}  // namespace

ClaimSchedulerImpl::ClaimSchedulerImpl(v1::WakeRegistry::StubInterface& registry,
                                       common::TimeSource& time, common::Executor& executor,
                                       SchedulerOptions options)
    : time_(time),
      options_(std::move(options)),
      acked_ids_(kAckedIdsKept),
      announced_ids_(kAnnouncedIdsKept),
      retry_timer_(time.CreateTimer([this] { OnRetryTimer(); })),
      lease_timer_(time.CreateTimer([this] { OnLeaseTimer(); })),
      hold_timer_(time.CreateTimer([this] { OnHoldTimer(); })),
      delay_timer_(time.CreateTimer([this] { OnDelayTimer(); })),
      calls_(registry, executor, time, options_.rpc_timeout, [this] {
        CallBatching batching;
        batching.enabled = options_.batch_registry_calls;
        return batching;
      }()) {
  lease_timer_->Enable(options_.lease / 3);
}

ClaimSchedulerImpl::~ClaimSchedulerImpl() {
  absl::MutexLock lock(&mu_);
  stopping_ = true;
  destroying_ = true;
  delayed_.clear();
}

void ClaimSchedulerImpl::DelayLocked(absl::Duration delay, std::function<void()> work) {
  const common::MonotonicTime at = time_.MonotonicNow() + common::ToChrono(delay);
  delayed_.emplace(at, std::move(work));
  // Enable() only re-arms, so it is safe under mu_.
  delay_timer_->Enable(common::ToAbsl(delayed_.begin()->first - time_.MonotonicNow()));
}

void ClaimSchedulerImpl::OnDelayTimer() {
  std::vector<std::function<void()>> due;
  {
    absl::MutexLock lock(&mu_);
    // Not stopping_: releases are still retried during a graceful shutdown.
    if (destroying_) return;
    const common::MonotonicTime now = time_.MonotonicNow();
    while (!delayed_.empty() && delayed_.begin()->first <= now) {
      due.push_back(std::move(delayed_.begin()->second));
      delayed_.erase(delayed_.begin());
    }
    if (!delayed_.empty()) {
      delay_timer_->Enable(common::ToAbsl(delayed_.begin()->first - now));
    }
  }
  for (std::function<void()>& work : due) work();
}

void ClaimSchedulerImpl::Run(Effects& fx) {
  for (std::function<void()>& effect : fx) effect();
}

// ---------------------------------------------------------------------------
// Triggers and the per-stream state machine
// ---------------------------------------------------------------------------

void ClaimSchedulerImpl::Trigger(const std::string& tenant_id, const std::string& stream,
                                 int64_t wake_id) {
  Effects fx;
  {
    absl::MutexLock lock(&mu_);
    TriggerLocked(Key(tenant_id.empty() ? "default" : tenant_id, stream), wake_id, fx);
  }
  Run(fx);
}

void ClaimSchedulerImpl::TriggerLocked(const Key& key, int64_t wake_id, Effects& fx) {
  if (stopping_) return;
  StreamState& state = streams_[key];
  if (wake_id != 0) {
    announced_ids_.Insert(wake_id);
    // A wake the current claim carries, or one acked already, is accounted
    // for (its announcement came late) and needs no claim; any other must
    // turn up in one.
    if (acked_ids_.Contains(wake_id) ||
        (state.claim.has_value() && state.claim->wake_ids.contains(wake_id))) {
      MaybeForgetLocked(key);
      return;
    }
    state.unseen.insert(wake_id);
  }
  if (common::LogEnabled(common::LogLevel::kDebug)) {
    common::LogDebug("trigger", {{"tenant_id", key.first},
                                 {"stream", key.second},
                                 {"phase", static_cast<int>(state.phase)},
                                 {"queued", state.queued ? 1 : 0}});
  }
  QueueLocked(state, /*for_announcements=*/wake_id != 0);
  if (state.phase == Phase::kIdle) EnqueueLocked(key, state);
  PumpLocked(fx);
}

void ClaimSchedulerImpl::QueueLocked(StreamState& state, bool for_announcements) {
  state.last_queued = time_.MonotonicNow();
  if (!for_announcements) state.queued_anonymous = true;
  // Coalesce: a stream already queued keeps its place.
  if (state.queued) return;
  state.queued = true;
  state.queued_seq = next_seq_++;
  state.queued_since = state.last_queued;
}

void ClaimSchedulerImpl::EnqueueLocked(const Key& key, StreamState& state) {
  if (!state.parked) ready_.emplace(state.queued_seq, key);
}

void ClaimSchedulerImpl::ParkLocked(const Key& key, StreamState& state) {
  CancelRetryLocked(key, state);
  state.parked = true;
  parked_.Park(state.queued_seq, key);
}

void ClaimSchedulerImpl::UnparkLocked(const Key& key, StreamState& state) {
  if (!state.parked) return;
  state.parked = false;
  parked_.Unpark(state.queued_seq, key);
}

void ClaimSchedulerImpl::PumpLocked(Effects& fx) {
  if (stopping_) return;
  DispatchHeldLocked(fx);
  do {
    ClaimReadyLocked(fx);
  } while (claims_in_flight_ < options_.max_concurrent_claims && RefillLocked());
}

void ClaimSchedulerImpl::ClaimReadyLocked(Effects& fx) {
  while (claims_in_flight_ < options_.max_concurrent_claims && !ready_.empty()) {
    const Key key = ready_.begin()->second;
    ready_.erase(ready_.begin());
    StreamState& state = streams_[key];
    const SessionId runner = pool_.Pick(key);
    if (runner == 0) {
      // Claiming now would hold wakes no runner here can take, and keep them
      // from another runtime that has one.
      ParkLocked(key, state);
      continue;
    }
    pool_.Reserve(runner);
    state.reserved = runner;
    CancelRetryLocked(key, state);
    state.queued = false;
    state.queued_anonymous = false;
    state.attempt_seq = state.queued_seq;
    state.attempt_since = state.queued_since;
    state.phase = Phase::kClaiming;
    ++claims_in_flight_;
    v1::ClaimWakesRequest request;
    request.set_tenant_id(key.first);
    request.set_stream(key.second);
    request.set_runner_id(options_.runtime_id);
    common::ToProto(options_.lease, request.mutable_lease());
    if (state.claim_key.empty()) state.claim_key = NewClaimKey();
    request.set_idempotency_key(state.claim_key);
    fx.push_back([this, key, request = std::move(request), sent = time_.MonotonicNow()]() mutable {
      calls_.ClaimWakes(std::move(request),
                        [this, key, sent](absl::StatusOr<v1::ClaimWakesResponse> r) {
                          OnClaimed(key, sent, std::move(r));
                        });
    });
  }
}

bool ClaimSchedulerImpl::RefillLocked() {
  if (parked_.empty()) {
    pool_.ClearAllGrown();
    return false;
  }
  bool moved = false;
  const std::vector<SessionId> grown(pool_.grown().begin(), pool_.grown().end());
  for (const SessionId id : grown) {
    const RunnerPool::Session* session = pool_.Find(id);
    int room = pool_.Room(id);
    const ParkedStreams::Queue* tenant =
        session == nullptr ? nullptr : parked_.OfTenant(session->spec.tenant_id);
    int taken = 0;
    if (tenant != nullptr) {
      // Copies: UnparkLocked erases from the set being walked.
      std::vector<Key> take;
      for (const auto& [seq, key] : *tenant) {
        if (static_cast<int>(take.size()) >= room) break;
        if (pool_.Serves(*session, key)) take.push_back(key);
      }
      for (const Key& key : take) {
        StreamState& state = streams_.at(key);
        UnparkLocked(key, state);
        ready_.emplace(state.queued_seq, key);
        ++taken;
      }
    }
    // A session keeps its mark while it took streams: they may go to another
    // session, and then it looks again.
    if (taken == 0) {
      pool_.ClearGrown(id);
    } else {
      moved = true;
    }
  }
  return moved;
}

void ClaimSchedulerImpl::GoIdleLocked(const Key& key, StreamState& state) {
  state.phase = Phase::kIdle;
  if (state.claim.has_value()) {
    state.claim.reset();
    --active_claims_;
  }
  if (state.queued && !stopping_) EnqueueLocked(key, state);
}

void ClaimSchedulerImpl::MaybeForgetLocked(const Key& key) {
  auto it = streams_.find(key);
  if (it == streams_.end()) return;
  const StreamState& state = it->second;
  if (state.phase == Phase::kIdle && !state.retry_at.has_value() && (!state.queued || stopping_) &&
      (state.unseen.empty() || stopping_)) {
    if (state.queued) ready_.erase({state.queued_seq, key});
    UnparkLocked(key, it->second);
    streams_.erase(it);
  }
}

void ClaimSchedulerImpl::ScheduleRetryLocked(const Key& key, StreamState& state,
                                             common::MonotonicTime at) {
  CancelRetryLocked(key, state);
  state.retry_at = at;
  retries_.emplace(at, key);
  ArmRetryTimerLocked();
}

void ClaimSchedulerImpl::CancelRetryLocked(const Key& key, StreamState& state) {
  if (!state.retry_at.has_value()) return;
  retries_.erase({*state.retry_at, key});
  state.retry_at.reset();
}

void ClaimSchedulerImpl::ArmRetryTimerLocked() {
  // Enable() only re-arms (it never waits for a running callback), so it is
  // safe under mu_. A stale firing finds nothing due and re-arms.
  if (retries_.empty()) return;
  retry_timer_->Enable(common::ToAbsl(retries_.begin()->first - time_.MonotonicNow()));
}

void ClaimSchedulerImpl::OnRetryTimer() {
  Effects fx;
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) return;
    const common::MonotonicTime now = time_.MonotonicNow();
    while (!retries_.empty() && retries_.begin()->first <= now) {
      const Key key = retries_.begin()->second;
      retries_.erase(retries_.begin());
      StreamState& state = streams_[key];
      state.retry_at.reset();
      if (state.phase == Phase::kBackoff) {
        // The failed attempt's trigger is still queued with its old place.
        GoIdleLocked(key, state);
      } else if (state.phase == Phase::kIdle) {
        // ALREADY_CLAIMED earlier (look again in case that claim lapsed), or
        // an announced wake was not found (look again for it).
        QueueLocked(state);
        EnqueueLocked(key, state);
      }
    }
    PumpLocked(fx);
    ArmRetryTimerLocked();
  }
  Run(fx);
}

// ---------------------------------------------------------------------------
// ClaimWakes outcomes
// ---------------------------------------------------------------------------

void ClaimSchedulerImpl::OnClaimed(const Key& key, common::MonotonicTime sent,
                                   absl::StatusOr<v1::ClaimWakesResponse> result) {
  Effects fx;
  {
    absl::MutexLock lock(&mu_);
    --claims_in_flight_;
    StreamState& state = streams_[key];
    // The reserved room goes back; a claim taken goes to that runner below.
    const SessionId reserved = state.reserved;
    state.reserved = 0;
    pool_.Unreserve(reserved);
    if (common::LogEnabled(common::LogLevel::kDebug)) {
      common::LogDebug("claimed", {{"tenant_id", key.first},
                                   {"stream", key.second},
                                   {"status", result.ok() ? v1::ClaimStatus_Name(result->status())
                                                          : result.status().ToString()},
                                   {"wakes", result.ok() ? result->wakes_size() : 0},
                                   {"queued", state.queued ? 1 : 0},
                                   {"rtt_us", common::ToAbsl(time_.MonotonicNow() - sent) /
                                                  absl::Microseconds(1)}});
    }
    // Without an answer the registry may have taken the claim all the same
    // (the answer was lost): the retry sends the same key and gets it back.
    if (result.ok()) state.claim_key.clear();
    if (const absl::Status failure = ClaimFailure(result); !failure.ok()) {
      OnClaimFailedLocked(key, state, result, failure, fx);
    } else if (result->status() == v1::CLAIMED) {
      TakeClaimLocked(key, state, *result, sent, reserved, fx);
    } else {
      OnClaimSkippedLocked(key, state, result->status());
    }
    MaybeForgetLocked(key);
    PumpLocked(fx);
  }
  Run(fx);
}

void ClaimSchedulerImpl::OnClaimFailedLocked(const Key& key, StreamState& state,
                                             const absl::StatusOr<v1::ClaimWakesResponse>& result,
                                             const absl::Status& failure, Effects& fx) {
  if (result.ok() && result->status() == v1::CLAIMED) {
    // CLAIMED with no wakes: give the claim back.
    v1::ReleaseClaimRequest release;
    release.set_tenant_id(key.first);
    release.set_stream(key.second);
    release.set_claim_token(result->claim_token());
    fx.push_back([this, release = std::move(release)]() mutable {
      calls_.ReleaseClaim(std::move(release), [](absl::StatusOr<v1::ReleaseClaimResponse>) {});
    });
  }
  ++counters_.claims_failed;
  RecordErrorLocked(absl::StrCat("claim ", key.first, "/", key.second), failure);
  if (stopping_) {
    GoIdleLocked(key, state);
    return;
  }
  if (!state.backoff) {
    state.backoff = std::make_unique<common::Backoff>(options_.retry_initial, options_.retry_max);
  }
  // The retry serves the failed attempt's trigger, in its old place.
  state.queued = true;
  state.queued_anonymous = true;
  state.queued_seq = state.attempt_seq;
  state.phase = Phase::kBackoff;
  ScheduleRetryLocked(key, state, time_.MonotonicNow() + common::ToChrono(state.backoff->Next()));
}

void ClaimSchedulerImpl::OnClaimSkippedLocked(const Key& key, StreamState& state,
                                              v1::ClaimStatus status) {
  // NOTHING_PENDING, or another replica holds the stream. That holder's
  // ack (more_pending) or lease expiry makes the wakes available again,
  // but look again after one lease anyway so nothing can be stranded.
  ++counters_.claims_skipped;
  state.backoff.reset();
  GoIdleLocked(key, state);
  if (status == v1::ALREADY_CLAIMED) {
    // The holder claims whatever is pending when it acks (more_pending).
    state.unseen.clear();
    state.rechecks = 0;
    if (!stopping_ && !state.queued) {
      ScheduleRetryLocked(key, state, time_.MonotonicNow() + common::ToChrono(options_.lease));
    }
  } else if (state.unseen.empty() || stopping_) {
    state.unseen.clear();
    state.rechecks = 0;
  } else if (!state.queued) {
    if (state.rechecks < options_.max_rechecks) {
      absl::Duration delay = options_.recheck_initial;
      for (int i = 0; i < state.rechecks; ++i) delay *= 10;
      ++state.rechecks;
      ScheduleRetryLocked(key, state, time_.MonotonicNow() + common::ToChrono(delay));
    } else {
      common::LogWarn("announced_wakes_not_found",
                      {{"tenant_id", key.first},
                       {"stream", key.second},
                       {"wakes", state.unseen.size()},
                       {"note", "taken as claimed by another runtime"}});
      state.unseen.clear();
      state.rechecks = 0;
    }
  }
}

void ClaimSchedulerImpl::TakeClaimLocked(const Key& key, StreamState& state,
                                         v1::ClaimWakesResponse& claimed,
                                         common::MonotonicTime sent, SessionId runner,
                                         Effects& fx) {
  ++counters_.claims_succeeded;
  state.backoff.reset();
  Claim claim;
  claim.message.set_claim_token(claimed.claim_token());
  claim.message.set_tenant_id(key.first);
  claim.message.set_stream(key.second);
  *claim.message.mutable_wakes() = std::move(*claimed.mutable_wakes());
  *claim.message.mutable_lease_expires_at() = claimed.lease_expires_at();
  // The registry counts the lease from when it took the claim, which may
  // be any time after the request left: only the send time is safe.
  claim.lease_deadline = sent + common::ToChrono(options_.lease);
  for (const v1::Wake& wake : claim.message.wakes()) {
    claim.wake_ids.insert(wake.id());
    state.unseen.erase(wake.id());
  }
  state.rechecks = 0;
  if (!state.unseen.empty()) {
    // Announced wakes this claim missed get a claim of their own after it.
    QueueLocked(state, /*for_announcements=*/true);
  } else if (state.queued && !state.queued_anonymous) {
    // Every announcement queued meanwhile is for a wake this claim carries.
    state.queued = false;
  }
  state.claim = std::move(claim);
  ++active_claims_;
  if (stopping_) {
    ReleaseLocked(key, state, fx);
  } else if (pool_.Room(runner) > 0) {
    DeliverLocked(key, state, runner, fx);
  } else {
    // Its runner left meanwhile: another one, or wait for one.
    HoldLocked(key, state);
    DispatchHeldLocked(fx);
  }
}

}  // namespace wake::runtime
