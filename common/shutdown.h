// SIGTERM/SIGINT handling for the service binaries: the signals are blocked in
// every thread and collected by one waiter thread, so shutdown runs as
// ordinary code on the main thread rather than inside a signal handler.
#pragma once

#include <thread>

#include "absl/synchronization/notification.h"
#include "absl/time/time.h"

namespace wake::common {

class ShutdownSignal {
 public:
  // Must be called in main() before any other thread starts, so the blocked
  // signal mask is inherited by all of them.
  ShutdownSignal();
  ~ShutdownSignal();

  bool Requested() const { return requested_.HasBeenNotified(); }
  void Wait() const { requested_.WaitForNotification(); }
  // True if shutdown was requested within `timeout`.
  bool WaitFor(absl::Duration timeout) const {
    return requested_.WaitForNotificationWithTimeout(timeout);
  }
  // The signal received (0 until one is).
  int signal() const { return signal_; }

 private:
  absl::Notification requested_;
  int signal_ = 0;
  std::thread waiter_;
};

}  // namespace wake::common
