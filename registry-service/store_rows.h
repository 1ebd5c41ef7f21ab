// What both halves of PostgresWakeStore (postgres_wake_store.cc and
// postgres_wake_store_claims.cc) need to talk to their statements: the JSON
// they build as batch input, the wake rows the statements return, and times
// in the units the SQL takes. Private to :postgres_wake_store_lib.
#pragma once

#include <cstdint>
#include <pqxx/pqxx>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "wake/v1/registry.pb.h"

namespace wake::registry::store_internal {

// Appends `text` to `out` as a JSON string literal.
void AppendJsonString(std::string* out, absl::string_view text);

// A timestamp the statements return as microseconds since the epoch.
absl::Time FromMicros(int64_t micros);

// A wake read from the columns store_sql.cc's kWakeColumns lists, in order.
absl::StatusOr<v1::Wake> RowToWake(const pqxx::row& r);

// A lease or retention as the statements take it (milliseconds).
int64_t LeaseMillis(absl::Duration lease);

}  // namespace wake::registry::store_internal
