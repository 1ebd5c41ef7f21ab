#include "runtime-service/claim_scheduler_impl.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "common/proto_time.h"

namespace wake::runtime {
namespace {

// The registry no longer knows the claim: acking or releasing it again
// cannot succeed, so the claim is over for this runtime. ABORTED is not one
// of these: the store maps deadlocks and serialization failures to it, and
// the same call made again succeeds.
bool ClaimIsGone(const absl::Status& status) {
  return absl::IsNotFound(status) || absl::IsFailedPrecondition(status) ||
         absl::IsPermissionDenied(status);
}

// Delay before retry number `attempt` (1 = the first retry) of a call that
// failed with ABORTED.
absl::Duration AbortRetryDelay(const SchedulerOptions& options, int attempt) {
  common::Backoff backoff(options.abort_retry_initial, options.abort_retry_max);
  absl::Duration delay;
  for (int i = 0; i < attempt; ++i) delay = backoff.Next();
  return delay;
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
  parked_[key.first].emplace(state.queued_seq, key);
  ++parked_count_;
}

void ClaimSchedulerImpl::UnparkLocked(const Key& key, StreamState& state) {
  if (!state.parked) return;
  state.parked = false;
  --parked_count_;
  if (auto it = parked_.find(key.first); it != parked_.end()) {
    it->second.erase({state.queued_seq, key});
    if (it->second.empty()) parked_.erase(it);
  }
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
    fx.push_back([this, key, request = std::move(request), sent = time_.MonotonicNow()]() mutable {
      calls_.ClaimWakes(std::move(request),
                        [this, key, sent](absl::StatusOr<v1::ClaimWakesResponse> r) {
                          OnClaimed(key, sent, std::move(r));
                        });
    });
  }
}

bool ClaimSchedulerImpl::RefillLocked() {
  if (parked_count_ == 0) {
    pool_.ClearAllGrown();
    return false;
  }
  bool moved = false;
  const std::vector<SessionId> grown(pool_.grown().begin(), pool_.grown().end());
  for (const SessionId id : grown) {
    const RunnerPool::Session* session = pool_.Find(id);
    int room = pool_.Room(id);
    auto tenant = session == nullptr ? parked_.end() : parked_.find(session->spec.tenant_id);
    int taken = 0;
    if (tenant != parked_.end()) {
      // Copies: UnparkLocked erases from the set being walked.
      std::vector<Key> take;
      for (const auto& [seq, key] : tenant->second) {
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

// ---------------------------------------------------------------------------
// Dispatch to runners
// ---------------------------------------------------------------------------

void ClaimSchedulerImpl::HoldLocked(const Key& key, StreamState& state) {
  state.phase = Phase::kHeld;
  state.claim->session = 0;
  state.claim->held_seq = next_seq_++;
  state.claim->hold_deadline = time_.MonotonicNow() + common::ToChrono(options_.hold_timeout);
  const bool first = held_.empty();
  held_.emplace(state.claim->held_seq, key);
  if (first) ArmHoldTimerLocked();
}

void ClaimSchedulerImpl::DispatchHeldLocked(Effects& fx) {
  if (pool_.size() == 0 || held_.empty()) return;
  for (auto it = held_.begin(); it != held_.end();) {
    const Key key = it->second;
    const SessionId id = pool_.Pick(key);
    if (id == 0) {
      ++it;
      continue;
    }
    it = held_.erase(it);
    DeliverLocked(key, streams_[key], id, fx);
  }
}

void ClaimSchedulerImpl::DeliverLocked(const Key& key, StreamState& state, SessionId session,
                                       Effects& fx) {
  state.phase = Phase::kDelivered;
  state.claim->session = session;
  ++delivered_claims_;
  if (state.attempt_since.has_value() && options_.on_dispatch) {
    options_.on_dispatch(common::ToAbsl(time_.MonotonicNow() - *state.attempt_since));
  }
  state.attempt_since.reset();
  pool_.AddClaim(session, key);
  ++counters_.claims_dispatched;
  fx.push_back([sink = pool_.Find(session)->sink, message = state.claim->message] {
    // A closed stream is followed by its Disconnect, which releases this claim.
    sink->Send(message);
  });
}

absl::StatusOr<SessionId> ClaimSchedulerImpl::Connect(const RunnerSpec& spec, ClaimSinkPtr sink) {
  Effects fx;
  SessionId id;
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) return absl::UnavailableError("runtime is shutting down");
    // A superseded session changes nothing: it must not take the runner's
    // current session (and its claims) away again.
    if (absl::Status s = pool_.CheckNotSuperseded(spec); !s.ok()) return s;
    if (const SessionId old = pool_.CurrentOf(spec.runner_id); old != 0) {
      const RunnerPool::Session& old_session = *pool_.Find(old);
      // Another principal must not take a connected runner's claims away.
      if (old_session.spec.principal != spec.principal) {
        return absl::PermissionDeniedError(absl::StrCat("runner_id: runner \"", spec.runner_id,
                                                        "\" is connected as another principal"));
      }
      const absl::Status superseded = absl::AbortedError(
          absl::StrCat("session_id: session \"", old_session.spec.session_id, "\" of runner \"",
                       spec.runner_id, "\" was superseded by session \"", spec.session_id, "\""));
      fx.push_back([old_sink = old_session.sink, superseded] { old_sink->Close(superseded); });
      RemoveSessionLocked(old, fx);
    }
    id = pool_.Add(spec, std::move(sink));
    common::LogInfo("runner_connected", {{"runner_id", spec.runner_id},
                                         {"session_id", spec.session_id},
                                         {"tenant_id", spec.tenant_id},
                                         {"max_in_flight", spec.max_in_flight}});
    // Held claims, then the parked streams it serves.
    PumpLocked(fx);
  }
  Run(fx);
  return id;
}

void ClaimSchedulerImpl::Disconnect(SessionId session) {
  Effects fx;
  {
    absl::MutexLock lock(&mu_);
    const RunnerPool::Session* found = pool_.Find(session);
    if (found == nullptr) return;
    common::LogInfo("runner_disconnected", {{"runner_id", found->spec.runner_id},
                                            {"session_id", found->spec.session_id},
                                            {"claims", found->claims.size()}});
    RemoveSessionLocked(session, fx);
  }
  Run(fx);
}

void ClaimSchedulerImpl::RemoveSessionLocked(SessionId id, Effects& fx) {
  std::optional<RunnerPool::Session> session = pool_.Remove(id);
  if (!session.has_value()) return;
  for (const Key& key : session->claims) {
    StreamState& state = streams_[key];
    // A claim being acked stays with its AckWakes; its completion finds the
    // session gone.
    if (state.phase == Phase::kDelivered) ReleaseLocked(key, state, fx);
  }
}

void ClaimSchedulerImpl::DetachClaimLocked(const Key& key, StreamState& state) {
  if (!state.claim.has_value()) return;
  if (state.phase == Phase::kHeld) held_.erase({state.claim->held_seq, key});
  if (state.claim->session != 0) {
    --delivered_claims_;
    pool_.RemoveClaim(state.claim->session, key);
    state.claim->session = 0;
  }
}

void ClaimSchedulerImpl::ReleaseLocked(const Key& key, StreamState& state, Effects& fx) {
  DetachClaimLocked(key, state);
  state.phase = Phase::kReleasing;
  state.release_backoff.reset();
  ++releases_in_flight_;
  fx.push_back(
      [this, key, token = state.claim->message.claim_token()] { SendRelease(key, token); });
}

void ClaimSchedulerImpl::SendRelease(const Key& key, const std::string& token) {
  v1::ReleaseClaimRequest request;
  request.set_tenant_id(key.first);
  request.set_stream(key.second);
  request.set_claim_token(token);
  calls_.ReleaseClaim(std::move(request),
                      [this, key, token](absl::StatusOr<v1::ReleaseClaimResponse> r) {
                        OnReleased(key, token, std::move(r));
                      });
}

void ClaimSchedulerImpl::OnReleased(const Key& key, const std::string& token,
                                    absl::StatusOr<v1::ReleaseClaimResponse> result) {
  Effects fx;
  {
    absl::MutexLock lock(&mu_);
    --releases_in_flight_;
    StreamState& state = streams_[key];
    if (state.phase != Phase::kReleasing || !state.claim.has_value() ||
        state.claim->message.claim_token() != token) {
      MaybeForgetLocked(key);
      return;
    }
    if (!result.ok() && absl::IsAborted(result.status()) && !destroying_) {
      // A deadlock or serialization failure: the claim is still ours and the
      // release is made again until it lands or the claim is gone.
      RecordErrorLocked(absl::StrCat("release ", key.first, "/", key.second), result.status());
      if (!state.release_backoff) {
        state.release_backoff = std::make_unique<common::Backoff>(options_.abort_retry_initial,
                                                                  options_.abort_retry_max);
      }
      ++releases_in_flight_;  // Until the retry completes.
      DelayLocked(state.release_backoff->Next(), [this, key, token] { SendRelease(key, token); });
      return;
    }
    state.release_backoff.reset();
    if (result.ok() || ClaimIsGone(result.status())) {
      if (result.ok()) ++counters_.claims_released;
      // Redeliver: the released wakes are pending again; claim them anew.
      QueueLocked(state);
      GoIdleLocked(key, state);
    } else {
      RecordErrorLocked(absl::StrCat("release ", key.first, "/", key.second), result.status());
      if (stopping_) {
        // Its lease runs out by itself.
        GoIdleLocked(key, state);
      } else {
        // The claim is still ours: hand it to another runner as it is.
        HoldLocked(key, state);
        DispatchHeldLocked(fx);
      }
    }
    MaybeForgetLocked(key);
    PumpLocked(fx);
  }
  Run(fx);
}

void ClaimSchedulerImpl::DropClaimLocked(const Key& key, StreamState& state, Effects& fx) {
  common::LogWarn("claim_lost", {{"tenant_id", key.first},
                                 {"stream", key.second},
                                 {"claim_token", state.claim->message.claim_token()}});
  DetachClaimLocked(key, state);
  QueueLocked(state);
  GoIdleLocked(key, state);
  DispatchHeldLocked(fx);
}

// ---------------------------------------------------------------------------
// Acks
// ---------------------------------------------------------------------------

void ClaimSchedulerImpl::Ack(const AckRequest& request, Callback<AckResult> done) {
  absl::Status rejected;
  bool known = false;
  bool claim_next = false;
  const Key key(request.tenant_id, request.stream);
  {
    absl::MutexLock lock(&mu_);
    auto it = streams_.find(key);
    known = it != streams_.end() && it->second.claim.has_value() &&
            it->second.claim->message.claim_token() == request.claim_token;
    if (known) {
      StreamState& state = it->second;
      const RunnerPool::Session* session = pool_.Find(state.claim->session);
      if (state.phase == Phase::kAcking) {
        rejected = absl::FailedPreconditionError(
            "claim_token: an ack of this claim is already in progress");
      } else if (session != nullptr && session->spec.principal != request.principal) {
        rejected = absl::PermissionDeniedError(
            "claim_token: the claim is held by another principal's runner session");
      } else if (state.phase != Phase::kDelivered || session == nullptr ||
                 session->spec.runner_id != request.runner_id ||
                 session->spec.session_id != request.session_id) {
        rejected = absl::FailedPreconditionError(
            "claim_token: the claim is not held by this runner session");
      } else {
        state.phase = Phase::kAcking;
        // Whatever is pending once the claim ends is claimed in the ack's
        // transaction, for this session (its room is the acked claim's),
        // unless that would keep the room from other streams waiting for
        // it: then the stream queues like any other.
        claim_next =
            options_.claim_next_in_ack && !stopping_ &&
            (pool_.Room(state.claim->session) > 0 || (ready_.empty() && parked_count_ == 0));
      }
    }
  }
  if (!rejected.ok()) {
    done(rejected);
    return;
  }
  // A claim that is not ours (any more) goes to the registry, which checks
  // the token; if the ack lands, its more_pending is followed like any other.
  v1::AckWakesRequest ack;
  ack.set_tenant_id(request.tenant_id);
  ack.set_stream(request.stream);
  ack.set_claim_token(request.claim_token);
  for (int64_t id : request.wake_ids) ack.add_wake_ids(id);
  if (claim_next) {
    ack.set_claim_next(true);
    ack.set_runner_id(options_.runtime_id);
    common::ToProto(options_.lease, ack.mutable_lease());
  }
  SendAck(key, std::move(ack), request.wake_ids, /*attempt=*/1, known, std::move(done));
}

void ClaimSchedulerImpl::SendAck(const Key& key, v1::AckWakesRequest ack,
                                 std::vector<int64_t> wake_ids, int attempt, bool known,
                                 Callback<AckResult> done) {
  v1::AckWakesRequest again = ack;  // For a retry.
  calls_.AckWakes(std::move(ack),
                  [this, key, again = std::move(again), wake_ids = std::move(wake_ids), attempt,
                   known, done = std::move(done),
                   sent = time_.MonotonicNow()](absl::StatusOr<v1::AckWakesResponse> r) mutable {
                    OnAcked(key, std::move(again), std::move(wake_ids), attempt, known, sent,
                            std::move(r), std::move(done));
                  });
}

void ClaimSchedulerImpl::RememberAckedLocked(const Claim& claim,
                                             const std::vector<int64_t>& wake_ids) {
  auto remember = [this](int64_t id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { acked_ids_.Insert(id); };
  if (wake_ids.empty()) {
    for (const v1::Wake& wake : claim.message.wakes()) remember(wake.id());
  } else {
    for (int64_t id : wake_ids) {
      if (claim.wake_ids.contains(id)) remember(id);
    }
  }
}

void ClaimSchedulerImpl::OnAcked(const Key& key, v1::AckWakesRequest request,
                                 std::vector<int64_t> wake_ids, int attempt, bool known,
                                 common::MonotonicTime sent,
                                 absl::StatusOr<v1::AckWakesResponse> result,
                                 Callback<AckResult> done) {
  Effects fx;
  std::optional<absl::StatusOr<AckResult>> reply;
  {
    absl::MutexLock lock(&mu_);
    const std::string what = absl::StrCat("ack ", key.first, "/", key.second);
    if (!result.ok() && absl::IsAborted(result.status()) && attempt < options_.max_ack_attempts &&
        !destroying_) {
      // A deadlock or serialization failure in the store: the same ack
      // succeeds when made again. The claim stays in kAcking meanwhile.
      RecordErrorLocked(what, result.status());
      DelayLocked(AbortRetryDelay(options_, attempt), [this, key, request = std::move(request),
                                                       wake_ids = std::move(wake_ids), attempt,
                                                       known, done = std::move(done)]() mutable {
        SendAck(key, std::move(request), std::move(wake_ids), attempt + 1, known, std::move(done));
      });
      return;
    }
    if (!known) {
      if (result.ok()) {
        ++counters_.claims_acked;
        if (result->more_pending()) TriggerLocked(key, 0, fx);
        reply = AckResult{result->acked(), result->more_pending()};
      } else {
        reply = result.status();
      }
    } else {
      StreamState& state = streams_[key];
      if (state.phase != Phase::kAcking || !state.claim.has_value() ||
          state.claim->message.claim_token() != request.claim_token()) {
        reply = absl::InternalError("claim changed while its ack was in flight");
      } else if (result.ok()) {
        ++counters_.claims_acked;
        RememberAckedLocked(*state.claim, wake_ids);
        const SessionId session = state.claim->session;
        DetachClaimLocked(key, state);
        if (result->has_next() && result->next().status() == v1::CLAIMED) {
          // The ack's transaction claimed what was pending: that claim goes
          // to the session that acked, whose room the acked claim held.
          state.claim.reset();
          --active_claims_;
          state.attempt_since = state.queued ? state.queued_since : time_.MonotonicNow();
          TakeClaimLocked(key, state, *result->mutable_next(), sent, session, fx);
        } else {
          if (result->more_pending()) QueueLocked(state);
          GoIdleLocked(key, state);
        }
        DispatchHeldLocked(fx);  // The runner has room again.
        reply = AckResult{result->acked(), result->more_pending() && !stopping_};
      } else if (ClaimIsGone(result.status())) {
        RecordErrorLocked(what, result.status());
        DropClaimLocked(key, state, fx);
        reply = result.status();
      } else {
        // Transient (ABORTED included, once its retries are spent): the claim
        // is still held; the runner may ack again.
        RecordErrorLocked(what, result.status());
        if (pool_.Find(state.claim->session) != nullptr) {
          state.phase = Phase::kDelivered;
        } else {
          ReleaseLocked(key, state, fx);
        }
        reply = result.status();
      }
      MaybeForgetLocked(key);
    }
    PumpLocked(fx);
  }
  Run(fx);
  done(*std::move(reply));
}

// ---------------------------------------------------------------------------
// Leases
// ---------------------------------------------------------------------------

void ClaimSchedulerImpl::Heartbeat(const std::string& runner_id, const std::string& session_id,
                                   const std::string& principal, Callback<HeartbeatResult> done) {
  v1::ExtendClaimsRequest request;
  absl::Status rejected;
  common::MonotonicTime sent_at;
  {
    absl::MutexLock lock(&mu_);
    const SessionId current = pool_.CurrentOf(runner_id);
    if (current == 0) {
      rejected = absl::FailedPreconditionError(
          absl::StrCat("session_id: runner \"", runner_id, "\" has no connected session"));
    } else if (pool_.Find(current)->spec.principal != principal) {
      rejected = absl::PermissionDeniedError(
          absl::StrCat("runner_id: runner \"", runner_id, "\" is connected as another principal"));
    } else if (const RunnerPool::Session& session = *pool_.Find(current);
               session.spec.session_id != session_id) {
      // An older (or unknown) session: never touches the current one's leases.
      rejected = absl::FailedPreconditionError(
          absl::StrCat("session_id: \"", session_id, "\" is not the current session of runner \"",
                       runner_id, "\""));
    } else {
      for (const Key& key : session.claims) {
        const Claim& claim = *streams_.at(key).claim;
        v1::ClaimRef* ref = request.add_claims();
        ref->set_tenant_id(key.first);
        ref->set_stream(key.second);
        ref->set_claim_token(claim.message.claim_token());
      }
      common::ToProto(options_.lease, request.mutable_lease());
      sent_at = time_.MonotonicNow();
    }
  }
  if (!rejected.ok()) {
    done(rejected);
    return;
  }
  if (request.claims().empty()) {
    done(HeartbeatResult{});
    return;
  }
  calls_.ExtendClaims(std::move(request), [this, sent_at, done = std::move(done)](
                                              absl::StatusOr<v1::ExtendClaimsResponse> r) mutable {
    OnExtended(sent_at, std::move(r), std::move(done));
  });
}

void ClaimSchedulerImpl::OnExtended(common::MonotonicTime sent_at,
                                    absl::StatusOr<v1::ExtendClaimsResponse> result,
                                    Callback<HeartbeatResult> done) {
  Effects fx;
  absl::StatusOr<HeartbeatResult> reply;
  {
    absl::MutexLock lock(&mu_);
    if (!result.ok()) {
      RecordErrorLocked("extend claims", result.status());
      reply = result.status();
    } else {
      HeartbeatResult out;
      for (const v1::ExtendedClaim& extended : result->claims()) {
        const Key key(extended.claim().tenant_id(), extended.claim().stream());
        auto it = streams_.find(key);
        if (it == streams_.end()) continue;
        StreamState& state = it->second;
        if (!state.claim.has_value() ||
            state.claim->message.claim_token() != extended.claim().claim_token()) {
          continue;
        }
        if (extended.extended()) {
          ++out.extended;
          state.claim->lease_deadline = sent_at + common::ToChrono(options_.lease);
          *state.claim->message.mutable_lease_expires_at() = extended.lease_expires_at();
          const absl::Time expires = common::FromProto(extended.lease_expires_at());
          if (!out.lease_expires_at.has_value() || expires < *out.lease_expires_at) {
            out.lease_expires_at = expires;
          }
        } else if (state.phase == Phase::kHeld || state.phase == Phase::kDelivered) {
          DropClaimLocked(key, state, fx);
          MaybeForgetLocked(key);
        }
      }
      reply = out;
    }
    PumpLocked(fx);
  }
  Run(fx);
  done(std::move(reply));
}

void ClaimSchedulerImpl::OnLeaseTimer() {
  Effects fx;
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) return;
    const common::MonotonicTime now = time_.MonotonicNow();
    // Runners heartbeat their claims; one that stopped loses them here, and
    // the stream is claimed again so its wakes are redelivered.
    std::vector<Key> lost;
    for (auto& [key, state] : streams_) {
      if (!state.claim.has_value()) continue;
      if (state.phase != Phase::kHeld && state.phase != Phase::kDelivered) continue;
      if (state.claim->lease_deadline <= now) lost.push_back(key);
    }
    for (const Key& key : lost) {
      DropClaimLocked(key, streams_.at(key), fx);
      MaybeForgetLocked(key);
    }
    PumpLocked(fx);
    lease_timer_->Enable(options_.lease / 3);
  }
  Run(fx);
}

void ClaimSchedulerImpl::OnHoldTimer() {
  Effects fx;
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) return;
    const common::MonotonicTime now = time_.MonotonicNow();
    // held_ is in hold order, and every hold lasts hold_timeout.
    while (!held_.empty()) {
      const Key key = held_.begin()->second;
      StreamState& state = streams_.at(key);
      if (state.claim->hold_deadline > now) break;
      // Keeping it would keep its wakes from any runtime that has a runner
      // for them: give it back (the registry announces the release).
      common::LogInfo("held_claim_released", {{"tenant_id", key.first},
                                              {"stream", key.second},
                                              {"claim_token", state.claim->message.claim_token()}});
      ReleaseLocked(key, state, fx);
    }
    ArmHoldTimerLocked();
    PumpLocked(fx);
  }
  Run(fx);
}

