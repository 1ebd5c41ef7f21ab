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

EventKeyKind SourceEventKeyKind(const std::string& offset) {
  return offset.empty() ? EventKeyKind::kEvent : EventKeyKind::kOffset;
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
  // Every change from here on, then the registrations already present, arm
  // timeouts: listening first means no registration that arrives in between
  // is missed. A change delivered while the snapshot is applied waits for
  // mu_ and is applied after it (changes carry whole rows, in order).
  listener_ = collection_.AddListener(
      [this](const sync::CollectionEvent& event) { OnCollectionEvent(event); });
  absl::MutexLock lock(&mu_);
  for (const sync::Registration& row : collection_.Snapshot(std::nullopt)) {
    sync::CollectionEvent event;
    event.kind = sync::CollectionEvent::Kind::kEnter;
    event.row = row;
    ApplyRowLocked(event);
  }
  RearmLocked();
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

void Evaluator::EvaluateRunFinishedAsync(const v1::EvaluateRunFinishedRequest& request, Done done) {
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
  Deliver(matched, SourceEventKey(request.offset(), event.op, request.run_key()),
          SourceEventKeyKind(request.offset()), change, request.status(), std::move(done));
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
  Deliver(matched, SourceEventKey(request.offset(), event.op, request.key()),
          SourceEventKeyKind(request.offset()), change, v1::RUN_STATUS_UNSPECIFIED,
          std::move(done));
}

WakeDraft Evaluator::DraftFor(const sync::Registration& registration, std::string event_key,
                              std::vector<v1::WakeChange> changes, v1::RunStatus run_status) const {
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

void Evaluator::Deliver(const std::vector<sync::Registration>& matched,
                        const std::string& event_key, EventKeyKind key_kind,
                        const v1::WakeChange& change, v1::RunStatus run_status, Done done) {
  std::vector<WakeDraft> drafts;
  drafts.reserve(matched.size());
  // (registration id, debounce) of the matches that join a window.
  std::vector<std::pair<int64_t, int32_t>> debounced;
  for (const sync::Registration& registration : matched) {
    v1::WakeChange carried = change;
    if (!registration.include_response) {
      carried.clear_value();
      carried.clear_old_value();
    }
    WakeDraft draft = DraftFor(registration, event_key, {std::move(carried)}, run_status);
    draft.key_kind = key_kind;
    if (registration.debounce_ms > 0) {
      // The match joins the registration's window; a one-shot registration
      // goes when the window closes into its wake.
      draft.debounce_ms = registration.debounce_ms;
      draft.delete_registration = false;
      debounced.emplace_back(registration.id, registration.debounce_ms);
    }
    drafts.push_back(std::move(draft));
  }
  store_.PersistWakesAsync(drafts, [this, debounced = std::move(debounced), done = std::move(done)](
                                       absl::StatusOr<PersistResult> persisted) {
    if (!persisted.ok()) {
      done(persisted.status());
      return;
    }
    EvaluationResult result;
    result.wakes = std::move(persisted->wakes);
    result.debounced = static_cast<int32_t>(persisted->buffered.size());
    if (!persisted->buffered.empty()) {
      // Watch the windows this call moved: each match restarts its timer.
      absl::MutexLock lock(&mu_);
      const common::MonotonicTime now = time_.MonotonicNow();
      for (const BufferedMatch& match : persisted->buffered) {
        for (const auto& [id, debounce_ms] : debounced) {
          if (id != match.registration_id) continue;
          // A full window closed early: its deadline in the database is now.
          SetWindowLocked(
              id, match.tenant_id,
              match.full ? now : now + common::ToChrono(absl::Milliseconds(debounce_ms)));
          break;
        }
      }
      RearmLocked();
    }
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
    // Its window (if any) closes without a wake when it is due.
    EraseWindowLocked(row.id);
    return;
  }
  if (row.timeout_ms > 0 && !row.timeout_consumed) {
    SetTimeoutLocked(Timeout{row, row.created_at + absl::Milliseconds(row.timeout_ms)});
  } else {
    EraseTimeoutLocked(row.id);
  }
}

void Evaluator::SetWindowLocked(int64_t id, const std::string& tenant,
                                common::MonotonicTime deadline) {
  auto [it, fresh] = windows_.try_emplace(id);
  if (!fresh) window_deadlines_.erase({it->second.deadline, id});
  it->second = Window{tenant, deadline};
  window_deadlines_.insert({deadline, id});
}

void Evaluator::EraseWindowLocked(int64_t id) {
  auto it = windows_.find(id);
  if (it == windows_.end()) return;
  window_deadlines_.erase({it->second.deadline, id});
  windows_.erase(it);
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
  if (!window_deadlines_.empty()) {
    next = common::ToAbsl(window_deadlines_.begin()->first - time_.MonotonicNow());
  }
  if (!timeout_deadlines_.empty()) {
    const absl::Duration delay = timeout_deadlines_.begin()->first - time_.SystemNow();
    if (!next.has_value() || delay < *next) next = delay;
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
  std::vector<WindowKey> windows;
  std::vector<Timeout> timeouts;
  {
    absl::MutexLock lock(&mu_);
    windows = TakeDueWindowsLocked(time_.MonotonicNow());
    timeouts = TakeDueTimeoutsLocked(time_.SystemNow());
  }
  for (const WindowKey& window : windows) CloseWindow(window);
  const absl::Status fired = FireTimeouts(timeouts);
  absl::MutexLock lock(&mu_);
  if (!fired.ok()) RetryTimeoutsLocked(std::move(timeouts), fired);
  process_posted_ = false;
  RearmLocked();
}

std::vector<WindowKey> Evaluator::TakeDueWindowsLocked(common::MonotonicTime now) {
  std::vector<WindowKey> due;
  while (!window_deadlines_.empty() && window_deadlines_.begin()->first <= now) {
    const int64_t id = window_deadlines_.begin()->second;
    due.push_back(WindowKey{windows_.at(id).tenant_id, id});
    EraseWindowLocked(id);
  }
  return due;
}

std::vector<Evaluator::Timeout> Evaluator::TakeDueTimeoutsLocked(absl::Time now) {
  std::vector<Timeout> due;
  while (!timeout_deadlines_.empty() && timeout_deadlines_.begin()->first <= now) {
    const int64_t id = timeout_deadlines_.begin()->second;
    due.push_back(timeouts_.at(id));
    EraseTimeoutLocked(id);
  }
  return due;
}

absl::Status Evaluator::FireTimeouts(const std::vector<Timeout>& due) {
  if (due.empty()) return absl::OkStatus();
  std::vector<WakeDraft> drafts;
  drafts.reserve(due.size());
  for (const Timeout& timeout : due) {
    WakeDraft draft = DraftFor(timeout.registration, "timeout", {}, v1::RUN_STATUS_UNSPECIFIED);
    draft.message.set_timeout(true);
    draft.consume_timeout = false;
    draft.require_timeout_unconsumed = true;
    drafts.push_back(std::move(draft));
  }
  absl::StatusOr<PersistResult> persisted = store_.PersistWakes(drafts);
  if (!persisted.ok()) return persisted.status();
  for (const v1::Wake& wake : persisted->wakes) {
    common::LogDebug("timeout_wake",
                     {{"wake_id", wake.id()}, {"registration_id", wake.registration_id()}});
  }
  return absl::OkStatus();
}

void Evaluator::RetryTimeoutsLocked(std::vector<Timeout> timeouts, const absl::Status& why) {
  // Nothing may be lost: arm them again and try shortly. (The rows stay
  // unconsumed in the database, so a restart arms them again too.)
  common::LogWarn("timeout_wake_failed", {{"error", std::string(why.message())},
                                          {"retry_in", absl::FormatDuration(kRetryDelay)}});
  for (Timeout& timeout : timeouts) {
    // A change of the registration meanwhile armed it afresh: keep that.
    if (timeouts_.count(timeout.registration.id) > 0) continue;
    timeout.deadline = time_.SystemNow() + kRetryDelay;
    SetTimeoutLocked(std::move(timeout));
  }
}

void Evaluator::CloseWindow(const WindowKey& key) {
  absl::StatusOr<WindowResult> result = store_.CloseDebounceWindow(key);
  std::optional<absl::Duration> again;
  if (!result.ok()) {
    // The window is safe in the database; look again shortly (the sweep of
    // any replica would close it too).
    common::LogWarn("debounce_close_failed", {{"registration_id", key.registration_id},
                                              {"error", std::string(result.status().message())},
                                              {"retry_in", absl::FormatDuration(kRetryDelay)}});
    again = kRetryDelay;
  } else if (result->outcome == WindowResult::Outcome::kNotDue) {
    again = result->due_in;
  } else if (result->wake.has_value()) {
    common::LogDebug("debounced_wake", {{"wake_id", result->wake->id()},
                                        {"registration_id", key.registration_id},
                                        {"changes", result->wake->message().changes_size()},
                                        {"parts", 1 + result->more_wakes.size()}});
  }
  if (!again.has_value()) return;
  absl::MutexLock lock(&mu_);
  // A match since then armed it already (as late or later): keep that.
  if (windows_.count(key.registration_id) > 0) return;
  SetWindowLocked(key.registration_id, key.tenant_id,
                  time_.MonotonicNow() + common::ToChrono(*again));
  RearmLocked();
}

void Evaluator::CloseDueWindows(int limit) {
  absl::StatusOr<std::vector<WindowKey>> due = store_.DueDebounceWindows(limit);
  if (!due.ok()) {
    common::LogWarn("debounce_sweep_failed", {{"error", std::string(due.status().message())}});
    return;
  }
  for (const WindowKey& window : *due) {
    {
      absl::MutexLock lock(&mu_);
      EraseWindowLocked(window.registration_id);
    }
    CloseWindow(window);
  }
}

size_t Evaluator::ArmedTimeouts() {
  absl::MutexLock lock(&mu_);
  return timeouts_.size();
}

size_t Evaluator::WatchedWindows() {
  absl::MutexLock lock(&mu_);
  return windows_.size();
}

}  // namespace wake::registry
