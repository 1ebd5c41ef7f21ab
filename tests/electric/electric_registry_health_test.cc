// The registry binary in production mode (--sync=electric) against the
// scripted Electric fed from a real PostgreSQL: it serves once the shapes are
// up to date, and a request Electric rejects after startup (here a 401 once
// the secret changed on Electric's side) turns its health NOT_SERVING with
// the reason in the log, until Electric accepts it again.
#include <signal.h>

#include <atomic>
#include <pqxx/pqxx>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "registry-service/migrations.h"
#include "tests/electric/pgoutput_feeder.h"
#include "tests/electric/scripted_electric_server.h"
#include "tests/support/service_process.h"
#include "tests/support/status_matchers.h"
#include "tests/support/test_database.h"
#include "tests/support/wait_until.h"

namespace wake::testing {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;

constexpr absl::Duration kWait = absl::Seconds(30);

// Polls health until it reads `want` or `timeout` passes; returns the last.
std::string WaitForHealth(const std::string& address, const std::string& want,
                          absl::Duration timeout) {
  std::string last;
  WaitUntil(
      [&] {
        absl::StatusOr<std::string> health = CheckHealth(address, "wake.v1.WakeRegistry");
        last = health.ok() ? *health : std::string(health.status().message());
        return last == want;
      },
      absl::Now() + timeout);
  return last;
}

TEST(ElectricRegistryHealthTest, RejectionAfterStartupIsNotServingWithTheReasonUntilItGoes) {
  auto db = TestDatabase::Create();
  ASSERT_TRUE(db.ok()) << db.status();
  auto server = ScriptedElectricServer::Start();
  ASSERT_TRUE(server.ok()) << server.status();
  {
    // The publication (Electric's) needs the tables before the registry starts.
    pqxx::connection connection((*db)->url());
    ASSERT_TRUE(registry::ApplyMigrations(connection).ok());
  }
  for (const char* table : {"wake_registrations", "wakes", "wake_sync_markers"}) {
    (*server)->CreateShape(table, absl::StrCat(table, "-1"));
  }
  auto feeder =
      PgoutputFeeder::Start((*db)->url(), absl::StrCat("electric_", (*db)->name()),
                            {"wake_registrations", "wakes", "wake_sync_markers"}, **server);
  ASSERT_TRUE(feeder.ok()) << feeder.status();
  auto registry = StartRegistry(
      (*db)->url(), {"--sync=electric", absl::StrCat("--electric-url=", (*server)->url())});
  ASSERT_TRUE(registry.ok()) << registry.status();
  EXPECT_EQ(WaitForHealth(registry->address, "SERVING", kWait), "SERVING");

  std::atomic<bool> reject{true};
  CannedResponse unauthorized;
  unauthorized.status = 401;
  unauthorized.body = R"({"message":"Unauthorized - Invalid API secret"})";
  (*server)->Inject([&reject](const ShapeRequest&) { return reject.load(); }, unauthorized, -1);
  // Ends the long polls now rather than after Electric's 20 s.
  (*server)->Commit("wake_registrations", "delete", {{"id", "0"}});
  EXPECT_EQ(WaitForHealth(registry->address, "NOT_SERVING", kWait), "NOT_SERVING");
  absl::StatusOr<std::string> line = registry->process->WaitForLog("event=sync_failed", kWait);
  ASSERT_TRUE(line.ok()) << line.status();
  EXPECT_THAT(*line, AllOf(HasSubstr("HTTP 401"), HasSubstr("Invalid API secret"),
                           HasSubstr("health=NOT_SERVING")));

  reject = false;
  EXPECT_EQ(WaitForHealth(registry->address, "SERVING", kWait), "SERVING");
  EXPECT_TRUE(registry->process->WaitForLog("event=sync_recovered", kWait).ok());

  registry->process->Signal(SIGTERM);
  EXPECT_EQ(registry->process->WaitForExit(kWait), std::optional<int>(0));
  EXPECT_THAT(registry->process->ReadLog(), HasSubstr("event=electric_sync_stats"));
}

}  // namespace
}  // namespace wake::testing
