// The replication session behind PostgresSyncSource: one connection's
// snapshot and logical replication stream, run on the source's thread.
// Private to the postgres sync source (its BUILD target does not export it).
#pragma once

#include <postgresql/libpq-fe.h>

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/sync/postgres/pgoutput.h"
#include "common/sync/postgres/postgres_sync_source.h"
#include "common/sync/postgres/pq_connection.h"
#include "common/sync/postgres/rows.h"
#include "common/sync/sync_source.h"
#include "common/time_source.h"

namespace wake::sync {

// The streaming thread's state for one connection: both libpq connections,
// the relations the stream announced, the transaction being received, and
// the positions that decide up-to-date and answer barriers.
class PostgresSyncSource::Session {
 public:
  Session(PostgresSyncSource& source, SyncObserver& observer);

  // Until the connection ends; see RunSession().
  absl::Status Run();

  bool reached_up_to_date() const { return up_to_date_; }

 private:
  struct RelationState {
    std::optional<SyncTable> table;  // Unset: not one we follow.
    std::optional<pgrows::RowLayout> layout;
  };

  common::MonotonicTime StepDeadline();

  // ---- connecting and the initial snapshot ----

  // Connects both libpq connections after checking the publication, the
  // wal_level and the role's REPLICATION attribute (INVALID_ARGUMENT naming
  // what is missing).
  absl::Status Setup();

  // A new temporary slot, its snapshot read and delivered, then streaming
  // from the slot's consistent point.
  absl::Status SnapshotAndStart();

  struct Slot {
    std::string name;
    pgoutput::Lsn consistent_point = 0;
    std::string snapshot_name;  // Importable until repl_'s next command.
  };
  absl::StatusOr<Slot> CreateSlot();
  // Both tables as of the slot's snapshot; also sets the xid reference and
  // the position to reach before up-to-date. Closes sql_.
  absl::StatusOr<std::vector<RowChange>> ReadSnapshot(const std::string& snapshot_name);
  // Forget-then-refill: OnReset, then the rows in batches.
  absl::Status DeliverSnapshot(std::vector<RowChange> rows);
  absl::Status StartReplication(const Slot& slot);

  absl::Status DecodeSnapshot(const PGresult* registrations, const PGresult* wakes,
                              std::vector<RowChange>* rows);

  static void SkipRow(absl::string_view table, const absl::Status& why);

  // ---- streaming ----

  // Reads the stream until it fails or the source stops; asks the server
  // for its position when a barrier or the catch-up target is ahead of ours.
  absl::Status Stream();
  absl::Status DrainMessages();
  absl::Status HandleCopyData(absl::string_view data);
  static absl::Status Malformed(const absl::Status& status);

  // One per pgoutput message kind; a transaction's changes reach the
  // observer as one batch at its Commit.
  absl::Status Handle(pgoutput::Begin& begin);
  absl::Status Handle(pgoutput::Commit& commit);
  absl::Status Handle(pgoutput::Relation& relation);
  absl::Status Handle(pgoutput::Insert& insert);
  absl::Status Handle(pgoutput::Update& update);
  absl::Status Handle(pgoutput::Delete& del);
  absl::Status Handle(pgoutput::Truncate& truncate);
  absl::Status Handle(pgoutput::Origin&) { return absl::OkStatus(); }
  absl::Status Handle(pgoutput::Type&) { return absl::OkStatus(); }
  absl::Status Handle(pgoutput::LogicalMessage&) { return absl::OkStatus(); }

  const RelationState* Lookup(uint32_t id) const;
  static absl::Status UnknownRelation(uint32_t id);

  // `row`: the new row (insert, update) or the old one (delete).
  absl::Status AddChange(const RelationState& rel, ChangeOp op, const pgoutput::Tuple& row,
                         const pgoutput::Tuple* old_row, bool key_only);

  // A value the stream left out (unchanged TOAST we cannot fill) means our
  // copy would be wrong: resync. A value that does not parse is skipped.
  static absl::Status RowProblem(absl::string_view table, const absl::Status& why);

  // Everything committed before `lsn` has been delivered.
  absl::Status Advance(pgoutput::Lsn lsn);

  absl::Status MaybeUpToDate();
  absl::Status SendStatus(bool reply_requested);

  PostgresSyncSource& source_;
  SyncObserver& observer_;
  common::TimeSource& time_;
  PqConnection repl_;
  PqConnection sql_;

  std::map<uint32_t, RelationState> relations_;
  // Last known state of every wake, to describe deletes (key-only) and
  // updates that leave TOASTed columns out.
  std::unordered_map<int64_t, WakeRow> wakes_;

  bool in_transaction_ = false;
  int64_t txn_xid_ = 0;
  std::vector<RowChange> changes_;
  int64_t xid_reference_ = 0;

  pgoutput::Lsn pos_ = 0;
  pgoutput::Lsn catch_up_target_ = 0;
  bool up_to_date_ = false;
  pgoutput::Lsn requested_for_ = 0;
  common::MonotonicTime last_received_{};
  common::MonotonicTime last_status_sent_{};
  common::MonotonicTime last_reply_request_{};
};

}  // namespace wake::sync
