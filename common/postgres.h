// PostgreSQL connection handling shared by the services: error mapping,
// connecting with retry, and a small connection pool.
#pragma once

#include <functional>
#include <memory>
#include <pqxx/connection>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/time_source.h"

namespace wake::common {

// Maps an exception thrown by libpqxx (or anything else) to a status:
// connection trouble and unknown commit outcome -> UNAVAILABLE, serialization
// failure / deadlock -> ABORTED, unique violation -> ALREADY_EXISTS, other
// constraint violations -> FAILED_PRECONDITION, data the database refuses
// (SQLSTATE classes 22 and 54) -> INVALID_ARGUMENT, the rest -> INTERNAL.
absl::Status StatusFromException(const std::exception& e);

// Checks a connection string (URI or key=value) without connecting.
absl::Status ValidateConnectionString(const std::string& flag, const std::string& url);

// Removes the password from a connection string for logs.
std::string RedactConnectionString(const std::string& url);

// Connects, retrying with backoff until `timeout` passes or `cancelled`
// returns true. UNAVAILABLE names the last error when it gives up.
absl::StatusOr<std::unique_ptr<pqxx::connection>> ConnectWithRetry(
    const std::string& url, TimeSource& time, absl::Duration timeout,
    const std::function<bool()>& cancelled);

// A fixed-size pool of connections, made lazily and remade after failures.
class PgPool {
 public:
  // `on_connect` runs on every new connection (e.g. to prepare statements).
  PgPool(std::string url, int size, absl::Duration acquire_timeout = absl::Seconds(5),
         std::function<void(pqxx::connection&)> on_connect = nullptr);
  ~PgPool();

  // Runs `fn` with a connection. Exceptions are mapped with
  // StatusFromException; a broken connection is dropped and remade on the
  // next use. UNAVAILABLE when no connection frees up within the timeout.
  absl::Status Run(const std::function<absl::Status(pqxx::connection&)>& fn);

  const std::string& url() const { return url_; }

 private:
  absl::StatusOr<std::unique_ptr<pqxx::connection>> Take();
  void Give(std::unique_ptr<pqxx::connection> connection, bool healthy);

  const std::string url_;
  const absl::Duration acquire_timeout_;
  const std::function<void(pqxx::connection&)> on_connect_;
  absl::Mutex mu_;
  std::vector<std::unique_ptr<pqxx::connection>> idle_ ABSL_GUARDED_BY(mu_);
  int available_ ABSL_GUARDED_BY(mu_);  // Idle plus not-yet-made connections.
};

}  // namespace wake::common
