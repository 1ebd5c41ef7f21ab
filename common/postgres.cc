#include "common/postgres.h"

#include <postgresql/libpq-fe.h>

#include <pqxx/pqxx>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/backoff.h"
#include "common/logging.h"

namespace wake::common {
namespace {

std::string FirstLine(const char* what) {
  std::string text(what);
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
  if (size_t nl = text.find('\n'); nl != std::string::npos) text = text.substr(0, nl);
  return text;
}

}  // namespace

absl::Status StatusFromException(const std::exception& e) {
  const std::string message = FirstLine(e.what());
  if (dynamic_cast<const pqxx::broken_connection*>(&e) != nullptr ||
      dynamic_cast<const pqxx::in_doubt_error*>(&e) != nullptr ||
      dynamic_cast<const pqxx::statement_completion_unknown*>(&e) != nullptr) {
    return absl::UnavailableError(absl::StrCat("database unavailable: ", message));
  }
  if (dynamic_cast<const pqxx::transaction_rollback*>(&e) != nullptr) {
    return absl::AbortedError(absl::StrCat("transaction aborted: ", message));
  }
  if (dynamic_cast<const pqxx::unique_violation*>(&e) != nullptr) {
    return absl::AlreadyExistsError(message);
  }
  if (dynamic_cast<const pqxx::integrity_constraint_violation*>(&e) != nullptr) {
    return absl::FailedPreconditionError(message);
  }
  if (const auto* sql = dynamic_cast<const pqxx::sql_error*>(&e); sql != nullptr) {
    const std::string& state = sql->sqlstate();
    // Class 08: connection exception; 57P0x: shutdown / cannot connect now;
    // 53xxx: insufficient resources (too many connections, ...).
    if (absl::StartsWith(state, "08") || absl::StartsWith(state, "57P") ||
        absl::StartsWith(state, "53")) {
      return absl::UnavailableError(absl::StrCat("database unavailable: ", message));
    }
    if (state == "40001" || state == "40P01") {
      return absl::AbortedError(absl::StrCat("transaction aborted: ", message));
    }
    if (state == "23505") return absl::AlreadyExistsError(message);
    // Class 22 (data exception: a \u0000 in JSON, a value out of range) and
    // 54 (program limit exceeded: an index row too large) come from what a
    // request carried. Never UNAVAILABLE, which tells clients to retry.
    if (absl::StartsWith(state, "22") || absl::StartsWith(state, "54")) {
      return absl::InvalidArgumentError(
          absl::StrCat("the database refused the request's data: ", message));
    }
    return absl::InternalError(absl::StrCat("database error ", state, ": ", message));
  }
  return absl::InternalError(message);
}

absl::Status ValidateConnectionString(const std::string& flag, const std::string& url) {
  if (url.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--", flag, ": required (e.g. postgresql://user@127.0.0.1:5432/wakeline)"));
  }
  char* error = nullptr;
  PQconninfoOption* options = PQconninfoParse(url.c_str(), &error);
  if (options == nullptr) {
    std::string problem = error != nullptr ? FirstLine(error) : "unparseable";
    if (error != nullptr) PQfreemem(error);
    return absl::InvalidArgumentError(
        absl::StrCat("--", flag, ": not a valid PostgreSQL connection string: ", problem));
  }
  PQconninfoFree(options);
  return absl::OkStatus();
}

std::string RedactConnectionString(const std::string& url) {
  const size_t scheme = url.find("://");
  if (scheme == std::string::npos) {
    // key=value form: rebuilt from libpq's own parse, so quoting and spacing
    // cannot hide a password from us.
    char* error = nullptr;
    PQconninfoOption* options = PQconninfoParse(url.c_str(), &error);
    if (error != nullptr) PQfreemem(error);
    if (options == nullptr) return "<unparseable connection string>";
    std::string out;
    for (PQconninfoOption* o = options; o->keyword != nullptr; ++o) {
      if (o->val == nullptr) continue;
      const bool secret = absl::string_view(o->keyword) == "password";
      absl::StrAppend(&out, out.empty() ? "" : " ", o->keyword, "=", secret ? "***" : o->val);
    }
    PQconninfoFree(options);
    return out;
  }
  // URI form: scheme://user:password@host/db?password=...
  std::string out = url;
  const size_t authority = scheme + 3;
  size_t authority_end = out.find_first_of("/?#", authority);
  if (authority_end == std::string::npos) authority_end = out.size();
  const size_t at = out.rfind('@', authority_end);
  if (at != std::string::npos && at >= authority) {
    const size_t colon = out.find(':', authority);
    if (colon != std::string::npos && colon < at) {
      out = absl::StrCat(out.substr(0, colon + 1), "***", out.substr(at));
    }
  }
  // Query parameters: any password=... (libpq accepts it there too).
  const size_t query = out.find('?');
  if (query == std::string::npos) return out;
  size_t pos = query + 1;
  while (pos < out.size()) {
    size_t end = out.find_first_of("&#", pos);
    if (end == std::string::npos) end = out.size();
    if (absl::StartsWithIgnoreCase(absl::string_view(out).substr(pos, end - pos), "password=")) {
      out = absl::StrCat(out.substr(0, pos + 9), "***", out.substr(end));
      end = pos + 12;
    }
    if (end >= out.size() || out[end] == '#') break;
    pos = end + 1;
  }
  return out;
}

absl::StatusOr<std::unique_ptr<pqxx::connection>> ConnectWithRetry(
    const std::string& url, TimeSource& time, absl::Duration timeout,
    const std::function<bool()>& cancelled) {
  const MonotonicTime deadline = time.MonotonicNow() + ToChrono(timeout);
  Backoff backoff(absl::Milliseconds(100), absl::Seconds(2));
  absl::Status last = absl::UnavailableError("no attempt made");
  for (int attempt = 1;; ++attempt) {
    if (cancelled && cancelled()) return absl::CancelledError("shutting down");
    try {
      return std::make_unique<pqxx::connection>(url);
    } catch (const std::exception& e) {
      last = StatusFromException(e);
    }
    const absl::Duration delay = backoff.Next();
    if (time.MonotonicNow() + ToChrono(delay) >= deadline) break;
    LogWarn("db_connect_retry", {{"attempt", attempt},
                                 {"retry_in", absl::FormatDuration(delay)},
                                 {"error", std::string(last.message())}});
    time.SleepFor(delay);
  }
  return absl::UnavailableError(absl::StrCat("could not connect to PostgreSQL at ",
                                             RedactConnectionString(url), " within ",
                                             absl::FormatDuration(timeout), ": ", last.message()));
}

PgPool::PgPool(std::string url, int size, absl::Duration acquire_timeout,
               std::function<void(pqxx::connection&)> on_connect)
    : url_(std::move(url)),
      acquire_timeout_(acquire_timeout),
      on_connect_(std::move(on_connect)),
      available_(size) {}

PgPool::~PgPool() = default;

absl::StatusOr<std::unique_ptr<pqxx::connection>> PgPool::Take() {
  {
    absl::MutexLock lock(&mu_);
    auto has_one = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return available_ > 0; };
    if (!mu_.AwaitWithTimeout(absl::Condition(&has_one), acquire_timeout_)) {
      return absl::UnavailableError(absl::StrCat("no database connection free within ",
                                                 absl::FormatDuration(acquire_timeout_)));
    }
    --available_;
    if (!idle_.empty()) {
      auto connection = std::move(idle_.back());
      idle_.pop_back();
      return connection;
    }
  }
  try {
    auto connection = std::make_unique<pqxx::connection>(url_);
    if (on_connect_) on_connect_(*connection);
    return connection;
  } catch (const std::exception& e) {
    absl::MutexLock lock(&mu_);
    ++available_;
    return StatusFromException(e);
  }
}

void PgPool::Give(std::unique_ptr<pqxx::connection> connection, bool healthy) {
  absl::MutexLock lock(&mu_);
  ++available_;
  if (healthy && connection != nullptr && connection->is_open()) {
    idle_.push_back(std::move(connection));
  }
}

absl::Status PgPool::Run(const std::function<absl::Status(pqxx::connection&)>& fn) {
  absl::StatusOr<std::unique_ptr<pqxx::connection>> connection = Take();
  if (!connection.ok()) return connection.status();
  absl::Status status;
  bool healthy = true;
  try {
    status = fn(**connection);
  } catch (const std::exception& e) {
    status = StatusFromException(e);
    healthy = status.code() != absl::StatusCode::kUnavailable;
  }
  Give(std::move(*connection), healthy);
  return status;
}

}  // namespace wake::common
