#include "registry-service/registry_config.h"

#include <cstdlib>
#include <fstream>
#include <map>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/status_matchers.h"

namespace wake::registry {
namespace {

using ::testing::HasSubstr;
using ::wake::testing::StatusIs;

common::EnvLookup Env(std::map<std::string, std::string> vars) {
  return [vars](const std::string& name) -> std::optional<std::string> {
    auto it = vars.find(name);
    if (it == vars.end()) return std::nullopt;
    return it->second;
  };
}

const std::map<std::string, std::string> kDb = {{"DATABASE_URL", "postgresql://u@127.0.0.1/w"},
                                                {"WAKE_PLAINTEXT", "true"},
                                                {"WAKE_NO_AUTH", "true"}};

TEST(RegistryConfigTest, DefaultsWithDatabaseFromEnvironment) {
  auto config = ParseRegistryConfig({}, Env(kDb));
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->listen_address, "127.0.0.1:50051");
  EXPECT_EQ(config->database_url, "postgresql://u@127.0.0.1/w");
  EXPECT_EQ(config->sync, SyncSourceKind::kPostgres);
  EXPECT_EQ(config->startup_timeout, absl::Seconds(60));
  EXPECT_EQ(config->write_confirm_timeout, absl::Seconds(2));
  EXPECT_EQ(config->db_pool_size, 16);
  EXPECT_TRUE(config->tenant.empty());
  EXPECT_EQ(config->event_key_retention, absl::Hours(24));
  EXPECT_EQ(config->offset_key_retention, absl::Hours(1));
}

TEST(RegistryConfigTest, KeyRetentionsFromFlagsOrEnvironment) {
  auto env = kDb;
  env["WAKE_OFFSET_KEY_RETENTION"] = "10m";
  auto config = ParseRegistryConfig({"--event-key-retention=48h"}, Env(env));
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->event_key_retention, absl::Hours(48));
  EXPECT_EQ(config->offset_key_retention, absl::Minutes(10));
  EXPECT_THAT(ParseRegistryConfig({"--event-key-retention=5s"}, Env(kDb)),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("--event-key-retention")));
}

TEST(RegistryConfigTest, SecretsAndTheDatabaseUrlComeFromFiles) {
  const std::string dir = std::getenv("TEST_TMPDIR");
  std::ofstream(dir + "/url") << "postgresql://u:pw@127.0.0.1/w\n";
  std::ofstream(dir + "/secret") << "s3cret\n";
  auto env = kDb;
  env.erase("DATABASE_URL");
  auto config = ParseRegistryConfig(
      {"--database-url-file", dir + "/url", "--electric-secret-file", dir + "/secret"}, Env(env));
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->database_url, "postgresql://u:pw@127.0.0.1/w");
  EXPECT_EQ(config->electric_secret, "s3cret");
  EXPECT_THAT(ParseRegistryConfig({"--database-url-file", dir + "/url"}, Env(kDb)),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not both")));
  EXPECT_THAT(ParseRegistryConfig({"--electric-secret-file", dir + "/none"}, Env(kDb)),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("--electric-secret-file: cannot read")));
}

TEST(RegistryConfigTest, SizeLimitsFitInsideEachOther) {
  auto config = ParseRegistryConfig({}, Env(kDb));
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->max_wake_bytes, 2 << 20);
  EXPECT_LE(config->max_claim_bytes, config->server.max_message_bytes - (64 << 10));
  EXPECT_THAT(ParseRegistryConfig({"--max-claim-bytes=8388608"}, Env(kDb)),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("--max-claim-bytes")));
  EXPECT_THAT(
      ParseRegistryConfig({"--max-claim-bytes=1048576", "--max-wake-bytes=2097152"}, Env(kDb)),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("--max-wake-bytes")));
  EXPECT_TRUE(
      ParseRegistryConfig({"--max-message-bytes=16777216", "--max-claim-bytes=8388608"}, Env(kDb))
          .ok());
}

TEST(RegistryConfigTest, DatabaseUrlIsRequired) {
  EXPECT_THAT(ParseRegistryConfig({}, Env({{"WAKE_PLAINTEXT", "true"}})),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("--database-url: required")));
}

TEST(RegistryConfigTest, UnknownSyncSourceIsNamed) {
  EXPECT_THAT(ParseRegistryConfig({"--sync=kafka"}, Env(kDb)),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("--sync: \"kafka\"")));
}

TEST(RegistryConfigTest, ElectricNeedsAnHttpUrl) {
  EXPECT_THAT(ParseRegistryConfig({"--sync=electric"}, Env(kDb)),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("--electric-url: required")));
  EXPECT_THAT(ParseRegistryConfig({"--sync=electric", "--electric-url=ftp://x"}, Env(kDb)),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("http(s)://")));
  auto env = kDb;
  env["WAKE_SYNC"] = "electric";
  env["ELECTRIC_URL"] = "http://127.0.0.1:3000";
  env["ELECTRIC_SECRET"] = "s3cret";
  auto config = ParseRegistryConfig({}, Env(env));
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->sync, SyncSourceKind::kElectric);
  EXPECT_EQ(config->electric_url, "http://127.0.0.1:3000");
  EXPECT_EQ(config->electric_secret, "s3cret");
}

TEST(RegistryConfigTest, RangesAreChecked) {
  EXPECT_THAT(ParseRegistryConfig({"--startup-timeout=0s"}, Env(kDb)),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("--startup-timeout")));
  EXPECT_THAT(ParseRegistryConfig({"--db-pool-size=0"}, Env(kDb)),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("--db-pool-size")));
  EXPECT_THAT(ParseRegistryConfig({"--log-level=chatty"}, Env(kDb)),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("--log-level")));
  EXPECT_THAT(ParseRegistryConfig({"--listen=nowhere"}, Env(kDb)),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("--listen")));
}

TEST(RegistryConfigTest, HelpSkipsValidation) {
  auto config = ParseRegistryConfig({"--help"}, Env({}));
  ASSERT_TRUE(config.ok());
  EXPECT_TRUE(config->help_requested);
  EXPECT_THAT(RegistryUsage(), HasSubstr("--database-url"));
}

}  // namespace
}  // namespace wake::registry
