// The per-stream claim scheduler and the runner sessions it feeds.
//
// For every (tenant, stream) the scheduler runs idle -> claiming ->
// dispatched -> idle. A trigger for a stream that is claiming or dispatched
// is queued; any number of queued triggers coalesce into exactly one
// follow-up claim, and streams waiting for a claim are served in the order
// their first queued trigger arrived.
//
// Claims follow runners: a stream is claimed only for a connected runner
// session that may take it (same tenant, a matching prefix or none, room
// below max_in_flight counting the claims being taken for it), chosen round
// robin when ClaimWakes is sent. A stream no runner can take is parked: no
// claim is made, and it keeps its place until a runner that serves it
// connects or gains room. A claim takes every pending wake of the stream
// (ClaimWakes) and goes to the runner it was taken for; if that runner left
// meanwhile, to another one, or it is held until one can take it.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "runtime-service/claim_sink.h"
#include "runtime-service/trigger_sink.h"

namespace wake::runtime {

// A connected runner session (validated by the gRPC adapter).
struct RunnerSpec {
  std::string runner_id;
  std::string session_id;
  std::string tenant_id;                     // Never empty ("default").
  std::vector<std::string> stream_prefixes;  // Empty = every stream.
  int max_in_flight = 16;
  // The authenticated principal that opened the session: only it may ack
  // the session's claims, heartbeat it, or connect another session of the
  // runner while it is connected.
  std::string principal;
};

struct AckRequest {
  std::string runner_id;
  std::string session_id;
  std::string tenant_id;  // Never empty.
  std::string stream;
  std::string claim_token;
  std::vector<int64_t> wake_ids;  // Empty = every wake of the claim.
  // Who acks (see RunnerSpec::principal).
  std::string principal;
};

struct AckResult {
  int64_t acked = 0;
  // A follow-up claim for the stream is already queued.
  bool more_pending = false;
};

struct HeartbeatResult {
  int extended = 0;
  // Earliest new lease expiry among the extended claims.
  std::optional<absl::Time> lease_expires_at;
};

struct SchedulerCounters {
  int64_t claims_succeeded = 0;
  int64_t claims_skipped = 0;
  int64_t claims_failed = 0;
  int64_t claims_dispatched = 0;
  int64_t claims_acked = 0;
  int64_t claims_released = 0;
};

struct SchedulerHealth {
  int connected_runners = 0;
  int active_claims = 0;
  int queued_streams = 0;
  // Queued streams parked for want of a runner that can take them.
  int waiting_for_runner = 0;
  SchedulerCounters counters;
  std::string last_error;
};

using SessionId = uint64_t;

class ClaimScheduler : public TriggerSink {
 public:
  template <typename T>
  using Callback = std::function<void(absl::StatusOr<T>)>;

  // Connects a runner session; claims are sent to `sink` until Disconnect.
  // A session of the same runner that is still connected is superseded: its
  // sink is closed (ABORTED) and its claims are released for redelivery.
  // A session id superseded earlier (a later session of its runner connected
  // since) is refused with FAILED_PRECONDITION and changes nothing; so is, with
  // PERMISSION_DENIED, a session of a runner whose connected session another
  // principal opened. UNAVAILABLE while shutting down.
  virtual absl::StatusOr<SessionId> Connect(const RunnerSpec& spec, ClaimSinkPtr sink) = 0;

  // The session's stream closed: its claims are released (ReleaseClaim) and
  // the streams queued for redelivery. Unknown ids are ignored.
  virtual void Disconnect(SessionId session) = 0;

  // Finishes a claim through AckWakes; `done` runs once, maybe on another
  // thread. FAILED_PRECONDITION when the claim belongs to another session,
  // PERMISSION_DENIED when that session is another principal's;
  // the registry's status when AckWakes fails. A claim this runtime does not
  // know (it expired here, or came from an earlier runtime process) is
  // forwarded to the registry, which checks the token.
  virtual void Ack(const AckRequest& request, Callback<AckResult> done) = 0;

  // Extends the leases of the session's claims (ExtendClaims). A session
  // that is not the runner's current one fails with FAILED_PRECONDITION and
  // changes nothing; it never holds up the current session's heartbeats. A
  // `principal` other than the session's fails with PERMISSION_DENIED.
  virtual void Heartbeat(const std::string& runner_id, const std::string& session_id,
                         const std::string& principal, Callback<HeartbeatResult> done) = 0;

  virtual SchedulerHealth Health() = 0;
};

using ClaimSchedulerPtr = std::unique_ptr<ClaimScheduler>;

}  // namespace wake::runtime
