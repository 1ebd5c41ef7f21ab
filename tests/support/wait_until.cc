#include "tests/support/wait_until.h"

#include <algorithm>

#include "absl/time/clock.h"

namespace wake::testing {

bool WaitUntil(absl::FunctionRef<bool()> condition, absl::Time deadline,
               absl::Duration max_interval) {
  absl::Duration interval = absl::Milliseconds(1);
  for (;;) {
    if (condition()) return true;
    const absl::Time now = absl::Now();
    if (now >= deadline) return false;
    // Polling a condition no one signals; never sleeps past the deadline.
    absl::SleepFor(std::min(interval, deadline - now));
    interval = std::min(interval * 2, max_interval);
  }
}

}  // namespace wake::testing
