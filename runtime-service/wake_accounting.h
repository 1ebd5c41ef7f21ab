// What the runtime knows of the registry's pending wakes, asked by the
// rescanner: which pending wakes it was never told of, and which parked
// streams have nothing pending any more. Implemented by the claim scheduler.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/time_source.h"

namespace wake::runtime {

// Pending wakes of one stream (tenant_id never empty).
struct PendingStream {
  std::string tenant_id;
  std::string stream;
  std::vector<int64_t> wake_ids;

  bool operator==(const PendingStream& other) const {
    return tenant_id == other.tenant_id && stream == other.stream && wake_ids == other.wake_ids;
  }
};

class WakeAccounting {
 public:
  virtual ~WakeAccounting() = default;

  // The wakes among `pending` this runtime has no account of: never announced
  // to it (within its bounded memory of announcements), not in a queued,
  // parked or claimed stream, not recently acked. Streams with none are left
  // out; the order of `pending` is kept.
  virtual std::vector<PendingStream> Unaccounted(const std::vector<PendingStream>& pending) = 0;

  // `pending` is every pending wake, read after `since`: a stream parked for
  // want of a runner, last queued before `since` and absent from `pending`,
  // has nothing left to claim (a wake that becomes pending again is announced
  // again), so it is forgotten. Returns how many were.
  virtual int ForgetParkedWithoutPending(const std::vector<PendingStream>& pending,
                                         common::MonotonicTime since) = 0;
};

}  // namespace wake::runtime
