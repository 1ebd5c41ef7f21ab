#include "common/real_time_source.h"

#include "absl/time/clock.h"

namespace wake::common {

class RealTimeSource::RealTimer final : public Timer {
 public:
  RealTimer(RealTimeSource& source, uint64_t id, std::function<void()> callback)
      : source_(source), id_(id), callback_(std::move(callback)) {}
  ~RealTimer() override { Disable(); }

  void Enable(absl::Duration delay) override {
    source_.Arm(id_, source_.MonotonicNow() + ToChrono(std::max(delay, absl::ZeroDuration())),
                &callback_);
  }
  void Disable() override { source_.Disarm(id_); }
  bool Enabled() override {
    absl::MutexLock lock(&source_.mu_);
    return source_.armed_.count(id_) > 0;
  }

 private:
  RealTimeSource& source_;
  const uint64_t id_;
  std::function<void()> callback_;
};

RealTimeSource::RealTimeSource() {
  thread_ = std::thread([this] { Run(); });
}

RealTimeSource::~RealTimeSource() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  thread_.join();
}

absl::Time RealTimeSource::SystemNow() { return absl::Now(); }

MonotonicTime RealTimeSource::MonotonicNow() { return std::chrono::steady_clock::now(); }

void RealTimeSource::SleepFor(absl::Duration duration) { absl::SleepFor(duration); }

TimerPtr RealTimeSource::CreateTimer(std::function<void()> callback) {
  uint64_t id;
  {
    absl::MutexLock lock(&mu_);
    id = next_id_++;
  }
  return std::make_unique<RealTimer>(*this, id, std::move(callback));
}

void RealTimeSource::Arm(uint64_t id, MonotonicTime deadline, std::function<void()>* callback) {
  absl::MutexLock lock(&mu_);
  if (auto it = armed_.find(id); it != armed_.end()) {
    queue_.erase(it->second);
    armed_.erase(it);
  }
  Key key{deadline, id};
  queue_.emplace(key, callback);
  armed_.emplace(id, key);
}

void RealTimeSource::Disarm(uint64_t id) {
  absl::MutexLock lock(&mu_);
  if (auto it = armed_.find(id); it != armed_.end()) {
    queue_.erase(it->second);
    armed_.erase(it);
  }
  // Wait out a running callback of this timer, unless we are that callback.
  if (std::this_thread::get_id() != thread_id_) {
    auto not_running = [this, id]()
                           ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return running_id_ != id; };
    mu_.Await(absl::Condition(&not_running));
  }
}

void RealTimeSource::Run() {
  absl::MutexLock lock(&mu_);
  thread_id_ = std::this_thread::get_id();
  while (!stopping_) {
    if (queue_.empty()) {
      mu_.AwaitWithTimeout(absl::Condition(
                               +[](RealTimeSource* self) ABSL_EXCLUSIVE_LOCKS_REQUIRED(self->mu_) {
                                 return self->stopping_ || !self->queue_.empty();
                               },
                               this),
                           absl::Seconds(1));
      continue;
    }
    auto first = queue_.begin();
    const MonotonicTime now = std::chrono::steady_clock::now();
    if (first->first.first > now) {
      const Key earliest = first->first;
      // Wake early if something earlier is armed or we are stopping.
      auto changed = [this, earliest]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return stopping_ || queue_.empty() || queue_.begin()->first < earliest;
      };
      mu_.AwaitWithTimeout(absl::Condition(&changed), ToAbsl(earliest.first - now));
      continue;
    }
    const uint64_t id = first->first.second;
    std::function<void()>* callback = first->second;
    queue_.erase(first);
    armed_.erase(id);
    running_id_ = id;
    mu_.Unlock();
    (*callback)();
    mu_.Lock();
    running_id_ = 0;
  }
}

}  // namespace wake::common
