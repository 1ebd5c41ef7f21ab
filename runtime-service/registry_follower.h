// Follows the registry's change stream (SubscribeChanges) and turns every
// wake-available event into a trigger for its stream.
//
// The first subscription starts at "-1": the registry replays every pending
// wake (a full pending scan), then goes live. After a disconnect the follower
// resumes from the last offset it saw, so events missed meanwhile arrive
// then; MUST_REFETCH starts over from "-1".
#pragma once

#include <cstdint>
#include <memory>
#include <string>

namespace wake::runtime {

struct FollowerStatus {
  // A subscription is open and has reached UP_TO_DATE: only then is the
  // runtime complete enough to serve.
  bool up_to_date = false;
  int64_t events_received = 0;
  int64_t reconnects = 0;
  // Where the next subscription starts.
  std::string offset = "-1";
  std::string last_error;
};

class RegistryFollower {
 public:
  virtual ~RegistryFollower() = default;

  // Follows until Stop(), reconnecting with backoff; blocks the calling
  // thread (main gives it one).
  virtual void Run() = 0;

  // Makes Run() return soon; safe from any thread, idempotent.
  virtual void Stop() = 0;

  virtual FollowerStatus Status() = 0;
};

using RegistryFollowerPtr = std::unique_ptr<RegistryFollower>;

}  // namespace wake::runtime
