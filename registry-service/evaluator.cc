#include "registry-service/evaluator.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "common/logging.h"

namespace wake::registry {
namespace {

// How long a failed debounce or timeout wake waits before the next attempt.
constexpr absl::Duration kRetryDelay = absl::Seconds(1);

}  // namespace

bool Matches(const sync::Registration& registration, const SourceEvent& event) {
  const sync::Condition& condition = registration.condition;
  if (event.run_finished) return condition.kind == sync::ConditionKind::kRunFinished;
  if (condition.kind != sync::ConditionKind::kChange) return false;
  if (!condition.collections.empty() &&
      !std::binary_search(condition.collections.begin(), condition.collections.end(),
                          event.collection)) {
    return false;
  }
  return condition.ops.empty() ||
         std::find(condition.ops.begin(), condition.ops.end(), event.op) != condition.ops.end();
}

std::string SourceEventKey(const std::string& offset, sync::ChangeOp op, const std::string& key) {
  if (!offset.empty()) return offset;
  return absl::StrCat(sync::ChangeOpName(op), ":", key);
}

Evaluator::Evaluator(sync::RegistrationCollection& collection, WakeStore& store,
                     common::TimeSource& time, common::Executor& executor)
    : collection_(collection), store_(store), time_(time), executor_(executor) {
  timer_ = time_.CreateTimer([this] {
    absl::MutexLock lock(&mu_);
    if (process_posted_) return;
    process_posted_ = true;
    executor_.Post([this] { ProcessDue(); });
  });
  // Registrations already present (and every later change) arm timeouts.
  {
    absl::MutexLock lock(&mu_);
    for (const sync::Registration& row : collection_.Snapshot(std::nullopt)) {
      sync::CollectionEvent event;
      event.kind = sync::CollectionEvent::Kind::kEnter;
      event.row = row;
      ApplyRowLocked(event);
    }
    RearmLocked();
  }
  listener_ = collection_.AddListener(
      [this](const sync::CollectionEvent& event) { OnCollectionEvent(event); });
}

Evaluator::~Evaluator() {
  collection_.RemoveListener(listener_);
  timer_->Disable();
  // Work already posted must finish before the members it uses go away.
  absl::MutexLock lock(&mu_);
  auto idle = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return !process_posted_; };
  mu_.Await(absl::Condition(&idle));
}

namespace {

// Runs an async evaluation and waits for its result.
template <typename Start>
absl::StatusOr<EvaluationResult> Wait(Start start) {
  absl::Notification finished;
  absl::StatusOr<EvaluationResult> result;
  start([&](absl::StatusOr<EvaluationResult> r) {
    result = std::move(r);
    finished.Notify();
  });
  finished.WaitForNotification();
  return result;
}

}  // namespace

absl::StatusOr<EvaluationResult> Evaluator::EvaluateRunFinished(
    const v1::EvaluateRunFinishedRequest& request) {
  return Wait([&](Done done) { EvaluateRunFinishedAsync(request, std::move(done)); });
}

absl::StatusOr<EvaluationResult> Evaluator::EvaluateChange(
    const v1::EvaluateChangeRequest& request) {
  return Wait([&](Done done) { EvaluateChangeAsync(request, std::move(done)); });
}

void Evaluator::EvaluateRunFinishedAsync(const v1::EvaluateRunFinishedRequest& request,
                                         Done done) {
  SourceEvent event;
  event.run_finished = true;
  event.collection = "runs";
  event.op = sync::ChangeOp::kUpdate;
  // Most events match nothing: build the wake's parts only for a match.
  const std::vector<sync::Registration> matched =
      Match(request.tenant_id(), request.source_url(), event);
  if (matched.empty()) {
    done(EvaluationResult());
    return;
  }
  v1::WakeChange change;
  change.set_collection("runs");
  change.set_kind(v1::UPDATE);
  change.set_key(request.run_key());
  if (request.has_value()) *change.mutable_value() = request.value();
  Deliver(matched, event, SourceEventKey(request.offset(), event.op, request.run_key()), change,
          request.status(), std::move(done));
}

void Evaluator::EvaluateChangeAsync(const v1::EvaluateChangeRequest& request, Done done) {
  SourceEvent event;
  event.collection = request.collection();
  event.op = static_cast<sync::ChangeOp>(static_cast<int>(request.op()));
  const std::vector<sync::Registration> matched =
      Match(request.tenant_id(), request.source_url(), event);
  if (matched.empty()) {
    done(EvaluationResult());
    return;
  }
  v1::WakeChange change;
  change.set_collection(request.collection());
  change.set_kind(request.op());
  change.set_key(request.key());
  if (request.has_value()) *change.mutable_value() = request.value();
  if (request.has_old_value()) *change.mutable_old_value() = request.old_value();
  if (request.collection() == "inbox" && request.has_inbox()) {
    *change.mutable_inbox() = request.inbox();
  }
  Deliver(matched, event, SourceEventKey(request.offset(), event.op, request.key()), change,
          v1::RUN_STATUS_UNSPECIFIED, std::move(done));
}

