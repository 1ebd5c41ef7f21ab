// Time as a dependency: wall clock, monotonic clock and one-shot timers.
//
// Domain code never reads a clock or starts a timer thread itself; it takes a
// TimeSource& so tests can substitute SimulatedTimeSource and drive debounce,
// timeout, lease and backoff logic deterministically.
#pragma once

#include <chrono>
#include <functional>
#include <memory>

#include "absl/time/time.h"

namespace wake::common {

using MonotonicTime = std::chrono::steady_clock::time_point;

// A one-shot timer. Its callback runs on the time source's timer thread (or,
// for the simulated source, inside Advance()); it must be short and must not
// destroy its own timer.
class Timer {
 public:
  virtual ~Timer() = default;

  // Arms the timer to fire once after `delay` (<= 0 fires as soon as
  // possible), replacing any earlier arming.
  virtual void Enable(absl::Duration delay) = 0;

  // Disarms the timer. After Disable() (or destruction) returns, the callback
  // is not running and will not run, unless called from the callback itself.
  virtual void Disable() = 0;

  virtual bool Enabled() = 0;
};

using TimerPtr = std::unique_ptr<Timer>;

class TimeSource {
 public:
  virtual ~TimeSource() = default;

  // Wall-clock time (for timestamps stored or sent).
  virtual absl::Time SystemNow() = 0;

  // Monotonic time (for intervals, deadlines).
  virtual MonotonicTime MonotonicNow() = 0;

  virtual TimerPtr CreateTimer(std::function<void()> callback) = 0;

  // Blocks the calling thread for `duration` of this source's time.
  virtual void SleepFor(absl::Duration duration) = 0;
};

inline absl::Duration ToAbsl(std::chrono::steady_clock::duration d) {
  return absl::FromChrono(std::chrono::duration_cast<std::chrono::nanoseconds>(d));
}

inline std::chrono::steady_clock::duration ToChrono(absl::Duration d) {
  return std::chrono::duration_cast<std::chrono::steady_clock::duration>(
      absl::ToChronoNanoseconds(d));
}

}  // namespace wake::common
