#include "runtime-service/runtime_config.h"

#include <cstdlib>
#include <fstream>
#include <map>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/status_matchers.h"

namespace wake::runtime {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;
using ::wake::testing::StatusIs;

// The development setup (plaintext, no authentication) unless `vars` says
// otherwise.
common::EnvLookup Env(std::map<std::string, std::string> vars) {
  vars.emplace("WAKE_PLAINTEXT", "true");
  vars.emplace("WAKE_NO_AUTH", "true");
  vars.emplace("WAKE_REGISTRY_PLAINTEXT", "true");
  return [vars](const std::string& name) -> std::optional<std::string> {
    auto it = vars.find(name);
    if (it == vars.end()) return std::nullopt;
    return it->second;
  };
}

TEST(RuntimeConfigTest, Defaults) {
  auto config = ParseRuntimeConfig({}, Env({}));
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->listen_address, "127.0.0.1:50052");
  EXPECT_EQ(config->registry_address, "127.0.0.1:50051");
  EXPECT_EQ(config->lease, absl::Seconds(30));
  EXPECT_EQ(config->hold_timeout, absl::Seconds(1));
  EXPECT_EQ(config->rescan_interval, absl::Seconds(30));
  EXPECT_FALSE(config->runtime_id.empty());
}

TEST(RuntimeConfigTest, TheRegistryIsReachedOverTlsWithTheRuntimesToken) {
  const std::string dir = std::getenv("TEST_TMPDIR");
  std::ofstream(dir + "/ca.pem") << "CA";
  std::ofstream(dir + "/token") << "t0ken\n";
  auto config = ParseRuntimeConfig(
      {"--registry-plaintext=false", "--registry-ca", dir + "/ca.pem", "--registry-token-file",
       dir + "/token", "--registry-server-name=registry.local"},
      Env({}));
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_FALSE(config->registry.plaintext);
  EXPECT_EQ(config->registry.ca_pem, "CA");
  EXPECT_EQ(config->registry.token, "t0ken");
  EXPECT_EQ(config->registry.server_name, "registry.local");
  EXPECT_EQ(config->registry.max_message_bytes, config->server.max_message_bytes);
  EXPECT_THAT(ParseRuntimeConfig({"--registry=10.1.2.3:50051"}, Env({})),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("--registry-plaintext: only for a loopback --registry")));
  EXPECT_THAT(ParseRuntimeConfig({"--registry-plaintext=false", "--registry-cert", dir + "/ca.pem"},
                                 Env({})),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("give both or neither")));
}

TEST(RuntimeConfigTest, EnvironmentFallbacks) {
  auto config = ParseRuntimeConfig({}, Env({{"WAKE_REGISTRY_ADDR", "127.0.0.1:7001"},
                                            {"WAKE_LEASE", "5s"},
                                            {"WAKE_RUNTIME_ID", "rt-a"},
                                            {"WAKE_HOLD_TIMEOUT", "250ms"},
                                            {"WAKE_RESCAN_INTERVAL", "0"}}));
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->registry_address, "127.0.0.1:7001");
  EXPECT_EQ(config->lease, absl::Seconds(5));
  EXPECT_EQ(config->runtime_id, "rt-a");
  EXPECT_EQ(config->hold_timeout, absl::Milliseconds(250));
  EXPECT_EQ(config->rescan_interval, absl::ZeroDuration());  // Off.
}

TEST(RuntimeConfigTest, BadValuesAreNamed) {
  EXPECT_THAT(ParseRuntimeConfig({"--registry=nohost"}, Env({})),
              StatusIs(absl::StatusCode::kInvalidArgument, StartsWith("--registry")));
  EXPECT_THAT(ParseRuntimeConfig({"--lease=100ms"}, Env({})),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("--lease")));
  EXPECT_THAT(
      ParseRuntimeConfig({}, Env({{"WAKE_LEASE", "forever"}})),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("--lease (from env WAKE_LEASE)")));
  // A held claim is never extended: it must go back before its lease ends.
  EXPECT_THAT(ParseRuntimeConfig({"--lease=2s", "--hold-timeout=2s"}, Env({})),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       StartsWith("--hold-timeout: must be at least 1ms and shorter than "
                                  "--lease (2s), got 2s")));
  EXPECT_THAT(ParseRuntimeConfig({"--hold-timeout=0s"}, Env({})),
              StatusIs(absl::StatusCode::kInvalidArgument, StartsWith("--hold-timeout")));
  EXPECT_THAT(ParseRuntimeConfig({"--rescan-interval=10ms"}, Env({})),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       StartsWith("--rescan-interval: must be 0 (off) or between 100ms and 24h, "
                                  "got 10ms")));
}

}  // namespace
}  // namespace wake::runtime
