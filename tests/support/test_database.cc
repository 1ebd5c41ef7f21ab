#include "tests/support/test_database.h"

#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <pqxx/pqxx>
#include <random>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace wake::testing {

std::string WithDatabase(const std::string& url, const std::string& database) {
  // postgresql://user@host:port/db?params
  const size_t scheme = url.find("://");
  if (scheme == std::string::npos) return absl::StrCat(url, " dbname=", database);
  const size_t slash = url.find('/', scheme + 3);
  const size_t query = url.find('?', scheme + 3);
  std::string base = url.substr(0, slash == std::string::npos ? query : slash);
  std::string params = query == std::string::npos ? "" : url.substr(query);
  return absl::StrCat(base, "/", database, params);
}

absl::StatusOr<std::unique_ptr<TestDatabase>> TestDatabase::Create() {
  const char* admin = std::getenv("DATABASE_URL");
  if (admin == nullptr || *admin == '\0') {
    return absl::FailedPreconditionError(
        "DATABASE_URL is not set: run integration tests through scripts/test.sh");
  }
  static std::atomic<int> counter{0};
  std::random_device rd;
  const std::string name = absl::StrCat("wt_", getpid(), "_", counter++, "_",
                                        std::uniform_int_distribution<int>(0, 1 << 20)(rd));
  try {
    pqxx::connection connection(admin);
    pqxx::nontransaction tx(connection);
    tx.exec(absl::StrCat("CREATE DATABASE ", name));
  } catch (const std::exception& e) {
    return absl::UnavailableError(absl::StrCat("cannot create test database: ", e.what()));
  }
  return std::unique_ptr<TestDatabase>(new TestDatabase(admin, name, WithDatabase(admin, name)));
}

TestDatabase::~TestDatabase() {
  try {
    pqxx::connection connection(admin_url_);
    pqxx::nontransaction tx(connection);
    tx.exec(absl::StrCat("DROP DATABASE IF EXISTS ", name_, " WITH (FORCE)"));
  } catch (const std::exception&) {
    // Best effort: the whole cluster is thrown away after the run.
  }
}

std::string TestDatabase::QueryValue(const std::string& sql) const {
  pqxx::connection connection(url_);
  pqxx::nontransaction tx(connection);
  pqxx::result result = tx.exec(sql);
  if (result.empty() || result[0][0].is_null()) return "";
  return result[0][0].c_str();
}

std::string TestDatabase::QueryRows(const std::string& sql) const {
  pqxx::connection connection(url_);
  pqxx::nontransaction tx(connection);
  std::vector<std::string> rows;
  for (const auto& row : tx.exec(sql)) {
    std::vector<std::string> cells;
    for (const auto& field : row) cells.push_back(field.is_null() ? "NULL" : field.c_str());
    rows.push_back(absl::StrJoin(cells, "|"));
  }
  return absl::StrJoin(rows, "\n");
}

}  // namespace wake::testing
