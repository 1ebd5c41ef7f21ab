// Tells ThreadSanitizer what abseil's synchronization primitives guarantee.
//
// Debian's abseil is not built with -fsanitize=thread, so TSan does not see
// absl::Mutex, CondVar or Notification order anything, and reports every
// access they protect as a race. Linked into the test binaries under
// --config=tsan only, this library interposes their entry points (it comes
// before libabsl_synchronization.so in symbol lookup, for our code and the
// system's gRPC alike), calls the real ones through dlsym(RTLD_NEXT), and
// marks a release where a primitive publishes and an acquire where it
// observes: the happens-before edges abseil's own TSan annotations would
// give. Only what this tree and gRPC call is covered.
#include <dlfcn.h>
#include <sanitizer/tsan_interface.h>

#include <cstdio>
#include <cstdlib>

#include "absl/synchronization/barrier.h"
#include "absl/synchronization/blocking_counter.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"

namespace {

// The real function behind `symbol` (looked up once, on the first call).
template <typename Fn>
Fn Real(const char* symbol) {
  void* real = dlsym(RTLD_NEXT, symbol);
  if (real == nullptr) {
    std::fprintf(stderr, "absl_sync_annotations: %s not found\n", symbol);
    std::abort();
  }
  return reinterpret_cast<Fn>(real);
}

void Acquire(const void* object) { __tsan_acquire(const_cast<void*>(object)); }
void Release(const void* object) { __tsan_release(const_cast<void*>(object)); }

// A caller's Condition, evaluated inside the mutex's edges: abseil evaluates
// it on whichever thread holds the lock at the time (the waiter, or another
// thread in Unlock), inside its own code where no edge is marked.
struct Guarded {
  const absl::Condition* condition;
  absl::Mutex* mu;
};

bool EvalGuarded(void* arg) {
  const Guarded* guarded = static_cast<const Guarded*>(arg);
  Acquire(guarded->mu);
  const bool holds = guarded->condition->Eval();
  Release(guarded->mu);
  return holds;
}

}  // namespace

// The symbol names are those of abseil 20220623 as Debian builds it (inline
// namespace debian3); a newer abseil changes them, and Real() says which.
#define WAKE_REAL(type, symbol)                \
  static const auto real = Real<type>(symbol); \
  static_assert(true, "")

