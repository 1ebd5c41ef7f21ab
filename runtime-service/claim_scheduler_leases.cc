// ClaimSchedulerImpl, part 4 of 5: leases and releases. Heartbeats extend
// the leases of a session's claims (ExtendClaims); a claim whose lease ran
// out, or that the registry no longer extends, is dropped and its stream
// claimed again; ReleaseClaim gives a claim back (made again on ABORTED).
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/backoff.h"
#include "common/logging.h"
#include "common/proto_time.h"
#include "runtime-service/claim_scheduler_impl.h"

namespace wake::runtime {

// The registry no longer knows the claim: acking or releasing it again
// cannot succeed, so the claim is over for this runtime. ABORTED is not one
// of these: the store maps deadlocks and serialization failures to it, and
// the same call made again succeeds.
bool ClaimSchedulerImpl::ClaimIsGone(const absl::Status& status) {
  return absl::IsNotFound(status) || absl::IsFailedPrecondition(status) ||
         absl::IsPermissionDenied(status);
}

// ---------------------------------------------------------------------------
// Heartbeats and lease expiry
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
// Releases
// ---------------------------------------------------------------------------

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

}  // namespace wake::runtime