WakeDraft Evaluator::DraftFor(const sync::Registration& registration, std::string event_key,
                              std::vector<v1::WakeChange> changes,
                              v1::RunStatus run_status) const {
  WakeDraft draft;
  draft.tenant_id = registration.tenant_id;
  draft.stream = registration.subscriber_url;
  draft.registration_id = registration.id;
  draft.source_event_key = std::move(event_key);
  draft.message.set_source(registration.source_url);
  for (v1::WakeChange& change : changes) *draft.message.add_changes() = std::move(change);
  draft.run_finished_status = run_status;
  draft.include_response = registration.include_response;
  draft.delete_registration = registration.one_shot;
  draft.consume_timeout = registration.timeout_ms > 0 && !registration.timeout_consumed;
  return draft;
}

std::vector<sync::Registration> Evaluator::Match(const std::string& tenant,
                                                 const std::string& source_url,
                                                 const SourceEvent& event) {
  std::vector<sync::Registration> matched;
  collection_.ForEachBySource(tenant, source_url, [&](const sync::Registration& registration) {
    if (Matches(registration, event)) matched.push_back(registration);
  });
  std::sort(matched.begin(), matched.end(),
            [](const sync::Registration& a, const sync::Registration& b) { return a.id < b.id; });
  return matched;
}

void Evaluator::Deliver(const std::vector<sync::Registration>& matched, const SourceEvent& event,
                        const std::string& event_key, const v1::WakeChange& change,
                        v1::RunStatus run_status, Done done) {
  EvaluationResult result;
  std::vector<WakeDraft> drafts;
  for (const sync::Registration& registration : matched) {
    v1::WakeChange carried = change;
    if (!registration.include_response) {
      carried.clear_value();
      carried.clear_old_value();
    }
    if (registration.debounce_ms <= 0) {
      drafts.push_back(DraftFor(registration, event_key, {std::move(carried)}, run_status));
      continue;
    }
    absl::MutexLock lock(&mu_);
    auto [it, fresh] = buffers_.try_emplace(registration.id);
    Buffer& buffer = it->second;
    if (fresh) buffer.first_key = event_key;
    buffer.registration = registration;
    if (buffer.keys.insert(event_key).second) {
      buffer.changes.push_back(std::move(carried));
      if (event.run_finished) buffer.last_status = run_status;
    }
    // Each match restarts the timer.
    SetBufferDeadlineLocked(registration.id, buffer,
                            time_.MonotonicNow() +
                                common::ToChrono(absl::Milliseconds(registration.debounce_ms)));
    RearmLocked();
    ++result.debounced;
  }
  if (drafts.empty()) {
    done(std::move(result));
    return;
  }
  store_.PersistWakesAsync(
      drafts, [debounced = result.debounced,
               done = std::move(done)](absl::StatusOr<PersistResult> persisted) {
        if (!persisted.ok()) {
          done(persisted.status());
          return;
        }
        EvaluationResult result;
        result.debounced = debounced;
        result.wakes = std::move(persisted->wakes);
        done(std::move(result));
      });
}

void Evaluator::OnCollectionEvent(const sync::CollectionEvent& event) {
  using Kind = sync::CollectionEvent::Kind;
  if (event.kind != Kind::kEnter && event.kind != Kind::kUpdate && event.kind != Kind::kExit) {
    return;
  }
  absl::MutexLock lock(&mu_);
  ApplyRowLocked(event);
  RearmLocked();
}

void Evaluator::ApplyRowLocked(const sync::CollectionEvent& event) {
  const sync::Registration& row = event.row;
  if (event.kind == sync::CollectionEvent::Kind::kExit) {
    EraseTimeoutLocked(row.id);
    EraseBufferLocked(row.id);  // Unregistered (or consumed): buffered matches go with it.
    return;
  }
  if (row.timeout_ms > 0 && !row.timeout_consumed) {
    SetTimeoutLocked(Timeout{row, row.created_at + absl::Milliseconds(row.timeout_ms)});
  } else {
    EraseTimeoutLocked(row.id);
  }
  if (auto it = buffers_.find(row.id); it != buffers_.end()) it->second.registration = row;
}

void Evaluator::SetBufferDeadlineLocked(int64_t id, Buffer& buffer,
                                        common::MonotonicTime deadline) {
  buffer_deadlines_.erase({buffer.deadline, id});  // Nothing to erase for a fresh buffer.
  buffer.deadline = deadline;
  buffer_deadlines_.insert({deadline, id});
}

void Evaluator::EraseBufferLocked(int64_t id) {
  auto it = buffers_.find(id);
  if (it == buffers_.end()) return;
  buffer_deadlines_.erase({it->second.deadline, id});
  buffers_.erase(it);
}

void Evaluator::SetTimeoutLocked(Timeout timeout) {
  const int64_t id = timeout.registration.id;
  auto [it, fresh] = timeouts_.try_emplace(id);
  if (!fresh) timeout_deadlines_.erase({it->second.deadline, id});
  timeout_deadlines_.insert({timeout.deadline, id});
  it->second = std::move(timeout);
}

