// A SyncObserver for tests: records every call, keeps the synced rows the way
// a registry replica would (a reset stages a fresh copy that replaces the
// live one at OnUpToDate), and lets a test wait for a condition with a
// deadline.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/sync/sync_source.h"

namespace wake::testing {

class RecordingObserver final : public sync::SyncObserver {
 public:
  struct State {
    // Every call in order: "reset", "batch", "up_to_date", "disconnected".
    std::vector<std::string> events;
    std::vector<sync::SyncBatch> batches;
    std::vector<absl::Status> disconnects;
    // Live rows (as of the last OnUpToDate plus later batches).
    std::map<int64_t, sync::Registration> registrations;
    std::map<int64_t, sync::WakeRow> wakes;
    int up_to_date_count = 0;
    int reset_count = 0;
  };

  void OnReset() override {
    absl::MutexLock lock(&mu_);
    state_.events.push_back("reset");
    ++state_.reset_count;
    staging_ = true;
    staged_registrations_.clear();
    staged_wakes_.clear();
  }

  void OnBatch(sync::SyncBatch batch) override {
    absl::MutexLock lock(&mu_);
    state_.events.push_back("batch");
    auto& registrations = staging_ ? staged_registrations_ : state_.registrations;
    auto& wakes = staging_ ? staged_wakes_ : state_.wakes;
    for (const sync::RowChange& change : batch.changes) {
      if (change.registration.has_value()) {
        if (change.op == sync::ChangeOp::kDelete) {
          registrations.erase(change.registration->id);
        } else {
          registrations[change.registration->id] = *change.registration;
        }
      }
      if (change.wake.has_value()) {
        if (change.op == sync::ChangeOp::kDelete) {
          wakes.erase(change.wake->id);
        } else {
          wakes[change.wake->id] = *change.wake;
        }
      }
    }
    state_.batches.push_back(std::move(batch));
  }

  void OnUpToDate() override {
    absl::MutexLock lock(&mu_);
    state_.events.push_back("up_to_date");
    ++state_.up_to_date_count;
    if (staging_) {
      state_.registrations = std::move(staged_registrations_);
      state_.wakes = std::move(staged_wakes_);
      staged_registrations_.clear();
      staged_wakes_.clear();
      staging_ = false;
    }
  }

  void OnDisconnected(const absl::Status& why) override {
    absl::MutexLock lock(&mu_);
    state_.events.push_back("disconnected");
    state_.disconnects.push_back(why);
  }

  // Waits until `predicate(state)` holds; false after `timeout`.
  bool WaitFor(const std::function<bool(const State&)>& predicate, absl::Duration timeout) {
    absl::MutexLock lock(&mu_);
    auto holds = [this, &predicate]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return predicate(state_);
    };
    return mu_.AwaitWithTimeout(absl::Condition(&holds), timeout);
  }

  State Snapshot() {
    absl::MutexLock lock(&mu_);
    return state_;
  }

  bool HasRegistration(int64_t id) {
    absl::MutexLock lock(&mu_);
    return state_.registrations.count(id) > 0;
  }

 private:
  absl::Mutex mu_;
  State state_ ABSL_GUARDED_BY(mu_);
  bool staging_ ABSL_GUARDED_BY(mu_) = false;
  std::map<int64_t, sync::Registration> staged_registrations_ ABSL_GUARDED_BY(mu_);
  std::map<int64_t, sync::WakeRow> staged_wakes_ ABSL_GUARDED_BY(mu_);
};

}  // namespace wake::testing
