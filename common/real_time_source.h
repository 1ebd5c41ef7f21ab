// The production TimeSource: system clocks and one timer thread that runs
// every timer callback of this source in deadline order.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <thread>
#include <utility>

#include "absl/synchronization/mutex.h"
#include "common/time_source.h"

namespace wake::common {

class RealTimeSource final : public TimeSource {
 public:
  RealTimeSource();
  ~RealTimeSource() override;

  absl::Time SystemNow() override;
  MonotonicTime MonotonicNow() override;
  TimerPtr CreateTimer(std::function<void()> callback) override;
  void SleepFor(absl::Duration duration) override;

 private:
  class RealTimer;
  friend class RealTimer;

  using Key = std::pair<MonotonicTime, uint64_t>;  // (deadline, timer id)

  void Run();
  void Arm(uint64_t id, MonotonicTime deadline, std::function<void()>* callback);
  void Disarm(uint64_t id);

  absl::Mutex mu_;
  std::map<Key, std::function<void()>*> queue_ ABSL_GUARDED_BY(mu_);
  std::map<uint64_t, Key> armed_ ABSL_GUARDED_BY(mu_);
  uint64_t next_id_ ABSL_GUARDED_BY(mu_) = 1;
  uint64_t running_id_ ABSL_GUARDED_BY(mu_) = 0;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread::id thread_id_ ABSL_GUARDED_BY(mu_);
  std::thread thread_;
};

}  // namespace wake::common
