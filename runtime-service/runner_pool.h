// The runner sessions connected to one runtime, as the claim scheduler sees
// them: which session may take a claim of which stream (same tenant, a
// matching stream prefix or none), how much room each has (max_in_flight
// minus the claims it holds), and round-robin fairness among the sessions of
// a tenant.
//
// Not thread-safe: the claim scheduler calls it under its own lock.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "runtime-service/claim_scheduler.h"
#include "runtime-service/claim_sink.h"

namespace wake::runtime {

// (tenant_id, stream)
using StreamKey = std::pair<std::string, std::string>;

class RunnerPool {
 public:
  struct Session {
    RunnerSpec spec;
    ClaimSinkPtr sink;
    // Claims delivered to it and not yet acked or released.
    absl::flat_hash_set<StreamKey> claims;
  };

  // Adds a session and makes it its runner's current one. A session of the
  // same runner still in the pool must have been removed first.
  SessionId Add(const RunnerSpec& spec, ClaimSinkPtr sink);

  // Removes a session (no-op for unknown ids) and returns it, claims and all.
  std::optional<Session> Remove(SessionId id);

  Session* Find(SessionId id);
  const Session* Find(SessionId id) const;

  // The runner's connected session, 0 if none.
  SessionId CurrentOf(const std::string& runner_id) const;

  // The next session, round robin among the tenant's, that may take a claim
  // of `key` and has room for it; 0 if none. Advances the tenant's cursor.
  SessionId Pick(const StreamKey& key);

  // Whether the session serves the stream (tenant and prefixes), room aside.
  bool Serves(const Session& session, const StreamKey& key) const;
  // How many more claims the session can take (0 for unknown ids).
  int Room(SessionId id) const;

  void AddClaim(SessionId id, const StreamKey& key);
  // No-op for unknown ids.
  void RemoveClaim(SessionId id, const StreamKey& key);

  size_t size() const { return sessions_.size(); }

 private:
  struct TenantRing {
    std::vector<SessionId> sessions;
    size_t next = 0;  // Round-robin cursor.
  };

  absl::flat_hash_map<SessionId, Session> sessions_;
  absl::flat_hash_map<std::string, SessionId> current_;  // By runner_id.
  absl::flat_hash_map<std::string, TenantRing> rings_;   // By tenant_id.
  SessionId next_id_ = 1;
};

}  // namespace wake::runtime