void ClaimSchedulerImpl::ArmHoldTimerLocked() {
  if (held_.empty()) return;
  const StreamState& first = streams_.at(held_.begin()->second);
  hold_timer_->Enable(common::ToAbsl(first.claim->hold_deadline - time_.MonotonicNow()));
}

// ---------------------------------------------------------------------------
// Accounting for the rescan
// ---------------------------------------------------------------------------

std::vector<PendingStream> ClaimSchedulerImpl::Unaccounted(
    const std::vector<PendingStream>& pending) {
  absl::MutexLock lock(&mu_);
  std::vector<PendingStream> out;
  for (const PendingStream& stream : pending) {
    auto it = streams_.find(Key(stream.tenant_id, stream.stream));
    const StreamState* state = it == streams_.end() ? nullptr : &it->second;
    PendingStream missing{stream.tenant_id, stream.stream, {}};
    for (const int64_t id : stream.wake_ids) {
      if (announced_ids_.Contains(id) || acked_ids_.Contains(id)) continue;
      if (state != nullptr && (state->unseen.contains(id) ||
                               (state->claim.has_value() && state->claim->wake_ids.contains(id)))) {
        continue;
      }
      missing.wake_ids.push_back(id);
    }
    if (!missing.wake_ids.empty()) out.push_back(std::move(missing));
  }
  return out;
}

