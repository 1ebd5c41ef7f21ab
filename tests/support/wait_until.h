// WaitUntil: polls a condition until it holds or a deadline passes, for
// tests that wait on something with no notification to block on (a row in
// PostgreSQL, a health status, a counter of a component under test, a
// simulated clock's armed timers). Replaces hand-written polling loops:
//   ASSERT_TRUE(WaitUntil([&] { return Count() == 2; }, absl::Now() + kWait))
//       << "still " << Count();
// Where a component offers a notification or a condition to await, use that
// instead: this helper is for conditions nobody signals.
#pragma once

#include "absl/functional/function_ref.h"
#include "absl/time/time.h"

namespace wake::testing {

// Checks `condition` at once, then again after pauses that grow from 1 ms to
// `max_interval` (so a quick condition is seen quickly and a slow one is not
// hammered), until it holds (true) or `deadline` has passed (false, after
// one last check). `condition` runs on the calling thread.
bool WaitUntil(absl::FunctionRef<bool()> condition, absl::Time deadline,
               absl::Duration max_interval = absl::Milliseconds(50));

}  // namespace wake::testing
