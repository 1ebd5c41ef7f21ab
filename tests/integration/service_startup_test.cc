// Both binaries start, serve health and reflection, stop cleanly on SIGTERM,
// apply migrations idempotently, and refuse bad configuration with one clear
// line and a non-zero exit.
#include <signal.h>

#include <pqxx/pqxx>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "registry-service/migrations.h"
#include "tests/support/service_process.h"
#include "tests/support/status_matchers.h"
#include "tests/support/test_database.h"

namespace wake::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kRegistryBinary[] = "registry-service/registry-service";
constexpr char kRuntimeBinary[] = "runtime-service/runtime-service";

// Everything migrations define, in a stable order, to compare before/after.
constexpr char kSchemaQuery[] =
    "SELECT table_name || '.' || column_name || ':' || data_type || ':' || "
    "coalesce(column_default, '') FROM information_schema.columns "
    "WHERE table_schema = 'public' ORDER BY 1";
constexpr char kIndexQuery[] =
    "SELECT indexname || ':' || indexdef FROM pg_indexes WHERE schemaname = 'public' ORDER BY 1";

class ServiceStartupTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto db = TestDatabase::Create();
    ASSERT_TRUE(db.ok()) << db.status();
    db_ = std::move(*db);
  }

  std::unique_ptr<TestDatabase> db_;
};

TEST_F(ServiceStartupTest, RegistryServesHealthAndStopsOnSigterm) {
  auto registry = StartRegistry(db_->url());
  ASSERT_TRUE(registry.ok()) << registry.status();
  EXPECT_THAT(CheckHealth(registry->address, ""), IsOkAndHolds(std::string("SERVING")));
  EXPECT_THAT(CheckHealth(registry->address, "wake.v1.WakeRegistry"),
              IsOkAndHolds(std::string("SERVING")));

  registry->process->Signal(SIGTERM);
  EXPECT_EQ(registry->process->WaitForExit(absl::Seconds(30)), std::optional<int>(0));
  const std::string log = registry->process->ReadLog();
  EXPECT_THAT(log, HasSubstr("event=stopped"));
  // The counters of the store's group commit and of the sync source's barriers.
  EXPECT_THAT(log, HasSubstr("event=group_commit_stats"));
  EXPECT_THAT(log, HasSubstr("event=sync_stats barriers=0 flush_queries=0"));
}

// Scripts wait for `event=serving`; a quiet log level must not hide it (nor
// the stop line), while ordinary info lines stay hidden.
TEST_F(ServiceStartupTest, WarnLogLevelStillPrintsLifecycleLines) {
  auto registry = StartRegistry(db_->url(), {"--log-level=warn"});
  ASSERT_TRUE(registry.ok()) << registry.status();
  registry->process->Signal(SIGTERM);
  EXPECT_EQ(registry->process->WaitForExit(absl::Seconds(30)), std::optional<int>(0));
  const std::string log = registry->process->ReadLog();
  EXPECT_THAT(log, HasSubstr("event=serving"));
  EXPECT_THAT(log, HasSubstr("event=stopped"));
  EXPECT_THAT(log, Not(HasSubstr("event=migrations_done")));
}

TEST_F(ServiceStartupTest, MigrationsAreAppliedOnceAndRerunningChangesNothing) {
  {
    auto registry = StartRegistry(db_->url());
    ASSERT_TRUE(registry.ok()) << registry.status();
    EXPECT_THAT(
        registry->process->ReadLog(),
        HasSubstr(absl::StrCat("event=migrations_done applied=", registry::Migrations().size())));
    registry->process->Signal(SIGTERM);
    ASSERT_EQ(registry->process->WaitForExit(absl::Seconds(30)), std::optional<int>(0));
  }
  const std::string columns = db_->QueryRows(kSchemaQuery);
  const std::string indexes = db_->QueryRows(kIndexQuery);
  const std::string versions = db_->QueryRows("SELECT version, name FROM schema_migrations");
  EXPECT_THAT(columns, HasSubstr("wake_registrations.condition:jsonb"));
  EXPECT_THAT(indexes, HasSubstr("wakes_event_key"));
  EXPECT_EQ(db_->QueryValue("SELECT relreplident FROM pg_class WHERE relname = "
                            "'wake_registrations'"),
            "f");

  // A second start, and a direct second run, apply nothing and change nothing.
  auto registry = StartRegistry(db_->url());
  ASSERT_TRUE(registry.ok()) << registry.status();
  EXPECT_THAT(registry->process->ReadLog(), HasSubstr("event=migrations_done applied=0"));
  pqxx::connection connection(db_->url());
  EXPECT_THAT(registry::ApplyMigrations(connection), IsOkAndHolds(0));
  EXPECT_EQ(db_->QueryRows(kSchemaQuery), columns);
  EXPECT_EQ(db_->QueryRows(kIndexQuery), indexes);
  EXPECT_EQ(db_->QueryRows("SELECT version, name FROM schema_migrations"), versions);
}

