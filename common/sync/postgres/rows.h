// Turns rows of wake_registrations and wakes, in PostgreSQL's text format,
// into domain rows. The same code reads the initial snapshot (query results)
// and the replication stream (pgoutput tuples), matching columns by name so
// a column added to a table, or a different column order, changes nothing.
//
// Text formats assume the session settings the postgres sync source sets on
// its connections: DateStyle ISO and TimeZone UTC.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "common/sync/postgres/pgoutput.h"
#include "common/sync/registration.h"
#include "common/sync/sync_source.h"

namespace wake::sync::pgrows {

absl::StatusOr<int64_t> ParseInt64(absl::string_view text);
absl::StatusOr<int32_t> ParseInt32(absl::string_view text);
// 't' / 'f' (also "true" / "false").
absl::StatusOr<bool> ParseBool(absl::string_view text);
// timestamptz output with DateStyle ISO: "2026-01-02 03:04:05.123456+00",
// any UTC offset ("+05:30", "-03:30:15"), " BC", "infinity", "-infinity".
absl::StatusOr<absl::Time> ParseTimestamptz(absl::string_view text);

// Where each column the registry follows sits in a row of one table.
class RowLayout {
 public:
  // `columns` in row order, as a Relation message or a result describes them.
  RowLayout(SyncTable table, const std::vector<std::string>& columns);

  SyncTable table() const { return table_; }

  // FAILED_PRECONDITION naming the missing columns when a row of this table
  // could not fill the domain row (an incompatible schema).
  absl::Status CheckComplete() const;

  // Index of a named field, -1 when the row has no such column.
  int Index(int field) const { return index_[field]; }

  // Field numbers (registrations and wakes share the array).
  enum RegistrationField {
    kRegId,
    kRegTenantId,
    kRegSubscriberUrl,
    kRegSourceUrl,
    kRegCondition,
    kRegDebounceMs,
    kRegTimeoutMs,
    kRegOneShot,
    kRegTimeoutConsumed,
    kRegIncludeResponse,
    kRegManifestKey,
    kRegCreatedAt,
    kRegFieldCount,
  };
  enum WakeField {
    kWakeId,
    kWakeTenantId,
    kWakeStream,
    kWakeRegistrationId,
    kWakeClaimToken,  // pending = claim_token IS NULL
    kWakePending,     // or the snapshot's precomputed boolean
    kWakeFieldCount,
  };

 private:
  SyncTable table_;
  std::vector<int> index_;
};

// How much of a row must be present.
enum class RowNeed {
  // Inserts and updates: every field.
  kComplete,
  // Deleted rows described by their key only: the id at least; fields that
  // are null or absent keep their defaults (or `previous`, for wakes).
  kKey,
};

// Decodes a registration. A column marked unchanged-TOAST ('u') takes its
// value from `old_row` (the update's old tuple) when that has it.
absl::StatusOr<Registration> DecodeRegistration(const RowLayout& layout, const pgoutput::Tuple& row,
                                                const pgoutput::Tuple* old_row, RowNeed need);

// Decodes a wake. Columns that are unchanged-TOAST, or absent from a
// key-only row, come from `previous` (the last known state of that wake).
absl::StatusOr<WakeRow> DecodeWake(const RowLayout& layout, const pgoutput::Tuple& row,
                                   const WakeRow* previous, RowNeed need);

}  // namespace wake::sync::pgrows
