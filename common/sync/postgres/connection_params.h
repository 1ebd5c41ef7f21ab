// How the postgres sync source reaches the server: the URL's parameters plus
// the session settings that the row decoders (rows.h) rely on.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "common/sync/postgres/pq_connection.h"

namespace wake::sync {

// Parameters for PqConnection::Connect from a PostgreSQL URL or conninfo
// string: ISO dates, UTC and the postgres interval style are appended to any
// `options` it has, `application_name` defaults to "wakeline-sync", and
// `replication=database` is set when `replication` (whatever the URL said).
// INVALID_ARGUMENT, with libpq's reason, when the string does not parse.
absl::StatusOr<PqConnection::Params> SyncConnectionParams(const std::string& url, bool replication);

}  // namespace wake::sync
