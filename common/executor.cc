#include "common/executor.h"

namespace wake::common {

ThreadPoolExecutor::ThreadPoolExecutor(int threads, size_t max_queued) : max_queued_(max_queued) {
  for (int i = 0; i < threads; ++i) threads_.emplace_back([this] { Loop(); });
}

ThreadPoolExecutor::~ThreadPoolExecutor() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  for (std::thread& thread : threads_) thread.join();
}

void ThreadPoolExecutor::Post(std::function<void()> work) {
  absl::MutexLock lock(&mu_);
  queue_.push_back(std::move(work));
}

bool ThreadPoolExecutor::TryPost(std::function<void()> work) {
  absl::MutexLock lock(&mu_);
  if (queue_.size() >= max_queued_) return false;
  queue_.push_back(std::move(work));
  return true;
}

void ThreadPoolExecutor::Loop() {
  for (;;) {
    std::function<void()> work;
    {
      absl::MutexLock lock(&mu_);
      auto ready = [this]()
                       ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stopping_ || !queue_.empty(); };
      mu_.Await(absl::Condition(&ready));
      if (queue_.empty()) return;  // Stopping and drained.
      work = std::move(queue_.front());
      queue_.pop_front();
    }
    work();
  }
}

void ManualExecutor::Post(std::function<void()> work) {
  absl::MutexLock lock(&mu_);
  queue_.push_back(std::move(work));
}

bool ManualExecutor::TryPost(std::function<void()> work) {
  absl::MutexLock lock(&mu_);
  if (queue_.size() >= max_queued_) return false;
  queue_.push_back(std::move(work));
  return true;
}

bool ManualExecutor::RunOne() {
  std::function<void()> work;
  {
    absl::MutexLock lock(&mu_);
    if (queue_.empty()) return false;
    work = std::move(queue_.front());
    queue_.pop_front();
  }
  work();
  return true;
}

int ManualExecutor::RunAll() {
  int ran = 0;
  while (RunOne()) ++ran;
  return ran;
}

size_t ManualExecutor::queued() {
  absl::MutexLock lock(&mu_);
  return queue_.size();
}

}  // namespace wake::common
