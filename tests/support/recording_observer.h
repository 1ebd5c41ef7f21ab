// A SyncObserver for tests of the sync sources: records every call in order,
// keeps the synced rows the way a registry replica does (a reset stages a
// fresh copy that replaces the live one at OnUpToDate, so readers never see
// a half-loaded collection), flags overlapping calls (a source must
// serialize them), and lets a test wait for a condition with a deadline.
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
    // Every call, in order.
    std::vector<Event> events;
    // Live rows (as of the last OnUpToDate plus later batches).
    std::map<int64_t, sync::Registration> registrations;
    std::map<int64_t, sync::WakeRow> wakes;

    int Count(Kind kind) const {
      int n = 0;
      for (const Event& e : events) n += e.kind == kind ? 1 : 0;
      return n;
    }
    // The batches, and the reasons of the disconnects, in order.
    std::vector<sync::SyncBatch> Batches() const {
      std::vector<sync::SyncBatch> out;
      for (const Event& e : events) {
        if (e.kind == Kind::kBatch) out.push_back(e.batch);
      }
      return out;
    }
    std::vector<absl::Status> Disconnects() const {
      std::vector<absl::Status> out;
      for (const Event& e : events) {
        if (e.kind == Kind::kDisconnected) out.push_back(e.status);
      }
      return out;
    }
  };

  void OnReset() override {
    Enter();
    absl::MutexLock lock(&mu_);
    state_.events.push_back({Kind::kReset, {}, {}});
    staging_ = true;
    staged_registrations_.clear();
    staged_wakes_.clear();
    Leave();
  }

  void OnBatch(sync::SyncBatch batch) override {
    Enter();
    absl::MutexLock lock(&mu_);
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
    state_.events.push_back({Kind::kBatch, std::move(batch), {}});
    Leave();
  }

  void OnUpToDate() override {
    Enter();
    absl::MutexLock lock(&mu_);
    state_.events.push_back({Kind::kUpToDate, {}, {}});
    if (staging_) {
      state_.registrations = std::move(staged_registrations_);
      state_.wakes = std::move(staged_wakes_);
      staged_registrations_.clear();
      staged_wakes_.clear();
      staging_ = false;
    }
    Leave();
  }

  void OnDisconnected(const absl::Status& why) override {
    Enter();
    absl::MutexLock lock(&mu_);
    state_.events.push_back({Kind::kDisconnected, {}, why});
    Leave();
  }

  // Waits until `condition` holds for the recorded state; false after `timeout`.
  bool WaitFor(const std::function<bool(const State&)>& condition,
               absl::Duration timeout = absl::Seconds(20)) {
    absl::MutexLock lock(&mu_);
    auto met = [this, &condition]()
                   ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return condition(state_); };
    return mu_.AwaitWithTimeout(absl::Condition(&met), timeout);
  }
  bool WaitForCount(Kind kind, int count, absl::Duration timeout = absl::Seconds(20)) {
    return WaitFor([&](const State& s) { return s.Count(kind) >= count; }, timeout);
  }

  State Snapshot() {
    absl::MutexLock lock(&mu_);
    return state_;
  }

  bool HasRegistration(int64_t id) {
    absl::MutexLock lock(&mu_);
    return state_.registrations.count(id) > 0;
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
  bool staging_ ABSL_GUARDED_BY(mu_) = false;
  std::map<int64_t, sync::Registration> staged_registrations_ ABSL_GUARDED_BY(mu_);
  std::map<int64_t, sync::WakeRow> staged_wakes_ ABSL_GUARDED_BY(mu_);
};

}  // namespace wake::testing
