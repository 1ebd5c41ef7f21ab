// The rescan backstop: now and then the runtime reads every pending wake from
// the registry and triggers the streams whose wakes it was never told of. In
// a healthy system the change stream announces every wake and a rescan finds
// nothing; a found stream means an announcement was lost, and is logged.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

namespace wake::runtime {

struct RescanStatus {
  // Rescans that completed (compared the registry's pending wakes with what
  // the runtime knows).
  int64_t rescans = 0;
  // Streams with pending wakes the runtime had no account of, summed over
  // rescans (each was triggered).
  int64_t found = 0;
  std::string last_error;
};

class Rescanner {
 public:
  virtual ~Rescanner() = default;

  // Starts rescanning periodically (no-op if configured off).
  virtual void Start() = 0;
  // Stops; a rescan under way is abandoned. Idempotent.
  virtual void Stop() = 0;
  virtual RescanStatus Status() = 0;
};

using RescannerPtr = std::unique_ptr<Rescanner>;

}  // namespace wake::runtime
