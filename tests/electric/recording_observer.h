// A SyncObserver for tests: records every call in order, keeps a simple
// collection (rows by id per table; cleared by OnReset), flags overlapping
// calls, and lets a test wait for a condition with a deadline.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/sync/sync_source.h"

namespace wake::testing {

class RecordingObserver final : public sync::SyncObserver {
 public:
  enum class Kind { kReset, kBatch, kUpToDate, kDisconnected };
  struct Event {
    Kind kind;
    sync::SyncBatch batch;  // kBatch
    absl::Status status;    // kDisconnected
  };
  struct State {
    std::vector<Event> events;
    std::map<int64_t, sync::Registration> registrations;
    std::map<int64_t, sync::WakeRow> wakes;

    int Count(Kind kind) const {
      int n = 0;
      for (const Event& e : events) n += e.kind == kind ? 1 : 0;
      return n;
    }
  };

  void OnReset() override {
    Enter();
    absl::MutexLock lock(&mu_);
    state_.events.push_back({Kind::kReset, {}, {}});
    state_.registrations.clear();
    state_.wakes.clear();
    Leave();
  }
  void OnBatch(sync::SyncBatch batch) override {
    Enter();
    absl::MutexLock lock(&mu_);
    for (const sync::RowChange& change : batch.changes) {
      if (change.registration.has_value()) {
        if (change.op == sync::ChangeOp::kDelete) {
          state_.registrations.erase(change.registration->id);
        } else {
          state_.registrations[change.registration->id] = *change.registration;
        }
      }
      if (change.wake.has_value()) {
        if (change.op == sync::ChangeOp::kDelete) {
          state_.wakes.erase(change.wake->id);
        } else {
          state_.wakes[change.wake->id] = *change.wake;
        }
      }
    }
    state_.events.push_back({Kind::kBatch, std::move(batch), {}});
    Leave();
  }
  void OnUpToDate() override {
    Enter();
    absl::MutexLock lock(&mu_);
    state_.events.push_back({Kind::kUpToDate, {}, {}});
    Leave();
  }
  void OnDisconnected(const absl::Status& why) override {
    Enter();
    absl::MutexLock lock(&mu_);
    state_.events.push_back({Kind::kDisconnected, {}, why});
    Leave();
  }

  State Snapshot() {
    absl::MutexLock lock(&mu_);
    return state_;
  }

  // Waits until `condition` holds for the recorded state.
  bool WaitFor(const std::function<bool(const State&)>& condition,
               absl::Duration timeout = absl::Seconds(20)) {
    absl::MutexLock lock(&mu_);
    auto met = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return condition(state_); };
    return mu_.AwaitWithTimeout(absl::Condition(&met), timeout);
  }
  bool WaitForCount(Kind kind, int count, absl::Duration timeout = absl::Seconds(20)) {
    return WaitFor([&](const State& s) { return s.Count(kind) >= count; }, timeout);
  }

  // True if two observer calls ever overlapped (they must be serialized).
  bool overlapped() const { return overlapped_.load(); }

 private:
  void Enter() {
    if (in_call_.fetch_add(1) != 0) overlapped_.store(true);
  }
  void Leave() { in_call_.fetch_sub(1); }

  std::atomic<int> in_call_{0};
  std::atomic<bool> overlapped_{false};
  absl::Mutex mu_;
  State state_ ABSL_GUARDED_BY(mu_);
};

}  // namespace wake::testing
