#include "common/config.h"

#include <map>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/status_matchers.h"

namespace wake::common {
namespace {

using ::testing::HasSubstr;
using ::wake::testing::IsOkAndHolds;
using ::wake::testing::StatusIs;

EnvLookup FakeEnv(std::map<std::string, std::string> vars) {
  return [vars](const std::string& name) -> std::optional<std::string> {
    auto it = vars.find(name);
    if (it == vars.end()) return std::nullopt;
    return it->second;
  };
}

ConfigParser TestParser() {
  return ConfigParser("svc", {
                                 {"listen", "SVC_LISTEN", "127.0.0.1:1", "address"},
                                 {"database-url", "DATABASE_URL", "", "db"},
                                 {"lease", "SVC_LEASE", "30s", "lease"},
                                 {"pool", "", "8", "pool size"},
                                 {"verbose", "", "false", "more logs", /*is_bool=*/true},
                             });
}

TEST(ConfigTest, DefaultsApplyWhenNothingIsSet) {
  auto values = TestParser().Parse({}, FakeEnv({}));
  ASSERT_TRUE(values.ok()) << values.status();
  EXPECT_EQ(values->GetString("listen"), "127.0.0.1:1");
  EXPECT_EQ(values->SourceOf("listen"), "default");
  EXPECT_THAT(values->GetDuration("lease"), IsOkAndHolds(absl::Seconds(30)));
  EXPECT_THAT(values->GetInt("pool"), IsOkAndHolds(8));
  EXPECT_THAT(values->GetBool("verbose"), IsOkAndHolds(false));
}

TEST(ConfigTest, EnvironmentOverridesDefaultAndFlagOverridesEnvironment) {
  auto values = TestParser().Parse({"--listen=0.0.0.0:9"},
                                   FakeEnv({{"SVC_LISTEN", "1.2.3.4:5"}, {"SVC_LEASE", "2m"}}));
  ASSERT_TRUE(values.ok()) << values.status();
  EXPECT_EQ(values->GetString("listen"), "0.0.0.0:9");
  EXPECT_EQ(values->SourceOf("listen"), "--listen");
  EXPECT_THAT(values->GetDuration("lease"), IsOkAndHolds(absl::Minutes(2)));
  EXPECT_EQ(values->SourceOf("lease"), "env SVC_LEASE");
}

TEST(ConfigTest, SeparateValueAndBareBoolean) {
  auto values = TestParser().Parse({"--database-url", "postgresql://x", "--verbose"}, FakeEnv({}));
  ASSERT_TRUE(values.ok()) << values.status();
  EXPECT_EQ(values->GetString("database-url"), "postgresql://x");
  EXPECT_THAT(values->GetBool("verbose"), IsOkAndHolds(true));
}

TEST(ConfigTest, UnknownFlagIsNamed) {
  EXPECT_THAT(TestParser().Parse({"--nope=1"}, FakeEnv({})),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("unknown flag --nope")));
}

TEST(ConfigTest, MissingValueIsNamed) {
  EXPECT_THAT(TestParser().Parse({"--lease"}, FakeEnv({})),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("--lease: missing value")));
}

TEST(ConfigTest, PositionalArgumentIsRejected) {
  EXPECT_THAT(TestParser().Parse({"stray"}, FakeEnv({})),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("\"stray\"")));
}

TEST(ConfigTest, BadDurationFromEnvironmentNamesFlagAndVariable) {
  auto values = TestParser().Parse({}, FakeEnv({{"SVC_LEASE", "soon"}}));
  ASSERT_TRUE(values.ok());
  EXPECT_THAT(values->GetDuration("lease"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("--lease (from env SVC_LEASE): \"soon\" is not a duration")));
}

TEST(ConfigTest, NegativeDurationIsRejected) {
  auto values = TestParser().Parse({"--lease=-3s"}, FakeEnv({}));
  ASSERT_TRUE(values.ok());
  EXPECT_THAT(values->GetDuration("lease"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("must not be negative")));
}

TEST(ConfigTest, BadIntegerAndBoolean) {
  auto values = TestParser().Parse({"--pool=many", "--verbose=perhaps"}, FakeEnv({}));
  ASSERT_TRUE(values.ok());
  EXPECT_THAT(values->GetInt("pool"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("--pool")));
  EXPECT_THAT(values->GetBool("verbose"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("--verbose")));
}

TEST(ConfigTest, HelpIsReported) {
  auto values = TestParser().Parse({"--help"}, FakeEnv({}));
  ASSERT_TRUE(values.ok());
  EXPECT_TRUE(values->help_requested());
  const std::string usage = TestParser().Usage();
  EXPECT_THAT(usage, HasSubstr("--database-url=VALUE"));
  EXPECT_THAT(usage, HasSubstr("(env DATABASE_URL)"));
}

TEST(ListenAddressTest, AcceptsHostPortForms) {
  EXPECT_TRUE(ValidateListenAddress("listen", "127.0.0.1:50051").ok());
  EXPECT_TRUE(ValidateListenAddress("listen", "0.0.0.0:0").ok());
  EXPECT_TRUE(ValidateListenAddress("listen", "[::1]:7000").ok());
  EXPECT_TRUE(ValidateListenAddress("listen", "localhost:7000").ok());
}

TEST(ListenAddressTest, RejectsMalformedAddresses) {
  EXPECT_THAT(ValidateListenAddress("listen", "50051"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("--listen")));
  EXPECT_THAT(ValidateListenAddress("listen", "host:99999"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("0-65535")));
  EXPECT_THAT(ValidateListenAddress("listen", "::1:80"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("brackets")));
}

}  // namespace
}  // namespace wake::common