int ClaimSchedulerImpl::ForgetParkedWithoutPending(const std::vector<PendingStream>& pending,
                                                   common::MonotonicTime since) {
  absl::flat_hash_set<Key> pending_streams;
  for (const PendingStream& stream : pending) {
    pending_streams.emplace(stream.tenant_id, stream.stream);
  }
  absl::MutexLock lock(&mu_);
  std::vector<Key> forget;
  for (const auto& [tenant, parked] : parked_) {
    for (const auto& [seq, key] : parked) {
      if (streams_.at(key).last_queued < since && !pending_streams.contains(key)) {
        forget.push_back(key);
      }
    }
  }
  for (const Key& key : forget) {
    StreamState& state = streams_.at(key);
    UnparkLocked(key, state);
    state.queued = false;
    state.queued_anonymous = false;
    state.unseen.clear();
    state.rechecks = 0;
    CancelRetryLocked(key, state);
    MaybeForgetLocked(key);
  }
  return static_cast<int>(forget.size());
}

// ---------------------------------------------------------------------------
// Health and shutdown
// ---------------------------------------------------------------------------

void ClaimSchedulerImpl::RecordErrorLocked(const std::string& what, const absl::Status& status) {
  last_error_ = absl::StrCat(what, ": ", status.ToString());
  common::LogWarn("registry_call_failed", {{"what", what}, {"error", status}});
}

