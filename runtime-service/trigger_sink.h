// Where wake-available events go: "stream S of tenant T may have pending
// wakes, claim them". Implemented by the claim scheduler, fed by the registry
// follower.
#pragma once

#include <cstdint>
#include <string>

namespace wake::runtime {

class TriggerSink {
 public:
  virtual ~TriggerSink() = default;

  // Never blocks on the registry and never drops a trigger: if the stream is
  // busy the trigger is queued (coalesced with others queued for it).
  // `wake_id` names the wake the registry announced (0: no particular one);
  // the scheduler keeps looking for it until one of its claims carries it.
  virtual void Trigger(const std::string& tenant_id, const std::string& stream,
                       int64_t wake_id) = 0;
};

}  // namespace wake::runtime
