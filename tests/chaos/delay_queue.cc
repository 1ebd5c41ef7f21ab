#include "tests/chaos/delay_queue.h"

#include "absl/time/clock.h"

namespace wake::chaos {

DelayQueue::DelayQueue(int workers) {
  for (int i = 0; i < workers; ++i) workers_.emplace_back([this] { Work(); });
}

DelayQueue::~DelayQueue() {
  Stop();
  for (std::thread& worker : workers_) worker.join();
}

void DelayQueue::Post(absl::Time due, std::function<void()> fn) {
  absl::MutexLock lock(&mu_);
  if (stopping_) return;
  items_.push(Item{due, next_seq_++, std::move(fn)});
  cv_.SignalAll();  // The new item may be due before what the workers wait for.
}

void DelayQueue::Stop() {
  absl::MutexLock lock(&mu_);
  stopping_ = true;
  while (!items_.empty()) items_.pop();
  cv_.SignalAll();
}

void DelayQueue::Work() {
  mu_.Lock();
  for (;;) {
    if (stopping_) break;
    if (!items_.empty() && items_.top().due <= absl::Now()) {
      std::function<void()> fn = items_.top().fn;
      items_.pop();
      mu_.Unlock();
      fn();
      mu_.Lock();
      continue;
    }
    const absl::Time until = items_.empty() ? absl::InfiniteFuture() : items_.top().due;
    cv_.WaitWithDeadline(&mu_, until);
  }
  mu_.Unlock();
}

}  // namespace wake::chaos
