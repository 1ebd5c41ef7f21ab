// Exponential backoff with full jitter for reconnect and retry loops.
#pragma once

#include <cstdint>
#include <random>

#include "absl/time/time.h"

namespace wake::common {

class Backoff {
 public:
  // Delays grow from `initial` by `multiplier` up to `max`; each returned
  // delay is drawn uniformly from [delay/2, delay] so replicas spread out.
  Backoff(absl::Duration initial, absl::Duration max, double multiplier = 2.0,
          uint64_t seed = std::random_device{}())
      : initial_(initial), max_(max), multiplier_(multiplier), current_(initial), rng_(seed) {}

  absl::Duration Next() {
    const absl::Duration base = current_;
    current_ = std::min(max_, current_ * multiplier_);
    std::uniform_real_distribution<double> jitter(0.5, 1.0);
    return base * jitter(rng_);
  }

  void Reset() { current_ = initial_; }

 private:
  const absl::Duration initial_;
  const absl::Duration max_;
  const double multiplier_;
  absl::Duration current_;
  std::mt19937_64 rng_;
};

}  // namespace wake::common
