// Gauges of what the registry keeps only in PostgreSQL (open debounce
// windows, live claims, stored wakes), read with one query at most once per
// `max_age` however many gauges and scrapes ask, on a connection of its own.
#pragma once

#include <memory>
#include <optional>
#include <pqxx/pqxx>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/time_source.h"

namespace wake::registry {

class StoreGauges {
 public:
  struct Values {
    // NaN until the first successful read.
    double debounce_windows;
    double live_claims;
    double wakes;
  };

  StoreGauges(std::string database_url, common::TimeSource& time,
              absl::Duration max_age = absl::Seconds(1));
  ~StoreGauges();

  // The latest values; a failed read keeps the previous ones (and is logged).
  Values Read();

 private:
  const std::string url_;
  common::TimeSource& time_;
  const absl::Duration max_age_;
  absl::Mutex mu_;
  std::unique_ptr<pqxx::connection> connection_ ABSL_GUARDED_BY(mu_);
  Values values_ ABSL_GUARDED_BY(mu_);
  std::optional<common::MonotonicTime> read_at_ ABSL_GUARDED_BY(mu_);
};

}  // namespace wake::registry
