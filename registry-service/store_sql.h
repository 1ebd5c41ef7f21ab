// The SQL text of PostgresWakeStore's prepared statements, kept apart from the
// C++ that runs them so either reads without the other in the way.
#pragma once

#include <string>
#include <vector>

namespace wake::registry {

struct PreparedStatement {
  std::string name;  // What exec_prepared calls it by.
  std::string sql;
};

// Every statement a connection of the store prepares when it opens.
std::vector<PreparedStatement> StoreStatements();

}  // namespace wake::registry
