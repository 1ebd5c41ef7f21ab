// Decoding of Electric shape values into the domain rows of the synced
// collections. Electric sends every column as Postgres' text output
// (DateStyle ISO, TimeZone UTC; jsonb as its text; NULL as JSON null); this
// file turns those strings into Registration and WakeRow, and parses the LSNs
// used by the read barrier.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "common/sync/registration.h"

namespace wake::sync {

// Column lists requested from Electric (the `columns` parameter), in order.
const std::vector<std::string>& RegistrationShapeColumns();
const std::vector<std::string>& WakeShapeColumns();
const std::vector<std::string>& MarkerShapeColumns();

// Postgres text values. Errors are INVALID_ARGUMENT and quote the text.
absl::StatusOr<int64_t> ParsePgInt8(absl::string_view text);
absl::StatusOr<int32_t> ParsePgInt4(absl::string_view text);
// "t"/"true"/"f"/"false" (Postgres output is "t"/"f").
absl::StatusOr<bool> ParsePgBool(absl::string_view text);
// timestamptz output such as "2024-05-01 10:30:45.123456+00" (also accepts
// a 'T' separator, "Z", "+05:30", "+0530" and "infinity"/"-infinity").
absl::StatusOr<absl::Time> ParsePgTimestamptz(absl::string_view text);

// An LSN as pg_lsn text ("16/B374D848") or as a decimal integer (Electric's
// global_last_seen_lsn).
absl::StatusOr<uint64_t> ParseLsn(absl::string_view text);
// pg_lsn text form, for messages.
std::string FormatLsn(uint64_t lsn);

// A row of a shape message `value`. With `full_row` every column must be
// present (inserts and replica=full updates); otherwise only `id` is required
// (deletes) and whatever else is present is decoded.
absl::StatusOr<Registration> RegistrationFromShapeValue(const nlohmann::json& value, bool full_row);
// pending = (claim_token IS NULL).
absl::StatusOr<WakeRow> WakeRowFromShapeValue(const nlohmann::json& value, bool full_row);

// A row of wake_sync_markers: a registry replica's read-barrier marker.
struct MarkerRow {
  std::string replica_id;
  int64_t seq = 0;
};
absl::StatusOr<MarkerRow> MarkerRowFromShapeValue(const nlohmann::json& value, bool full_row);

// The column a decoding error of the functions above is about ("" if none).
std::string ShapeValueErrorColumn(const absl::Status& status);

}  // namespace wake::sync
