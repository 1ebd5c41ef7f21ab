// An Executor for tests: posted tasks wait until the test runs them, so a
// test decides exactly when an "in flight" registry call completes.
#pragma once

#include <deque>
#include <functional>
#include <utility>

#include "absl/synchronization/mutex.h"
#include "runtime-service/executor.h"

namespace wake::runtime {

class ManualExecutor final : public Executor {
 public:
  void Post(std::function<void()> task) override {
    absl::MutexLock lock(&mu_);
    tasks_.push_back(std::move(task));
  }

  // Runs the oldest task; false if there was none.
  bool RunOne() {
    std::function<void()> task;
    {
      absl::MutexLock lock(&mu_);
      if (tasks_.empty()) return false;
      task = std::move(tasks_.front());
      tasks_.pop_front();
    }
    task();
    return true;
  }

  // Runs tasks, including those posted meanwhile, until none is left.
  int RunAll() {
    int ran = 0;
    while (RunOne()) ++ran;
    return ran;
  }

  size_t pending() {
    absl::MutexLock lock(&mu_);
    return tasks_.size();
  }

 private:
  absl::Mutex mu_;
  std::deque<std::function<void()>> tasks_;
};

}  // namespace wake::runtime
