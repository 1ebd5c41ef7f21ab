#include "common/server_config.h"

#include <cstdlib>
#include <fstream>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/status_matchers.h"

namespace wake::common {
namespace {

using ::testing::HasSubstr;
using ::wake::testing::StatusIs;

std::string TempFile(const std::string& name, const std::string& text) {
  const std::string path = std::string(std::getenv("TEST_TMPDIR")) + "/" + name;
  std::ofstream(path) << text;
  return path;
}

absl::StatusOr<ServerConfig> Parse(const std::vector<std::string>& args,
                                   const std::string& listen = "127.0.0.1:0") {
  ConfigParser parser("svc", ServerFlagSpecs());
  absl::StatusOr<ConfigValues> values =
      parser.Parse(args, [](const std::string&) { return std::nullopt; });
  if (!values.ok()) return values.status();
  return ParseServerConfig(*values, listen);
}

TEST(ServerConfigTest, TlsAndAuthenticationAreTheDefault) {
  EXPECT_THAT(Parse({}), StatusIs(absl::StatusCode::kInvalidArgument,
                                  HasSubstr("--tls-cert, --tls-key: required")));
  const std::string cert = TempFile("cert.pem", "CERT");
  const std::string key = TempFile("key.pem", "KEY");
  EXPECT_THAT(Parse({"--tls-cert", cert, "--tls-key", key}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("--auth-tokens: required")));
  absl::StatusOr<ServerConfig> config =
      Parse({"--tls-cert", cert, "--tls-key", key, "--auth-tokens", "/tokens"}, "0.0.0.0:1");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_FALSE(config->plaintext);
  EXPECT_EQ(config->tls_cert_pem, "CERT");
  EXPECT_EQ(config->tls_key_pem, "KEY");
  EXPECT_EQ(config->max_message_bytes, 4 << 20);
  EXPECT_THAT(Parse({"--tls-cert", "/nope", "--tls-key", key, "--no-auth"}),
              StatusIs(absl::StatusCode::kInvalidArgument, "--tls-cert: cannot read /nope"));
}

TEST(ServerConfigTest, PlaintextAndNoAuthOnlyOnLoopback) {
  EXPECT_TRUE(Parse({"--plaintext", "--no-auth"}, "127.0.0.1:50051").ok());
  EXPECT_TRUE(Parse({"--plaintext", "--no-auth"}, "[::1]:50051").ok());
  EXPECT_THAT(Parse({"--plaintext", "--no-auth"}, "0.0.0.0:50051"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("--plaintext: only for a loopback --listen address")));
  const std::string cert = TempFile("cert.pem", "CERT");
  EXPECT_THAT(Parse({"--tls-cert", cert, "--tls-key", cert, "--no-auth"}, "10.0.0.1:1"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("--no-auth: only for a loopback --listen address")));
  EXPECT_THAT(Parse({"--plaintext", "--no-auth", "--public-health=false"}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("needs TLS")));
}

TEST(ServerConfigTest, LimitsAreBounded) {
  EXPECT_THAT(Parse({"--plaintext", "--no-auth", "--max-message-bytes=10"}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("--max-message-bytes: must be between")));
  EXPECT_THAT(Parse({"--plaintext", "--no-auth", "--max-concurrent-streams=0"}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("--max-concurrent-streams: must be between")));
}

TEST(ReadFlagFileTest, DropsOneTrailingNewline) {
  EXPECT_THAT(ReadFlagFile("x", TempFile("secret", "s3cret\n")),
              ::wake::testing::IsOkAndHolds("s3cret"));
}

}  // namespace
}  // namespace wake::common
