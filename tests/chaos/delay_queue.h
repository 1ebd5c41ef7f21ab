// Runs functions at (or after) given times on a fixed set of worker threads.
// The chaos runner acks claims after a random delay with it; the driver's
// producer schedules registrations, bursts of run finishes and retries.
#pragma once

#include <cstdint>
#include <functional>
#include <queue>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace wake::chaos {

class DelayQueue {
 public:
  explicit DelayQueue(int workers);
  // Stop(), then joins.
  ~DelayQueue();

  // Runs `fn` on a worker once `due` has passed (in order of due time).
  void Post(absl::Time due, std::function<void()> fn);
  // Workers finish what they run; items not started are dropped.
  void Stop();

 private:
  struct Item {
    absl::Time due;
    int64_t seq;
    std::function<void()> fn;
  };
  struct Later {
    bool operator()(const Item& a, const Item& b) const {
      return a.due != b.due ? a.due > b.due : a.seq > b.seq;
    }
  };
  void Work();

  absl::Mutex mu_;
  absl::CondVar cv_;
  std::priority_queue<Item, std::vector<Item>, Later> items_ ABSL_GUARDED_BY(mu_);
  int64_t next_seq_ ABSL_GUARDED_BY(mu_) = 0;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> workers_;
};

}  // namespace wake::chaos
