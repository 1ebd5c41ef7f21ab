// ClaimSchedulerImpl, part 2 of 5: runner sessions and the way claims reach
// them. Connect and Disconnect (a session's claims are released when it
// leaves); claims nobody can take yet are held for hold_timeout, then
// released; a claim is delivered to a session with room, and detached from
// it (or from the held claims) when it ends.
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "common/proto_time.h"
#include "runtime-service/claim_scheduler_impl.h"

namespace wake::runtime {

// ---------------------------------------------------------------------------
// Runner sessions
// ---------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------
// Holding and delivering claims
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

void ClaimSchedulerImpl::ArmHoldTimerLocked() {
  if (held_.empty()) return;
  const StreamState& first = streams_.at(held_.begin()->second);
  hold_timer_->Enable(common::ToAbsl(first.claim->hold_deadline - time_.MonotonicNow()));
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

void ClaimSchedulerImpl::DetachClaimLocked(const Key& key, StreamState& state) {
  if (!state.claim.has_value()) return;
  if (state.phase == Phase::kHeld) held_.erase({state.claim->held_seq, key});
  if (state.claim->session != 0) {
    --delivered_claims_;
    pool_.RemoveClaim(state.claim->session, key);
    state.claim->session = 0;
  }
}

}  // namespace wake::runtime
