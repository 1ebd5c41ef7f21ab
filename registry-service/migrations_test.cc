#include "registry-service/migrations.h"

#include "gtest/gtest.h"

namespace wake::registry {
namespace {

TEST(MigrationsTest, EmbeddedInVersionOrderWithTheCoreTables) {
  const std::vector<Migration>& migrations = Migrations();
  ASSERT_FALSE(migrations.empty());
  for (size_t i = 0; i < migrations.size(); ++i) {
    EXPECT_EQ(migrations[i].version, static_cast<int>(i) + 1) << migrations[i].name;
  }
  const std::string& init = migrations.front().sql;
  EXPECT_NE(init.find("CREATE TABLE IF NOT EXISTS wake_registrations"), std::string::npos);
  EXPECT_NE(init.find("REPLICA IDENTITY FULL"), std::string::npos);
  EXPECT_NE(init.find("CONSTRAINT wakes_event_key UNIQUE (tenant_id, registration_id, "
                      "source_event_key)"),
            std::string::npos);
  EXPECT_NE(init.find("CREATE TABLE IF NOT EXISTS stream_claims"), std::string::npos);
}

}  // namespace
}  // namespace wake::registry
