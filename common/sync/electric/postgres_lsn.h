// The production CurrentLsnProvider of the Electric read barrier: the
// database's current WAL position, `SELECT pg_current_wal_lsn()`.
#pragma once

#include "common/postgres.h"
#include "common/sync/electric/electric_sync_source.h"

namespace wake::sync {

// Runs the query on a pooled connection. UNAVAILABLE when the database
// cannot be reached; the pool must outlive the provider.
CurrentLsnProvider MakePostgresLsnProvider(common::PgPool& pool);

}  // namespace wake::sync
