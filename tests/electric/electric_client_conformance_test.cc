// The scripted Electric checked from the other side: Electric's own
// TypeScript client (@electric-sql/client, tests/electric/conformance/
// sync.mjs under node) syncs a shape the peer serves from a real PostgreSQL
// (through pgoutput) — initial sync, live inserts, updates and deletes, a
// 409 must-refetch after the shape is replaced — without an error, and ends
// with the rows PostgreSQL has. scripts/test.sh installs the client (npm ci)
// and passes its folder as WAKE_ELECTRIC_CLIENT_DIR.
#include <signal.h>

#include <cstdlib>
#include <pqxx/pqxx>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/sync/electric/electric_values.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "registry-service/migrations.h"
#include "tests/electric/pgoutput_feeder.h"
#include "tests/electric/scripted_electric_server.h"
#include "tests/support/subprocess.h"
#include "tests/support/test_database.h"

namespace wake::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kTable[] = "wake_registrations";
constexpr absl::Duration kWait = absl::Seconds(30);

std::string EnvOr(const char* name, const std::string& fallback) {
  const char* value = std::getenv(name);
  return value != nullptr && *value != '\0' ? value : fallback;
}

class ElectricClientConformanceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    client_dir_ = EnvOr("WAKE_ELECTRIC_CLIENT_DIR", "");
    ASSERT_FALSE(client_dir_.empty())
        << "WAKE_ELECTRIC_CLIENT_DIR is not set: run this test through scripts/test.sh, "
           "which installs @electric-sql/client (tests/electric/conformance)";
    auto db = TestDatabase::Create();
    ASSERT_TRUE(db.ok()) << db.status();
    db_ = std::move(*db);
    writer_ = std::make_unique<pqxx::connection>(db_->url());
    ASSERT_TRUE(registry::ApplyMigrations(*writer_).ok());
    auto server = ScriptedElectricServer::Start();
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
    server_->CreateShape(kTable, "reg-1");
    auto feeder = PgoutputFeeder::Start(db_->url(), absl::StrCat("electric_", db_->name()),
                                        {kTable}, *server_);
    ASSERT_TRUE(feeder.ok()) << feeder.status();
    feeder_ = std::move(*feeder);
  }

  void TearDown() override {
    node_.reset();
    feeder_.reset();
    server_.reset();
  }

  void Exec(const std::string& sql) {
    pqxx::work tx(*writer_);
    tx.exec0(sql);
    tx.commit();
  }

  void Insert(int id) {
    Exec(
        absl::StrCat("INSERT INTO wake_registrations (id, subscriber_url, source_url, "
                     "condition) VALUES (",
                     id, ", '/parent/", id, "', '/child/", id, "', '{\"on\":\"runFinished\"}')"));
  }

  // What the client must hold: PostgreSQL's rows, printed as sync.mjs does.
  std::string Expected() {
    pqxx::nontransaction tx(*writer_);
    nlohmann::json rows = nlohmann::json::array();
    for (const pqxx::row& row :
         tx.exec("SELECT id::text, subscriber_url, source_url, timeout_consumed::text "
                 "FROM wake_registrations ORDER BY id")) {
      rows.push_back({row[0].c_str(), row[1].c_str(), row[2].c_str(), row[3].c_str()});
    }
    return absl::StrCat("state ", rows.dump());
  }

  // The snapshot Electric's initial query would take now (shapes/querying.ex).
  std::vector<nlohmann::json> SnapshotRows() {
    pqxx::nontransaction tx(*writer_);
    std::vector<std::string> texts;
    for (const std::string& c : sync::RegistrationShapeColumns()) {
      texts.push_back(absl::StrCat(c, "::text"));
    }
    std::vector<nlohmann::json> rows;
    for (const pqxx::row& row : tx.exec(absl::StrCat("SELECT ", absl::StrJoin(texts, ", "),
                                                     " FROM wake_registrations ORDER BY id"))) {
      nlohmann::json value = nlohmann::json::object();
      for (size_t i = 0; i < sync::RegistrationShapeColumns().size(); ++i) {
        const int c = static_cast<int>(i);
        value[sync::RegistrationShapeColumns()[i]] =
            row[c].is_null() ? nlohmann::json(nullptr) : nlohmann::json(row[c].c_str());
      }
      rows.push_back(std::move(value));
    }
    return rows;
  }

  void WaitForState() {
    const std::string expected = Expected();
    absl::StatusOr<std::string> line = node_->WaitForLog(expected + "\n", kWait);
    ASSERT_TRUE(line.ok()) << "the client never held " << expected << "\nits output:\n"
                           << node_->ReadLog();
  }

  std::string client_dir_;
  std::unique_ptr<TestDatabase> db_;
  std::unique_ptr<pqxx::connection> writer_;
  std::unique_ptr<ScriptedElectricServer> server_;
  std::unique_ptr<PgoutputFeeder> feeder_;
  std::unique_ptr<Subprocess> node_;
};

TEST_F(ElectricClientConformanceTest, TheTypeScriptClientSyncsThePeerLikeElectric) {
  for (int id = 1; id <= 3; ++id) Insert(id);
  server_->Rotate(kTable, "reg-2", SnapshotRows());

  auto node = Subprocess::Start(EnvOr("WAKE_NODE", "/usr/bin/node"),
                                {absl::StrCat(client_dir_, "/sync.mjs"), server_->url(), kTable,
                                 absl::StrJoin(sync::RegistrationShapeColumns(), ",")},
                                {{"NODE_PATH", absl::StrCat(client_dir_, "/node_modules")}});
  ASSERT_TRUE(node.ok()) << node.status();
  node_ = std::move(*node);

  // Initial sync: the snapshot, then up to date.
  ASSERT_NO_FATAL_FAILURE(WaitForState());

  // Live: an insert, an update and a delete in one transaction, then another.
  Exec(
      "BEGIN; INSERT INTO wake_registrations (id, subscriber_url, source_url, condition) "
      "VALUES (4, '/parent/4', '/child/4', '{}'); UPDATE wake_registrations SET "
      "timeout_consumed = true WHERE id = 1; DELETE FROM wake_registrations WHERE id = 2; "
      "COMMIT");
  Insert(5);
  ASSERT_NO_FATAL_FAILURE(WaitForState());

  // The shape is replaced (Electric's shape rotation): 409, must-refetch, a
  // fresh snapshot, and live changes after it.
  server_->Rotate(kTable, "reg-3", SnapshotRows());
  Insert(6);
  Exec("UPDATE wake_registrations SET source_url = '/child/33' WHERE id = 3");
  ASSERT_TRUE(node_->WaitForLog("must-refetch", kWait).ok()) << node_->ReadLog();
  ASSERT_NO_FATAL_FAILURE(WaitForState());

  node_->Signal(SIGTERM);
  EXPECT_EQ(node_->WaitForExit(kWait), std::optional<int>(0)) << node_->ReadLog();
  const std::string log = node_->ReadLog();
  EXPECT_THAT(log, Not(HasSubstr("error "))) << log;
  EXPECT_THAT(log, HasSubstr("done changes="));
  // It really went through the 409.
  size_t conflicts = 0;
  for (const ShapeRequest& r : server_->Requests()) conflicts += r.status == 409 ? 1 : 0;
  EXPECT_GE(conflicts, 1u);
}

}  // namespace
}  // namespace wake::testing
