#include "registry-service/migrations.h"

#include <pqxx/pqxx>
#include <set>

#include "common/logging.h"
#include "common/postgres.h"

namespace wake::registry {
namespace {

// Arbitrary but fixed: every registry replica serialises migrations on it.
constexpr int64_t kMigrationLockKey = 0x77616b656c696e65;  // "wakeline"

}  // namespace

const std::vector<Migration>& Migrations() {
  static const std::vector<Migration>* const kMigrations = new std::vector<Migration>{
#include "registry-service/migrations_sql.inc"
  };
  return *kMigrations;
}

absl::StatusOr<int> ApplyMigrations(pqxx::connection& connection) {
  try {
    pqxx::work tx(connection);
    tx.exec_params("SELECT pg_advisory_xact_lock($1)", kMigrationLockKey);
    tx.exec(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        " version integer PRIMARY KEY,"
        " name text NOT NULL,"
        " applied_at timestamptz NOT NULL DEFAULT now())");
    std::set<int> applied;
    for (const auto& row : tx.exec("SELECT version FROM schema_migrations")) {
      applied.insert(row[0].as<int>());
    }
    int count = 0;
    for (const Migration& migration : Migrations()) {
      if (applied.count(migration.version) > 0) continue;
      tx.exec(migration.sql);
      tx.exec_params("INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                     migration.version, migration.name);
      common::LogInfo("migration_applied",
                      {{"version", migration.version}, {"name", migration.name}});
      ++count;
    }
    tx.commit();
    return count;
  } catch (const std::exception& e) {
    return common::StatusFromException(e);
  }
}

}  // namespace wake::registry
