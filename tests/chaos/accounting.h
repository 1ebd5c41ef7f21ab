// The chaos run's books: which wakes must exist (known to the driver: each
// child run finish wakes its parent's registration exactly once), which wake
// rows were made (evaluate responses, runner claims, the database audit), and
// which were delivered and acked (the runners' records). Pure bookkeeping, so
// the rules that decide "lost" and "duplicated" are unit-tested.
//
// A wake is identified by (registration id, source event key): the pair the
// registry promises to produce exactly once. Acks count only when the runner
// recorded an OK reply; an ack whose reply was lost (runtime killed, deadline)
// counts as acked only if the database audit shows its row deleted after
// the ack was sent (nothing but an ack deletes a wake row).
#pragma once

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/time/time.h"
#include "tests/chaos/record.h"

namespace wake::chaos {

// (registration id, source event key).
using WakeKey = std::pair<int64_t, std::string>;

// One row of the audit table the driver installs on `wakes` (a trigger
// logging every insert and delete, in the same transaction as the change).
struct AuditRow {
  int64_t seq = 0;
  bool inserted = true;  // false: deleted.
  int64_t wake_id = 0;
  int64_t registration_id = 0;
  std::string source_event_key;
  absl::Time at;
};

// A row still in `wakes` when the run ended.
struct RemainingWake {
  int64_t id = 0;
  int64_t registration_id = 0;
  std::string source_event_key;
  bool claimed = false;
};

struct Report {
  int64_t expected = 0;    // (registration, event) pairs that must be woken
  int64_t produced = 0;    // distinct wake ids seen anywhere
  int64_t delivered = 0;   // distinct wake ids some runner received
  int64_t deliveries = 0;  // wake deliveries, redeliveries included
  int64_t acked = 0;  // distinct wake ids acked (OK reply, or row deleted after an ack attempt)
  int64_t acked_by_database = 0;  // ... of which only the database shows it (ack reply lost)
  int64_t lost = 0;               // expected pairs with no acked wake
  int64_t lost_never_produced = 0;
  int64_t lost_pending = 0;           // row still in wakes, unclaimed
  int64_t lost_claimed = 0;           // row still in wakes, claimed
  int64_t lost_deleted_unacked = 0;   // row deleted, but no runner ever tried to ack it
  int64_t lost_unknown = 0;           // seen, but neither in the table nor deleted (no audit?)
  int64_t duplicated = 0;             // pairs with more than one wake id
  int64_t duplicate_extra = 0;        // wake ids beyond the first of those pairs
  int64_t double_acks = 0;            // wake ids with more than one OK ack
  int64_t unexpected = 0;             // wake ids for pairs the driver never produced
  int64_t redelivered_after_ack = 0;  // wake ids received again after an OK ack of them
  int64_t acked_but_remaining = 0;    // OK ack, yet the row is still in wakes
  int64_t held = 0;                   // claims a sabotaging runner never acked
  int64_t orphan_acks = 0;            // ack lines whose claim line is missing (harness check)
  int64_t conflicting_ids = 0;        // a wake id seen with two different pairs (harness check)
  std::map<int, int64_t> ack_codes;   // runner ack results, by grpc::StatusCode
  int64_t sessions_opened = 0;        // runner sessions (a new one per connect)
  std::vector<WakeKey> lost_sample;
  std::vector<WakeKey> duplicated_sample;
  std::vector<int64_t> double_ack_sample;
  std::vector<int64_t> unexpected_sample;
};

class Accounting {
 public:
  // The driver's side.
  void Expect(const WakeKey& key, const std::string& stream);
  // An event whose evaluation was abandoned (never answered OK): its wake may
  // or may not exist, so it is neither lost nor unexpected.
  void Tolerate(const WakeKey& key) { tolerated_.insert(key); }
  // A wake an EvaluateRunFinished response returned.
  void Evaluated(int64_t wake_id, const WakeKey& key);
  // One line of runner `runner`'s record.
  void Record(const std::string& runner, const RecordLine& line);
  // The database's side.
  void Audit(const AuditRow& row);
  // The rows left in `wakes` at the end (call once, after the run).
  void Remaining(const std::vector<RemainingWake>& rows);

  bool IsExpected(const WakeKey& key) const { return expected_.count(key) > 0; }
  // Expected pairs that no acked wake covers yet.
  std::vector<WakeKey> Unacked() const;
  int64_t expected_count() const { return static_cast<int64_t>(expected_.size()); }

  Report Summarize(size_t sample_size = 10) const;

  // What is known about one pair, one line per wake id (for the report).
  std::string Describe(const WakeKey& key) const;
  std::set<int64_t> IdsOf(const WakeKey& key) const;
  const std::string& StreamOf(const WakeKey& key) const;

 private:
  struct WakeState {
    WakeKey key;
    bool evaluated = false;
    bool audit_inserted = false;
    bool audit_deleted = false;
    absl::Time inserted_at = absl::InfinitePast();
    absl::Time deleted_at = absl::InfinitePast();
    bool remaining = false;
    bool remaining_claimed = false;
    bool ack_attempted = false;
    absl::Time first_ack_sent = absl::InfiniteFuture();
    bool held = false;  // In a claim a sabotaging runner kept without acking.
    std::vector<absl::Time> delivered_at;
    std::vector<absl::Time> ok_acked_at;
    std::vector<std::string> runners;
  };
  struct ClaimState {
    std::vector<int64_t> wake_ids;
  };
  using ClaimRef = std::tuple<std::string, std::string, std::string>;  // runner, session, token

  WakeState& Wake(int64_t id, const WakeKey& key);
  static bool IsAcked(const WakeState& wake);
  static bool IsAckedOk(const WakeState& wake) { return !wake.ok_acked_at.empty(); }
  bool PairAcked(const WakeKey& key) const;

  std::map<WakeKey, std::string> expected_;
  std::set<WakeKey> tolerated_;
  std::map<int64_t, WakeState> wakes_;
  std::map<WakeKey, std::set<int64_t>> ids_;
  std::map<ClaimRef, ClaimState> claims_;
  bool remaining_known_ = false;
  int64_t held_ = 0;
  int64_t orphan_acks_ = 0;
  int64_t conflicting_ids_ = 0;
  std::map<int, int64_t> ack_codes_;
  int64_t sessions_opened_ = 0;
};

}  // namespace wake::chaos
