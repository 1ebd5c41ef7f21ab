// A TimeSource for tests: time stands still until the test advances it, and
// timers fire inside Advance() on the test's thread, in deadline order.
#pragma once

#include <cstdint>
#include <map>
#include <utility>

#include "absl/synchronization/mutex.h"
#include "common/time_source.h"

namespace wake::common {

class SimulatedTimeSource final : public TimeSource {
 public:
  // Starts at a fixed, arbitrary instant so results are reproducible.
  SimulatedTimeSource();

  absl::Time SystemNow() override;
  MonotonicTime MonotonicNow() override;
  TimerPtr CreateTimer(std::function<void()> callback) override;
  // Blocks until another thread has advanced time by `duration`.
  void SleepFor(absl::Duration duration) override;

  // Moves time forward, firing every timer due on the way (each sees the
  // clock at its own deadline). Timers armed by callbacks fire too if due.
  void Advance(absl::Duration duration);

  // Number of armed timers (for assertions).
  size_t ArmedTimers();

  // Threads currently blocked in SleepFor (lets a test wait until a
  // background loop is parked before advancing).
  int Sleepers();

 private:
  class SimulatedTimer;
  friend class SimulatedTimer;
  using Key = std::pair<absl::Duration, uint64_t>;  // (deadline since start, id)

  absl::Mutex mu_;
  absl::Duration elapsed_ ABSL_GUARDED_BY(mu_);
  std::map<Key, std::function<void()>*> queue_ ABSL_GUARDED_BY(mu_);
  std::map<uint64_t, Key> armed_ ABSL_GUARDED_BY(mu_);
  uint64_t next_id_ ABSL_GUARDED_BY(mu_) = 1;
  int sleepers_ ABSL_GUARDED_BY(mu_) = 0;
  const absl::Time system_start_;
  const MonotonicTime monotonic_start_;
};

}  // namespace wake::common
