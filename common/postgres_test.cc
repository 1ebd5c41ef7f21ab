#include "common/postgres.h"

#include <pqxx/pqxx>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace wake::common {
namespace {

TEST(PostgresStatusTest, MapsExceptionClasses) {
  EXPECT_EQ(StatusFromException(pqxx::broken_connection("gone")).code(),
            absl::StatusCode::kUnavailable);
  EXPECT_EQ(StatusFromException(pqxx::in_doubt_error("?")).code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(StatusFromException(pqxx::serialization_failure("retry")).code(),
            absl::StatusCode::kAborted);
  EXPECT_EQ(StatusFromException(pqxx::deadlock_detected("dl")).code(), absl::StatusCode::kAborted);
  EXPECT_EQ(StatusFromException(pqxx::unique_violation("dup", "", "23505")).code(),
            absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(StatusFromException(pqxx::check_violation("chk", "", "23514")).code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(StatusFromException(pqxx::sql_error("shutdown", "", "57P01")).code(),
            absl::StatusCode::kUnavailable);
  EXPECT_EQ(StatusFromException(pqxx::sql_error("conn", "", "08006")).code(),
            absl::StatusCode::kUnavailable);
  EXPECT_EQ(StatusFromException(pqxx::sql_error("weird", "", "XX000")).code(),
            absl::StatusCode::kInternal);
  EXPECT_EQ(StatusFromException(std::runtime_error("other")).code(), absl::StatusCode::kInternal);
}

TEST(PostgresStatusTest, DataTheDatabaseRefusesIsInvalidArgumentNeverUnavailable) {
  const absl::Status json = StatusFromException(
      pqxx::data_exception("ERROR:  unsupported Unicode escape sequence", "", "22P05"));
  EXPECT_EQ(json.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(json.message()), ::testing::HasSubstr("refused the request's data"));
  EXPECT_EQ(StatusFromException(
                pqxx::sql_error("ERROR:  index row size 3000 exceeds btree maximum", "", "54000"))
                .code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(PostgresStatusTest, KeepsOnlyTheFirstLineOfTheMessage) {
  const absl::Status status =
      StatusFromException(pqxx::broken_connection("could not connect\nDETAIL: more\n"));
  EXPECT_EQ(status.message(), "database unavailable: could not connect");
}

TEST(ConnectionStringTest, ValidatesWithoutConnecting) {
  EXPECT_TRUE(ValidateConnectionString("database-url", "postgresql://u@127.0.0.1:5/db").ok());
  EXPECT_TRUE(ValidateConnectionString("database-url", "host=127.0.0.1 port=5 dbname=x").ok());
  const absl::Status empty = ValidateConnectionString("database-url", "");
  EXPECT_EQ(empty.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(empty.message().find("--database-url"), absl::string_view::npos);
  const absl::Status bad = ValidateConnectionString("database-url", "host=x bogus_key=1");
  EXPECT_EQ(bad.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(bad.message().find("--database-url"), absl::string_view::npos);
}

TEST(ConnectionStringTest, RedactsPasswords) {
  EXPECT_EQ(RedactConnectionString("postgresql://u:secret@h:5/db"), "postgresql://u:***@h:5/db");
  // key=value strings come back in libpq's option order.
  EXPECT_EQ(RedactConnectionString("host=h password=secret dbname=x"),
            "password=*** dbname=x host=h");
  EXPECT_EQ(RedactConnectionString("postgresql://u@h/db"), "postgresql://u@h/db");
  EXPECT_EQ(RedactConnectionString("postgresql://u@h/db?sslmode=disable&password=secret"),
            "postgresql://u@h/db?sslmode=disable&password=***");
  EXPECT_EQ(RedactConnectionString("postgresql://u@/db?password=secret&host=/run/pg"),
            "postgresql://u@/db?password=***&host=/run/pg");
  EXPECT_EQ(RedactConnectionString("postgresql://u:p%40ss@h/db?PASSWORD=x#frag"),
            "postgresql://u:***@h/db?PASSWORD=***#frag");
  EXPECT_EQ(RedactConnectionString("host=h password='s e c r e t' dbname=x"),
            "password=*** dbname=x host=h");
  EXPECT_EQ(RedactConnectionString("password = secret"), "password=***");
  // Never echo what libpq cannot parse: it may hold a password.
  EXPECT_EQ(RedactConnectionString("host=h password='unterminated"),
            "<unparseable connection string>");
}

}  // namespace
}  // namespace wake::common
