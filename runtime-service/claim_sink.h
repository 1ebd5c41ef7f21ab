// The runner end of a StreamWakeClaims call, as the scheduler sees it.
#pragma once

#include <memory>

#include "absl/status/status.h"
#include "wake/v1/runtime.pb.h"

namespace wake::runtime {

class ClaimSink {
 public:
  virtual ~ClaimSink() = default;

  // Queues `claim` for the runner without blocking. False when the stream is
  // already closed (the session's Disconnect is then on its way).
  virtual bool Send(const v1::WakeClaim& claim) = 0;

  // Ends the stream with `status` after the claims already queued (for a
  // session superseded by a newer one of its runner).
  virtual void Close(const absl::Status& status) = 0;
};

using ClaimSinkPtr = std::shared_ptr<ClaimSink>;

}  // namespace wake::runtime
