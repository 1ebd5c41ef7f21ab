// ClaimSchedulerImpl, part 5 of 5: what the rest of the runtime asks of the
// scheduler besides claims: its health (and the last registry error), the
// rescan's accounting of pending wakes (WakeAccounting), and graceful
// shutdown.
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "runtime-service/claim_scheduler_impl.h"

namespace wake::runtime {

// ---------------------------------------------------------------------------
// Health
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
  health.waiting_for_runner = parked_.size();
  health.counters = counters_;
  health.last_error = last_error_;
  return health;
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
  for (const auto& [tenant, parked] : parked_.by_tenant()) {
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
// Graceful shutdown
// ---------------------------------------------------------------------------

void ClaimSchedulerImpl::BeginShutdown() {
  Effects fx;
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    ready_.clear();
    for (const auto& [tenant, parked] : parked_.by_tenant()) {
      for (const auto& [seq, key] : parked) streams_.at(key).parked = false;
    }
    parked_.Clear();
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
