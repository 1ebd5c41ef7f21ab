#include "common/sync/electric/postgres_lsn.h"

#include <pqxx/pqxx>

#include "absl/strings/str_cat.h"
#include "common/sync/electric/electric_values.h"

namespace wake::sync {

CurrentLsnProvider MakePostgresLsnProvider(common::PgPool& pool) {
  return [&pool]() -> absl::StatusOr<uint64_t> {
    uint64_t lsn = 0;
    absl::Status status = pool.Run([&lsn](pqxx::connection& connection) -> absl::Status {
      pqxx::nontransaction tx(connection);
      pqxx::result result = tx.exec("SELECT pg_current_wal_lsn()::text");
      if (result.empty() || result[0][0].is_null()) {
        return absl::InternalError("pg_current_wal_lsn() returned no row");
      }
      absl::StatusOr<uint64_t> parsed = ParseLsn(result[0][0].c_str());
      if (!parsed.ok()) return parsed.status();
      lsn = *parsed;
      return absl::OkStatus();
    });
    if (!status.ok()) {
      return absl::Status(status.code(),
                          absl::StrCat("reading pg_current_wal_lsn(): ", status.message()));
    }
    return lsn;
  };
}

}  // namespace wake::sync
