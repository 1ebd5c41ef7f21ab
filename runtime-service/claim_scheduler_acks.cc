// ClaimSchedulerImpl, part 3 of 5: acks. A runner's ack is checked against
// the claim it holds, sent as AckWakes (made again on ABORTED), and its
// answer ends the claim: the stream goes idle or is claimed again (more
// pending, or the ack's own claim_next), and the acked wake ids are
// remembered so late announcements of them need no claim.
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/backoff.h"
#include "common/proto_time.h"
#include "runtime-service/claim_scheduler_impl.h"

namespace wake::runtime {
namespace {

// Delay before retry number `attempt` (1 = the first retry) of a call that
// failed with ABORTED.
absl::Duration AbortRetryDelay(const SchedulerOptions& options, int attempt) {
  common::Backoff backoff(options.abort_retry_initial, options.abort_retry_max);
  absl::Duration delay;
  for (int i = 0; i < attempt; ++i) delay = backoff.Next();
  return delay;
}

}  // namespace

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
        claim_next = options_.claim_next_in_ack && !stopping_ &&
                     (pool_.Room(state.claim->session) > 0 || (ready_.empty() && parked_.empty()));
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

}  // namespace wake::runtime
