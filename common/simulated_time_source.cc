#include "common/simulated_time_source.h"

namespace wake::common {

class SimulatedTimeSource::SimulatedTimer final : public Timer {
 public:
  SimulatedTimer(SimulatedTimeSource& source, uint64_t id, std::function<void()> callback)
      : source_(source), id_(id), callback_(std::move(callback)) {}
  ~SimulatedTimer() override { Disable(); }

  void Enable(absl::Duration delay) override {
    absl::MutexLock lock(&source_.mu_);
    DisarmLocked();
    Key key{source_.elapsed_ + std::max(delay, absl::ZeroDuration()), id_};
    source_.queue_.emplace(key, &callback_);
    source_.armed_.emplace(id_, key);
  }
  void Disable() override {
    absl::MutexLock lock(&source_.mu_);
    DisarmLocked();
  }
  bool Enabled() override {
    absl::MutexLock lock(&source_.mu_);
    return source_.armed_.count(id_) > 0;
  }

 private:
  void DisarmLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(source_.mu_) {
    if (auto it = source_.armed_.find(id_); it != source_.armed_.end()) {
      source_.queue_.erase(it->second);
      source_.armed_.erase(it);
    }
  }

  SimulatedTimeSource& source_;
  const uint64_t id_;
  std::function<void()> callback_;
};

SimulatedTimeSource::SimulatedTimeSource()
    : elapsed_(absl::ZeroDuration()),
      system_start_(absl::FromUnixSeconds(1767225600)),  // 2026-01-01T00:00:00Z
      monotonic_start_(std::chrono::steady_clock::time_point(std::chrono::hours(1000))) {}

absl::Time SimulatedTimeSource::SystemNow() {
  absl::MutexLock lock(&mu_);
  return system_start_ + elapsed_;
}

MonotonicTime SimulatedTimeSource::MonotonicNow() {
  absl::MutexLock lock(&mu_);
  return monotonic_start_ + ToChrono(elapsed_);
}

TimerPtr SimulatedTimeSource::CreateTimer(std::function<void()> callback) {
  uint64_t id;
  {
    absl::MutexLock lock(&mu_);
    id = next_id_++;
  }
  return std::make_unique<SimulatedTimer>(*this, id, std::move(callback));
}

void SimulatedTimeSource::SleepFor(absl::Duration duration) {
  absl::MutexLock lock(&mu_);
  const absl::Duration until = elapsed_ + duration;
  ++sleepers_;
  auto reached = [this, until]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return elapsed_ >= until; };
  mu_.Await(absl::Condition(&reached));
  --sleepers_;
}

void SimulatedTimeSource::Advance(absl::Duration duration) {
  absl::Duration target;
  {
    absl::MutexLock lock(&mu_);
    target = elapsed_ + duration;
  }
  for (;;) {
    std::function<void()>* callback = nullptr;
    {
      absl::MutexLock lock(&mu_);
      if (!queue_.empty() && queue_.begin()->first.first <= target) {
        auto first = queue_.begin();
        elapsed_ = std::max(elapsed_, first->first.first);
        callback = first->second;
        armed_.erase(first->first.second);
        queue_.erase(first);
      } else {
        elapsed_ = target;
        return;
      }
    }
    (*callback)();
  }
}

size_t SimulatedTimeSource::ArmedTimers() {
  absl::MutexLock lock(&mu_);
  return armed_.size();
}

int SimulatedTimeSource::Sleepers() {
  absl::MutexLock lock(&mu_);
  return sleepers_;
}

}  // namespace wake::common
