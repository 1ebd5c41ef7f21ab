// The runner sessions connected to one runtime, as the claim scheduler sees
// them: which session may take a claim of which stream (same tenant, a
// matching stream prefix or none), how much room each has (max_in_flight
// minus the claims it holds and the claims being taken for it), round-robin
// fairness among the sessions of a tenant, which sessions gained room since
// the scheduler last looked, and which session ids of a runner were
// superseded by a newer one.
//
// Not thread-safe: the claim scheduler calls it under its own lock.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "runtime-service/claim_scheduler.h"
#include "runtime-service/claim_sink.h"

namespace wake::runtime {

// (tenant_id, stream)
using StreamKey = std::pair<std::string, std::string>;

class RunnerPool {
 public:
  // How many superseded session ids are remembered: the last
  // `superseded_per_runner` of each runner, at most `superseded_kept` in all
  // and as many runners; beyond that the least recently connected runners are
  // forgotten first.
  static constexpr size_t kSupersededPerRunner = 256;
  static constexpr size_t kSupersededKept = 65536;

  explicit RunnerPool(size_t superseded_per_runner = kSupersededPerRunner,
                      size_t superseded_kept = kSupersededKept)
      : superseded_per_runner_(superseded_per_runner), superseded_kept_(superseded_kept) {}

  struct Session {
    RunnerSpec spec;
    ClaimSinkPtr sink;
    // Claims delivered to it and not yet acked or released.
    absl::flat_hash_set<StreamKey> claims;
    // ClaimWakes calls in flight whose claim is meant for it.
    int reserved = 0;
  };

  // OK, or FAILED_PRECONDITION naming session_id when a later session of the
  // runner has connected since `spec.session_id` did: a superseded session
  // never comes back.
  absl::Status CheckNotSuperseded(const RunnerSpec& spec) const;

  // Adds a session and makes it its runner's current one; the runner's
  // previous session id (connected or not) counts as superseded from now on.
  // A session of the same runner still in the pool must have been removed
  // first.
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
  // How many more claims the session can take: max_in_flight minus claims
  // held and reserved (0 for unknown ids).
  int Room(SessionId id) const;

  // Holds room for a claim being taken for the session (ClaimWakes sent).
  void Reserve(SessionId id);
  // The claim being taken ended (claimed, or not); no-op for unknown ids.
  void Unreserve(SessionId id);
  void AddClaim(SessionId id, const StreamKey& key);
  // No-op for unknown ids.
  void RemoveClaim(SessionId id, const StreamKey& key);

  // Sessions that connected or gained room (Unreserve, RemoveClaim) since
  // ClearGrown was last called for them.
  const absl::flat_hash_set<SessionId>& grown() const { return grown_; }
  void ClearGrown(SessionId id) { grown_.erase(id); }
  void ClearAllGrown() { grown_.clear(); }

  size_t size() const { return sessions_.size(); }

 private:
  struct TenantRing {
    std::vector<SessionId> sessions;
    size_t next = 0;  // Round-robin cursor.
  };

  // Session ids a runner has used on this runtime.
  struct RunnerHistory {
    std::string last_session;
    std::deque<std::string> superseded;  // Oldest first.
    absl::flat_hash_set<std::string> superseded_set;
    uint64_t touched = 0;  // Key in history_lru_.
  };

  void RecordSession(const RunnerSpec& spec);

  const size_t superseded_per_runner_;
  const size_t superseded_kept_;
  absl::flat_hash_map<SessionId, Session> sessions_;
  absl::flat_hash_map<std::string, SessionId> current_;  // By runner_id.
  absl::flat_hash_map<std::string, TenantRing> rings_;   // By tenant_id.
  absl::flat_hash_set<SessionId> grown_;
  SessionId next_id_ = 1;
  absl::flat_hash_map<std::string, RunnerHistory> history_;  // By runner_id.
  std::set<std::pair<uint64_t, std::string>> history_lru_;   // (touched, runner_id)
  uint64_t next_touch_ = 1;
  size_t superseded_total_ = 0;
};

}  // namespace wake::runtime
