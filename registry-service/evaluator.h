// Turns source events into durable wakes (docs/architecture.md, "Evaluation";
// docs/delivery.md, "Production"): matches registrations from the synced
// collection, stores debounced matches in their registration's window in
// PostgreSQL and closes windows when due, fires timeouts that follow the
// collection, and persists wakes with one-shot deletion and timeout
// consumption in the same statement.
//
// Nothing it holds in memory is needed for correctness: debounce windows and
// event keys live in the database (any replica closes a window that is due,
// whichever replica opened it), and timeouts are armed from the collection,
// so a restart or another replica loses nothing.
//
// Requests are assumed validated (see validation.h) with the tenant filled in.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/container/btree_set.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "common/executor.h"
#include "common/sync/registration_collection.h"
#include "common/time_source.h"
#include "registry-service/wake_store.h"
#include "wake/v1/registry.pb.h"

namespace wake::registry {

struct EvaluationResult {
  std::vector<v1::Wake> wakes;
  int32_t debounced = 0;
};

// What a registration is matched against.
struct SourceEvent {
  bool run_finished = false;  // EvaluateRunFinished (else EvaluateChange).
  std::string collection;
  sync::ChangeOp op = sync::ChangeOp::kUpdate;
};

// The matching rule of one registration, without side effects.
bool Matches(const sync::Registration& registration, const SourceEvent& event);

// "<offset>" when given, else "<op>:<key>" (op in lower case).
std::string SourceEventKey(const std::string& offset, sync::ChangeOp op, const std::string& key);

// How the key of an event with this offset is remembered.
EventKeyKind SourceEventKeyKind(const std::string& offset);

class Evaluator {
 public:
  // Deferred work (debounce and timeout wakes) runs on `executor`, never on
  // the timer thread. Listens to `collection` until destroyed.
  Evaluator(sync::RegistrationCollection& collection, WakeStore& store, common::TimeSource& time,
            common::Executor& executor);
  ~Evaluator();

  absl::StatusOr<EvaluationResult> EvaluateRunFinished(
      const v1::EvaluateRunFinishedRequest& request);
  absl::StatusOr<EvaluationResult> EvaluateChange(const v1::EvaluateChangeRequest& request);

  // The same without waiting for the wakes' shared write: `done` runs once,
  // on the caller's thread or on the store's batch thread. The caller's
  // thread may block on the database (gated wakes), so not a gRPC thread.
  using Done = std::function<void(absl::StatusOr<EvaluationResult>)>;
  void EvaluateRunFinishedAsync(const v1::EvaluateRunFinishedRequest& request, Done done);
  void EvaluateChangeAsync(const v1::EvaluateChangeRequest& request, Done done);

  // Closes debounce windows that are due whoever opened them (a replica
  // that died, or restarted, before its own timer fired), at most `limit`.
  // Blocks on the database; for the registry's periodic sweep.
  void CloseDueWindows(int limit);

  // For tests and health.
  size_t ArmedTimeouts();
  // Debounce windows this replica has a timer for.
  size_t WatchedWindows();

 private:
  struct Window {
    std::string tenant_id;
    common::MonotonicTime deadline;
  };
  struct Timeout {
    sync::Registration registration;
    absl::Time deadline;
  };

  // The registrations of (tenant, source) that `event` matches, by id.
  std::vector<sync::Registration> Match(const std::string& tenant, const std::string& source_url,
                                        const SourceEvent& event);
  // Persists one wake per matched registration (or stores the match in the
  // registration's debounce window).
  void Deliver(const std::vector<sync::Registration>& matched, const std::string& event_key,
               EventKeyKind key_kind, const v1::WakeChange& change, v1::RunStatus run_status,
               Done done);
  WakeDraft DraftFor(const sync::Registration& registration, std::string event_key,
                     std::vector<v1::WakeChange> changes, v1::RunStatus run_status) const;
  // Closes one window whose local timer fired; re-arms it when a later
  // match moved its deadline.
  void CloseWindow(const WindowKey& key);
  void OnCollectionEvent(const sync::CollectionEvent& event);
  // Follows one registration change (timeouts, window timers); no re-arm.
  void ApplyRowLocked(const sync::CollectionEvent& event) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The timer's work: closes the windows and fires the timeouts that are due.
  void ProcessDue();
  // Remove and return what is due (through EraseWindowLocked /
  // EraseTimeoutLocked), earliest first.
  std::vector<WindowKey> TakeDueWindowsLocked(common::MonotonicTime now)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::vector<Timeout> TakeDueTimeoutsLocked(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Persists one timeout wake per entry of `due`, in one statement.
  absl::Status FireTimeouts(const std::vector<Timeout>& due);
  // Arms again, kRetryDelay from now, the timeouts FireTimeouts could not
  // persist (unless a registration change armed one meanwhile).
  void RetryTimeoutsLocked(std::vector<Timeout> timeouts, const absl::Status& why)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Arms the timer for the earliest deadline: O(log n), not a scan.
  void RearmLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // windows_/timeouts_ and their deadline orders change only through these.
  void SetWindowLocked(int64_t id, const std::string& tenant, common::MonotonicTime deadline)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void EraseWindowLocked(int64_t id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void SetTimeoutLocked(Timeout timeout) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void EraseTimeoutLocked(int64_t id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  sync::RegistrationCollection& collection_;
  WakeStore& store_;
  common::TimeSource& time_;
  common::Executor& executor_;
  int listener_ = 0;

  absl::Mutex mu_;
  // Local timers of the debounce windows this replica stored matches in, by
  // registration id. The database holds the window; this only says when to
  // look at it.
  std::map<int64_t, Window> windows_ ABSL_GUARDED_BY(mu_);
  std::map<int64_t, Timeout> timeouts_ ABSL_GUARDED_BY(mu_);
  // (deadline, registration id) of every window and timeout, earliest first.
  absl::btree_set<std::pair<common::MonotonicTime, int64_t>> window_deadlines_ ABSL_GUARDED_BY(mu_);
  absl::btree_set<std::pair<absl::Time, int64_t>> timeout_deadlines_ ABSL_GUARDED_BY(mu_);
  bool process_posted_ ABSL_GUARDED_BY(mu_) = false;
  // False only when timer_ is surely disarmed: most rows have no deadline,
  // and disarming an idle timer on each of them costs the timer's lock.
  bool timer_maybe_armed_ ABSL_GUARDED_BY(mu_) = true;
  common::TimerPtr timer_;
};

}  // namespace wake::registry
