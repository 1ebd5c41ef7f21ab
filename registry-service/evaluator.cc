#include "registry-service/evaluator.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
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
  for (const sync::Registration& row : collection_.Snapshot(std::nullopt)) {
    sync::CollectionEvent event;
    event.kind = sync::CollectionEvent::Kind::kEnter;
    event.row = row;
    OnCollectionEvent(event);
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

absl::StatusOr<EvaluationResult> Evaluator::EvaluateRunFinished(
    const v1::EvaluateRunFinishedRequest& request) {
  SourceEvent event;
  event.run_finished = true;
  event.collection = "runs";
  event.op = sync::ChangeOp::kUpdate;
  v1::WakeChange change;
  change.set_collection("runs");
  change.set_kind(v1::UPDATE);
  change.set_key(request.run_key());
  if (request.has_value()) *change.mutable_value() = request.value();
  return Evaluate(request.tenant_id(), request.source_url(), event,
                  SourceEventKey(request.offset(), event.op, request.run_key()), change,
                  request.status());
}

absl::StatusOr<EvaluationResult> Evaluator::EvaluateChange(
    const v1::EvaluateChangeRequest& request) {
  SourceEvent event;
  event.collection = request.collection();
  event.op = static_cast<sync::ChangeOp>(static_cast<int>(request.op()));
  v1::WakeChange change;
  change.set_collection(request.collection());
  change.set_kind(request.op());
  change.set_key(request.key());
  if (request.has_value()) *change.mutable_value() = request.value();
  if (request.has_old_value()) *change.mutable_old_value() = request.old_value();
  if (request.collection() == "inbox" && request.has_inbox()) {
    *change.mutable_inbox() = request.inbox();
  }
  return Evaluate(request.tenant_id(), request.source_url(), event,
                  SourceEventKey(request.offset(), event.op, request.key()), change,
                  v1::RUN_STATUS_UNSPECIFIED);
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

absl::StatusOr<EvaluationResult> Evaluator::Evaluate(const std::string& tenant,
                                                     const std::string& source_url,
                                                     const SourceEvent& event,
                                                     const std::string& event_key,
                                                     const v1::WakeChange& change,
                                                     v1::RunStatus run_status) {
  std::vector<sync::Registration> matched;
  collection_.ForEachBySource(tenant, source_url, [&](const sync::Registration& registration) {
    if (Matches(registration, event)) matched.push_back(registration);
  });
  EvaluationResult result;
  if (matched.empty()) return result;
  std::sort(matched.begin(), matched.end(),
            [](const sync::Registration& a, const sync::Registration& b) { return a.id < b.id; });

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
    buffer.deadline = time_.MonotonicNow() + common::ToChrono(absl::Milliseconds(
                                                 registration.debounce_ms));
    RearmLocked();
    ++result.debounced;
  }
  if (drafts.empty()) return result;
  absl::StatusOr<PersistResult> persisted = store_.PersistWakes(drafts);
  if (!persisted.ok()) return persisted.status();
  result.wakes = std::move(persisted->wakes);
  return result;
}

void Evaluator::OnCollectionEvent(const sync::CollectionEvent& event) {
  using Kind = sync::CollectionEvent::Kind;
  if (event.kind != Kind::kEnter && event.kind != Kind::kUpdate && event.kind != Kind::kExit) {
    return;
  }
  const sync::Registration& row = event.row;
  absl::MutexLock lock(&mu_);
  if (event.kind == Kind::kExit) {
    timeouts_.erase(row.id);
    buffers_.erase(row.id);  // Unregistered (or consumed): buffered matches go with it.
  } else {
    if (row.timeout_ms > 0 && !row.timeout_consumed) {
      timeouts_[row.id] = Timeout{row, row.created_at + absl::Milliseconds(row.timeout_ms)};
    } else {
      timeouts_.erase(row.id);
    }
    if (auto it = buffers_.find(row.id); it != buffers_.end()) it->second.registration = row;
  }
  RearmLocked();
}

void Evaluator::RearmLocked() {
  std::optional<absl::Duration> next;
  const common::MonotonicTime mono_now = time_.MonotonicNow();
  const absl::Time now = time_.SystemNow();
  auto consider = [&next](absl::Duration delay) {
    if (!next.has_value() || delay < *next) next = delay;
  };
  for (const auto& [id, buffer] : buffers_) consider(common::ToAbsl(buffer.deadline - mono_now));
  for (const auto& [id, timeout] : timeouts_) consider(timeout.deadline - now);
  if (retry_at_ != common::MonotonicTime()) consider(common::ToAbsl(retry_at_ - mono_now));
  if (next.has_value()) {
    timer_->Enable(std::max(*next, absl::ZeroDuration()));
  } else {
    timer_->Disable();
  }
}

void Evaluator::ProcessDue() {
  std::vector<WakeDraft> drafts;
  std::vector<Buffer> taken_buffers;
  std::vector<Timeout> taken_timeouts;
  {
    absl::MutexLock lock(&mu_);
    retry_at_ = common::MonotonicTime();
    const common::MonotonicTime mono_now = time_.MonotonicNow();
    const absl::Time now = time_.SystemNow();
    for (auto it = buffers_.begin(); it != buffers_.end();) {
      if (it->second.deadline > mono_now) {
        ++it;
        continue;
      }
      Buffer& buffer = it->second;
      drafts.push_back(DraftFor(buffer.registration, absl::StrCat("debounce:", buffer.first_key),
                                buffer.changes, buffer.last_status));
      taken_buffers.push_back(std::move(buffer));
      it = buffers_.erase(it);
    }
    for (auto it = timeouts_.begin(); it != timeouts_.end();) {
      // A buffered match arrived first: it consumes the timeout when it fires.
      if (it->second.deadline > now || buffers_.count(it->first) > 0) {
        ++it;
        continue;
      }
      const sync::Registration& registration = it->second.registration;
      WakeDraft draft = DraftFor(registration, "timeout", {}, v1::RUN_STATUS_UNSPECIFIED);
      draft.message.set_timeout(true);
      draft.consume_timeout = false;
      draft.require_timeout_unconsumed = true;
      drafts.push_back(std::move(draft));
      taken_timeouts.push_back(std::move(it->second));
      it = timeouts_.erase(it);
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
      auto [it, fresh] = buffers_.try_emplace(buffer.registration.id);
      if (!fresh) {
        // Newer matches arrived meanwhile: keep the older ones in front.
        Buffer& newer = it->second;
        buffer.changes.insert(buffer.changes.end(), newer.changes.begin(), newer.changes.end());
        buffer.keys.insert(newer.keys.begin(), newer.keys.end());
        if (newer.last_status != v1::RUN_STATUS_UNSPECIFIED) buffer.last_status = newer.last_status;
        buffer.registration = newer.registration;
      }
      buffer.deadline = retry;
      it->second = std::move(buffer);
    }
    for (Timeout& timeout : taken_timeouts) {
      if (timeouts_.count(timeout.registration.id) > 0) continue;
      timeout.deadline = time_.SystemNow() + kRetryDelay;
      timeouts_.emplace(timeout.registration.id, std::move(timeout));
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
