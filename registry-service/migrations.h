// Schema migrations of the registry, embedded from migrations/*.sql and
// applied at startup: one transaction under an advisory lock, each version
// recorded in schema_migrations, so concurrent replicas and restarts are safe
// and running twice changes nothing.
#pragma once

#include <pqxx/connection>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace wake::registry {

struct Migration {
  int version;
  std::string name;
  std::string sql;
};

// The embedded migrations, ordered by version.
const std::vector<Migration>& Migrations();

// Applies the missing migrations; returns how many were applied.
absl::StatusOr<int> ApplyMigrations(pqxx::connection& connection);

}  // namespace wake::registry