namespace absl {

void Mutex::Lock() {
  WAKE_REAL(void (*)(Mutex*), "_ZN4absl7debian35Mutex4LockEv");
  real(this);
  Acquire(this);
}

void Mutex::Unlock() {
  WAKE_REAL(void (*)(Mutex*), "_ZN4absl7debian35Mutex6UnlockEv");
  Release(this);
  real(this);
}

bool Mutex::TryLock() {
  WAKE_REAL(bool (*)(Mutex*), "_ZN4absl7debian35Mutex7TryLockEv");
  const bool locked = real(this);
  if (locked) Acquire(this);
  return locked;
}

void Mutex::ReaderLock() {
  WAKE_REAL(void (*)(Mutex*), "_ZN4absl7debian35Mutex10ReaderLockEv");
  real(this);
  Acquire(this);
}

void Mutex::ReaderUnlock() {
  WAKE_REAL(void (*)(Mutex*), "_ZN4absl7debian35Mutex12ReaderUnlockEv");
  Release(this);
  real(this);
}

bool Mutex::ReaderTryLock() {
  WAKE_REAL(bool (*)(Mutex*), "_ZN4absl7debian35Mutex13ReaderTryLockEv");
  const bool locked = real(this);
  if (locked) Acquire(this);
  return locked;
}

void Mutex::LockWhen(const Condition& cond) {
  WAKE_REAL(void (*)(Mutex*, const Condition&),
            "_ZN4absl7debian35Mutex8LockWhenERKNS0_9ConditionE");
  Guarded guarded{&cond, this};
  const Condition wrapped(&EvalGuarded, &guarded);
  real(this, wrapped);
  Acquire(this);
}

void Mutex::ReaderLockWhen(const Condition& cond) {
  WAKE_REAL(void (*)(Mutex*, const Condition&),
            "_ZN4absl7debian35Mutex14ReaderLockWhenERKNS0_9ConditionE");
  Guarded guarded{&cond, this};
  const Condition wrapped(&EvalGuarded, &guarded);
  real(this, wrapped);
  Acquire(this);
}

// The *WithTimeout / *WithDeadline forms hold the lock on return either way.
bool Mutex::LockWhenWithTimeout(const Condition& cond, absl::Duration timeout) {
  WAKE_REAL(bool (*)(Mutex*, const Condition&, absl::Duration),
            "_ZN4absl7debian35Mutex19LockWhenWithTimeoutERKNS0_9ConditionENS0_8DurationE");
  Guarded guarded{&cond, this};
  const Condition wrapped(&EvalGuarded, &guarded);
  const bool met = real(this, wrapped, timeout);
  Acquire(this);
  return met;
}

bool Mutex::LockWhenWithDeadline(const Condition& cond, absl::Time deadline) {
  WAKE_REAL(bool (*)(Mutex*, const Condition&, absl::Time),
            "_ZN4absl7debian35Mutex20LockWhenWithDeadlineERKNS0_9ConditionENS0_4TimeE");
  Guarded guarded{&cond, this};
  const Condition wrapped(&EvalGuarded, &guarded);
  const bool met = real(this, wrapped, deadline);
  Acquire(this);
  return met;
}

// Await releases the lock while it waits and holds it again on return.
void Mutex::Await(const Condition& cond) {
  WAKE_REAL(void (*)(Mutex*, const Condition&), "_ZN4absl7debian35Mutex5AwaitERKNS0_9ConditionE");
  Guarded guarded{&cond, this};
  const Condition wrapped(&EvalGuarded, &guarded);
  Release(this);
  real(this, wrapped);
  Acquire(this);
}

bool Mutex::AwaitWithTimeout(const Condition& cond, absl::Duration timeout) {
  WAKE_REAL(bool (*)(Mutex*, const Condition&, absl::Duration),
            "_ZN4absl7debian35Mutex16AwaitWithTimeoutERKNS0_9ConditionENS0_8DurationE");
  Guarded guarded{&cond, this};
  const Condition wrapped(&EvalGuarded, &guarded);
  Release(this);
  const bool met = real(this, wrapped, timeout);
  Acquire(this);
  return met;
}

bool Mutex::AwaitWithDeadline(const Condition& cond, absl::Time deadline) {
  WAKE_REAL(bool (*)(Mutex*, const Condition&, absl::Time),
            "_ZN4absl7debian35Mutex17AwaitWithDeadlineERKNS0_9ConditionENS0_4TimeE");
  Guarded guarded{&cond, this};
  const Condition wrapped(&EvalGuarded, &guarded);
  Release(this);
  const bool met = real(this, wrapped, deadline);
  Acquire(this);
  return met;
}

void CondVar::Wait(Mutex* mu) {
  WAKE_REAL(void (*)(CondVar*, Mutex*), "_ZN4absl7debian37CondVar4WaitEPNS0_5MutexE");
  Release(mu);
  real(this, mu);
  Acquire(mu);
}

bool CondVar::WaitWithTimeout(Mutex* mu, absl::Duration timeout) {
  WAKE_REAL(bool (*)(CondVar*, Mutex*, absl::Duration),
            "_ZN4absl7debian37CondVar15WaitWithTimeoutEPNS0_5MutexENS0_8DurationE");
  Release(mu);
  const bool timed_out = real(this, mu, timeout);
  Acquire(mu);
  return timed_out;
}

bool CondVar::WaitWithDeadline(Mutex* mu, absl::Time deadline) {
  WAKE_REAL(bool (*)(CondVar*, Mutex*, absl::Time),
            "_ZN4absl7debian37CondVar16WaitWithDeadlineEPNS0_5MutexENS0_4TimeE");
  Release(mu);
  const bool timed_out = real(this, mu, deadline);
  Acquire(mu);
  return timed_out;
}

void Notification::Notify() {
  WAKE_REAL(void (*)(Notification*), "_ZN4absl7debian312Notification6NotifyEv");
  Release(this);
  real(this);
}

void Notification::WaitForNotification() const {
  WAKE_REAL(void (*)(const Notification*),
            "_ZNK4absl7debian312Notification19WaitForNotificationEv");
  real(this);
  Acquire(this);
}

bool Notification::WaitForNotificationWithTimeout(absl::Duration timeout) const {
  WAKE_REAL(bool (*)(const Notification*, absl::Duration),
            "_ZNK4absl7debian312Notification30WaitForNotificationWithTimeoutENS0_8DurationE");
  const bool notified = real(this, timeout);
  if (notified) Acquire(this);
  return notified;
}

bool Notification::WaitForNotificationWithDeadline(absl::Time deadline) const {
  WAKE_REAL(bool (*)(const Notification*, absl::Time),
            "_ZNK4absl7debian312Notification31WaitForNotificationWithDeadlineENS0_4TimeE");
  const bool notified = real(this, deadline);
  if (notified) Acquire(this);
  return notified;
}

// HasBeenNotified() is inline (an atomic flag Notify() sets out of TSan's
// sight): a `true` from it orders nothing here; wait for the notification.

bool BlockingCounter::DecrementCount() {
  WAKE_REAL(bool (*)(BlockingCounter*), "_ZN4absl7debian315BlockingCounter14DecrementCountEv");
  Release(this);
  const bool zero = real(this);
  if (zero) Acquire(this);
  return zero;
}

void BlockingCounter::Wait() {
  WAKE_REAL(void (*)(BlockingCounter*), "_ZN4absl7debian315BlockingCounter4WaitEv");
  real(this);
  Acquire(this);
}

bool Barrier::Block() {
  WAKE_REAL(bool (*)(Barrier*), "_ZN4absl7debian37Barrier5BlockEv");
  Release(this);
  const bool last = real(this);
  Acquire(this);
  return last;
}

}  // namespace absl

// Races TSan reports inside what it cannot see into. gRPC orders its calls
// (completion queues, its own locks, its threads) in uninstrumented code, so
// an access under a gRPC frame races, as far as TSan knows, with everything
// on the other side of that ordering; abseil's deadlock graph is guarded by
// an uninstrumented spinlock. Races between this tree's own threads, without
// gRPC on either stack, are still reported.
extern "C" const char* __tsan_default_suppressions() {
  return "race:libabsl_graphcycles_internal.so\n"
         "race:grpc::\n"
         "race:grpc_core::\n"
         "race:grpc_event_engine::\n"
         "race:libgrpc.so\n"
         "race:libgrpc++.so\n"
         "race:libgpr.so\n";
}