SchedulerHealth ClaimSchedulerImpl::Health() {
  absl::MutexLock lock(&mu_);
  SchedulerHealth health;
  health.connected_runners = static_cast<int>(pool_.size());
  health.active_claims = active_claims_;
  for (const auto& [key, state] : streams_) {
    if (state.queued) ++health.queued_streams;
  }
  health.waiting_for_runner = parked_count_;
  health.counters = counters_;
  health.last_error = last_error_;
  return health;
}

void ClaimSchedulerImpl::BeginShutdown() {
  Effects fx;
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    ready_.clear();
    for (auto& [tenant, parked] : parked_) {
      for (const auto& [seq, key] : parked) streams_.at(key).parked = false;
    }
    parked_.clear();
    parked_count_ = 0;
    std::vector<Key> held;
    for (const auto& [seq, key] : held_) held.push_back(key);
    for (const Key& key : held) ReleaseLocked(key, streams_.at(key), fx);
  }
  Run(fx);
}

void ClaimSchedulerImpl::ReleaseAll() {
  Effects fx;
  {
    absl::MutexLock lock(&mu_);
    std::vector<Key> delivered;
    for (const auto& [key, state] : streams_) {
      if (state.phase == Phase::kDelivered || state.phase == Phase::kHeld) {
        delivered.push_back(key);
      }
    }
    for (const Key& key : delivered) ReleaseLocked(key, streams_.at(key), fx);
  }
  Run(fx);
}

bool ClaimSchedulerImpl::AwaitSettled(absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  auto settled = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return active_claims_ == 0 && claims_in_flight_ == 0 && releases_in_flight_ == 0;
  };
  return mu_.AwaitWithTimeout(absl::Condition(&settled), timeout);
}

bool ClaimSchedulerImpl::AwaitRunnersDone(absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  auto done = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return delivered_claims_ == 0; };
  return mu_.AwaitWithTimeout(absl::Condition(&done), timeout);
}

}  // namespace wake::runtime