TEST_F(ServiceStartupTest, ConcurrentStartsMigrateOnce) {
  auto a = StartRegistry(db_->url());
  auto b = StartRegistry(db_->url());
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(db_->QueryValue("SELECT count(*) FROM schema_migrations"),
            std::to_string(registry::Migrations().size()));
}

TEST_F(ServiceStartupTest, BadFlagsExitNonZeroWithOneClearLine) {
  struct Case {
    std::vector<std::string> args;
    std::map<std::string, std::optional<std::string>> env;
    std::string expected;
  };
  const std::vector<Case> cases = {
      {{"--sync=bogus", "--database-url=" + db_->url()}, {}, "--sync: \"bogus\""},
      {{"--database-url=" + db_->url()}, {}, "--tls-cert, --tls-key: required"},
      {{"--database-url=" + db_->url(), "--plaintext", "--listen=0.0.0.0:0"},
       {},
       "--plaintext: only for a loopback --listen address"},
      {{"--database-url=" + db_->url(), "--plaintext"}, {}, "--auth-tokens: required"},
      {{"--no-such-flag"}, {}, "unknown flag --no-such-flag"},
      {{}, {{"DATABASE_URL", std::nullopt}}, "--database-url: required"},
      {{"--database-url=" + db_->url(), "--startup-timeout=never"}, {}, "--startup-timeout"},
  };
  for (const Case& c : cases) {
    auto process = Subprocess::Start(RunfilePath(kRegistryBinary), c.args, c.env);
    ASSERT_TRUE(process.ok()) << process.status();
    EXPECT_EQ((*process)->WaitForExit(absl::Seconds(30)), std::optional<int>(2)) << c.expected;
    const std::string log = (*process)->ReadLog();
    EXPECT_THAT(log, HasSubstr("registry-service: " + c.expected));
    EXPECT_EQ(std::count(log.begin(), log.end(), '\n'), 1) << log;
  }
  auto runtime = Subprocess::Start(RunfilePath(kRuntimeBinary), {"--lease=forever"});
  ASSERT_TRUE(runtime.ok());
  EXPECT_EQ((*runtime)->WaitForExit(absl::Seconds(30)), std::optional<int>(2));
  EXPECT_THAT((*runtime)->ReadLog(), HasSubstr("runtime-service: --lease"));
}

TEST_F(ServiceStartupTest, UnreachableDatabaseFailsStartupWithinTheTimeout) {
  // Port 1 on loopback: nothing listens there.
  auto process = Subprocess::Start(
      RunfilePath(kRegistryBinary),
      {"--listen=127.0.0.1:0", "--database-url=postgresql://postgres@127.0.0.1:1/none",
       "--startup-timeout=2s", "--plaintext", "--no-auth"});
  ASSERT_TRUE(process.ok());
  // Before giving up it reports NOT_SERVING rather than pretending to be ready.
  auto listening = (*process)->WaitForLog("event=listening", absl::Seconds(30));
  ASSERT_TRUE(listening.ok()) << listening.status();
  EXPECT_THAT(CheckHealth(LogValue(*listening, "address"), ""),
              IsOkAndHolds(std::string("NOT_SERVING")));
  EXPECT_EQ((*process)->WaitForExit(absl::Seconds(30)), std::optional<int>(1));
  const std::string log = (*process)->ReadLog();
  EXPECT_THAT(log, HasSubstr("event=startup_failed"));
  EXPECT_THAT(log, HasSubstr("could not connect to PostgreSQL"));
  EXPECT_THAT(log, Not(HasSubstr("event=serving")));
}

TEST_F(ServiceStartupTest, RuntimeIsNotServingWithoutTheRegistryStreamAndStopsOnSigterm) {
  // The runtime serves only once the registry's change stream is up to date
  // (docs/architecture.md, "The claim protocol": triggers missed meanwhile
  // would otherwise be lost).
  // Port 1 on loopback: no registry listens there. With a registry it is
  // SERVING; the end-to-end tests cover that.
  auto process =
      Subprocess::Start(RunfilePath(kRuntimeBinary),
                        {"--listen=127.0.0.1:0", "--registry=127.0.0.1:1", "--retry-initial=50ms",
                         "--plaintext", "--no-auth", "--registry-plaintext"});
  ASSERT_TRUE(process.ok()) << process.status();
  auto listening = (*process)->WaitForLog("event=listening", absl::Seconds(30));
  ASSERT_TRUE(listening.ok()) << listening.status();
  const std::string address = LogValue(*listening, "address");
  EXPECT_THAT(CheckHealth(address, "wake.v1.WakeRuntime"),
              IsOkAndHolds(std::string("NOT_SERVING")));
  EXPECT_TRUE((*process)->WaitForLog("event=registry_stream_ended", absl::Seconds(30)).ok());

  (*process)->Signal(SIGTERM);
  EXPECT_EQ((*process)->WaitForExit(absl::Seconds(30)), std::optional<int>(0));
  const std::string log = (*process)->ReadLog();
  EXPECT_THAT(log, HasSubstr("event=stopped"));
  EXPECT_THAT(log, Not(HasSubstr("event=serving")));
}

}  // namespace
}  // namespace wake::testing
