// The production ElectricDatabase: the marker writes of the Electric read
// barrier and the first xid8 reference, on a pool of the registry database.
#pragma once

#include "common/postgres.h"
#include "common/sync/electric/electric_sync_source.h"

namespace wake::sync {

// The pool must outlive what this returns. Errors are UNAVAILABLE (naming
// the statement) when the database cannot be reached.
ElectricDatabase MakePostgresElectricDatabase(common::PgPool& pool);

}  // namespace wake::sync