void Evaluator::EraseTimeoutLocked(int64_t id) {
  auto it = timeouts_.find(id);
  if (it == timeouts_.end()) return;
  timeout_deadlines_.erase({it->second.deadline, id});
  timeouts_.erase(it);
}

void Evaluator::RearmLocked() {
  std::optional<absl::Duration> next;
  if (!buffer_deadlines_.empty()) {
    next = common::ToAbsl(buffer_deadlines_.begin()->first - time_.MonotonicNow());
  }
  // A timeout whose registration has buffered matches needs no timer of its
  // own: the buffer consumes it, or ProcessDue looks at it again when the
  // buffer fires. Only those are skipped (at most one per buffer).
  for (const auto& [deadline, id] : timeout_deadlines_) {
    if (buffers_.count(id) > 0) continue;
    const absl::Duration delay = deadline - time_.SystemNow();
    if (!next.has_value() || delay < *next) next = delay;
    break;
  }
  if (next.has_value()) {
    timer_->Enable(std::max(*next, absl::ZeroDuration()));
    timer_maybe_armed_ = true;
  } else if (timer_maybe_armed_) {
    timer_->Disable();
    timer_maybe_armed_ = false;
  }
}

void Evaluator::ProcessDue() {
  std::vector<WakeDraft> drafts;
  std::vector<Buffer> taken_buffers;
  std::vector<Timeout> taken_timeouts;
  {
    absl::MutexLock lock(&mu_);
    const common::MonotonicTime mono_now = time_.MonotonicNow();
    const absl::Time now = time_.SystemNow();
    while (!buffer_deadlines_.empty() && buffer_deadlines_.begin()->first <= mono_now) {
      const int64_t id = buffer_deadlines_.begin()->second;
      buffer_deadlines_.erase(buffer_deadlines_.begin());
      auto it = buffers_.find(id);
      Buffer& buffer = it->second;
      drafts.push_back(DraftFor(buffer.registration, absl::StrCat("debounce:", buffer.first_key),
                                buffer.changes, buffer.last_status));
      taken_buffers.push_back(std::move(buffer));
      buffers_.erase(it);
    }
    for (auto due = timeout_deadlines_.begin();
         due != timeout_deadlines_.end() && due->first <= now;) {
      const int64_t id = due->second;
      // A buffered match arrived first: it consumes the timeout when it fires.
      if (buffers_.count(id) > 0) {
        ++due;
        continue;
      }
      auto it = timeouts_.find(id);
      WakeDraft draft =
          DraftFor(it->second.registration, "timeout", {}, v1::RUN_STATUS_UNSPECIFIED);
      draft.message.set_timeout(true);
      draft.consume_timeout = false;
      draft.require_timeout_unconsumed = true;
      drafts.push_back(std::move(draft));
      taken_timeouts.push_back(std::move(it->second));
      timeouts_.erase(it);
      due = timeout_deadlines_.erase(due);
    }
  }
  absl::Status status = absl::OkStatus();
  if (!drafts.empty()) {
    absl::StatusOr<PersistResult> persisted = store_.PersistWakes(drafts);
    status = persisted.status();
    if (persisted.ok()) {
      for (const v1::Wake& wake : persisted->wakes) {
        common::LogDebug("deferred_wake", {{"wake_id", wake.id()},
                                           {"registration_id", wake.registration_id()},
                                           {"key", wake.source_event_key()}});
      }
    }
  }
  absl::MutexLock lock(&mu_);
  if (!status.ok()) {
    // Nothing may be lost: put everything back and try again shortly.
    common::LogWarn("deferred_wake_failed", {{"error", std::string(status.message())},
                                             {"retry_in", absl::FormatDuration(kRetryDelay)}});
    const common::MonotonicTime retry = time_.MonotonicNow() + common::ToChrono(kRetryDelay);
    for (Buffer& buffer : taken_buffers) {
      const int64_t id = buffer.registration.id;
      auto [it, fresh] = buffers_.try_emplace(id);
      if (!fresh) {
        // Newer matches arrived meanwhile: keep the older ones in front.
        Buffer& newer = it->second;
        buffer.changes.insert(buffer.changes.end(), newer.changes.begin(), newer.changes.end());
        buffer.keys.insert(newer.keys.begin(), newer.keys.end());
        if (newer.last_status != v1::RUN_STATUS_UNSPECIFIED) buffer.last_status = newer.last_status;
        buffer.registration = newer.registration;
        buffer_deadlines_.erase({newer.deadline, id});
      }
      buffer.deadline = retry;
      buffer_deadlines_.insert({retry, id});
      it->second = std::move(buffer);
    }
    for (Timeout& timeout : taken_timeouts) {
      if (timeouts_.count(timeout.registration.id) > 0) continue;
      timeout.deadline = time_.SystemNow() + kRetryDelay;
      SetTimeoutLocked(std::move(timeout));
    }
  }
  process_posted_ = false;
  RearmLocked();
}

size_t Evaluator::ArmedTimeouts() {
  absl::MutexLock lock(&mu_);
  return timeouts_.size();
}

size_t Evaluator::DebounceBuffers() {
  absl::MutexLock lock(&mu_);
  return buffers_.size();
}

}  // namespace wake::registry
