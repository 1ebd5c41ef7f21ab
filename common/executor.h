// Where deferred work runs. Domain code posts work instead of starting
// threads; production uses a thread pool, tests a manual queue they drain.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"

namespace wake::common {

class Executor {
 public:
  virtual ~Executor() = default;
  // Runs `work` later, on some other stack than the caller's.
  virtual void Post(std::function<void()> work) = 0;
  // Post unless the queue already holds its limit of waiting work; false
  // (and `work` dropped unrun) then. For work that can be refused, such as
  // a call the client may retry: internal work uses Post.
  virtual bool TryPost(std::function<void()> work) = 0;
};

// A fixed pool of threads; the destructor finishes queued work first.
// TryPost refuses work once `max_queued` items wait.
class ThreadPoolExecutor final : public Executor {
 public:
  explicit ThreadPoolExecutor(int threads, size_t max_queued = SIZE_MAX);
  ~ThreadPoolExecutor() override;
  void Post(std::function<void()> work) override;
  bool TryPost(std::function<void()> work) override;

 private:
  void Loop();

  const size_t max_queued_;
  absl::Mutex mu_;
  std::deque<std::function<void()>> queue_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> threads_;
};

// Queues work until the test calls RunAll() (tests only).
class ManualExecutor final : public Executor {
 public:
  explicit ManualExecutor(size_t max_queued = SIZE_MAX) : max_queued_(max_queued) {}
  void Post(std::function<void()> work) override;
  bool TryPost(std::function<void()> work) override;
  // Runs the oldest queued work; false if there was none.
  bool RunOne();
  // Runs queued work, including work posted while running; returns how much ran.
  int RunAll();
  size_t queued();

 private:
  const size_t max_queued_;
  absl::Mutex mu_;
  std::deque<std::function<void()>> queue_ ABSL_GUARDED_BY(mu_);
};

}  // namespace wake::common
