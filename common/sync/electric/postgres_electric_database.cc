#include "common/sync/electric/postgres_electric_database.h"

#include <memory>
#include <pqxx/pqxx>

#include "absl/strings/str_cat.h"

namespace wake::sync {
namespace {

absl::Status Named(const absl::Status& status, absl::string_view what) {
  if (status.ok()) return status;
  return absl::Status(status.code(), absl::StrCat(what, ": ", status.message()));
}

}  // namespace

ElectricDatabase MakePostgresElectricDatabase(common::PgPool& pool) {
  ElectricDatabase database;
  // Rows of replicas gone for a day are swept by the next replica's first
  // marker: the table stays as small as the number of live replicas.
  auto swept = std::make_shared<std::atomic<bool>>(false);
  database.write_marker = [&pool, swept](const std::string& marker_id,
                                         int64_t seq) -> absl::Status {
    const bool sweep = !swept->exchange(true);
    return Named(pool.Run([&](pqxx::connection& connection) -> absl::Status {
      pqxx::work tx(connection);
      // The marker must reach Electric promptly whatever the
      // server's default: Electric only sees flushed WAL.
      tx.exec0("SET LOCAL synchronous_commit = local");
      if (sweep) {
        tx.exec_params0(
            "DELETE FROM wake_sync_markers WHERE replica_id <> $1 "
            "AND written_at < now() - interval '1 day'",
            marker_id);
      }
      tx.exec_params0(
          "INSERT INTO wake_sync_markers (replica_id, seq) VALUES ($1, $2) "
          "ON CONFLICT (replica_id) DO UPDATE SET seq = EXCLUDED.seq, "
          "written_at = now()",
          marker_id, seq);
      tx.commit();
      return absl::OkStatus();
    }),
                 "writing the wake_sync_markers row");
  };
  database.next_xid = [&pool]() -> absl::StatusOr<int64_t> {
    int64_t next = 0;
    absl::Status status = pool.Run([&next](pqxx::connection& connection) -> absl::Status {
      pqxx::nontransaction tx(connection);
      next =
          tx.exec1("SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint")[0].as<int64_t>();
      return absl::OkStatus();
    });
    if (!status.ok()) return Named(status, "reading pg_current_snapshot()");
    return next;
  };
  return database;
}

}  // namespace wake::sync
