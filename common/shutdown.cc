#include "common/shutdown.h"

#include <pthread.h>
#include <signal.h>

namespace wake::common {
namespace {

sigset_t ShutdownSignals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGUSR2);  // Used only to wake the waiter on destruction.
  return set;
}

}  // namespace

ShutdownSignal::ShutdownSignal() {
  sigset_t set = ShutdownSignals();
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  // Writing to a closed peer must be an error return, not a crash.
  ::signal(SIGPIPE, SIG_IGN);
  waiter_ = std::thread([this, set] {
    int received = 0;
    if (sigwait(&set, &received) == 0 && received != SIGUSR2) {
      signal_ = received;
      requested_.Notify();
    }
  });
}

ShutdownSignal::~ShutdownSignal() {
  if (!requested_.HasBeenNotified()) pthread_kill(waiter_.native_handle(), SIGUSR2);
  waiter_.join();
}

}  // namespace wake::common
