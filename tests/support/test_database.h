// A private database per test on the throwaway cluster named by DATABASE_URL
// (started by scripts/test.sh), dropped when the test ends, so tests never
// see each other's rows and may run in parallel.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace wake::testing {

class TestDatabase {
 public:
  // FAILED_PRECONDITION when DATABASE_URL is unset.
  static absl::StatusOr<std::unique_ptr<TestDatabase>> Create();
  ~TestDatabase();

  const std::string& name() const { return name_; }
  // Connection string of the private database.
  const std::string& url() const { return url_; }

  // Runs one SQL statement and returns the first column of the first row
  // ("" when no rows). For assertions in tests.
  std::string QueryValue(const std::string& sql) const;
  // All rows, columns joined by '|', rows by '\n'.
  std::string QueryRows(const std::string& sql) const;

 private:
  TestDatabase(std::string admin_url, std::string name, std::string url)
      : admin_url_(std::move(admin_url)), name_(std::move(name)), url_(std::move(url)) {}

  std::string admin_url_;
  std::string name_;
  std::string url_;
};

// Replaces the database name in a connection URI.
std::string WithDatabase(const std::string& url, const std::string& database);

}  // namespace wake::testing
