#include "common/auth/token_file_authenticator.h"

#include <cstdlib>
#include <fstream>

#include "common/simulated_time_source.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/status_matchers.h"

namespace wake::common::auth {
namespace {

using ::testing::HasSubstr;
using ::testing::UnorderedElementsAre;
using ::wake::testing::StatusIs;

std::string TempPath(const std::string& name) {
  const char* dir = std::getenv("TEST_TMPDIR");
  return std::string(dir != nullptr ? dir : "/tmp") + "/" + name;
}

void Write(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::trunc);
  out << text;
}

TEST(TokenHashTest, IsTheHexSha256) {
  // sha256("abc"), FIPS 180-2 test vector.
  EXPECT_EQ(TokenHash("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST(ParseTokenFileTest, ReadsPrincipalsRolesTenantsAndExpiry) {
  const std::string text =
      absl::StrCat("# comment\n\n", TokenHash("t1"), " runner-a runner acme,globex\n",
                   TokenHash("t2"), "\truntime-1\truntime\t*\t2030-01-01T00:00:00Z\n");
  absl::StatusOr<TokenTable> table = ParseTokenFile(text);
  ASSERT_TRUE(table.ok()) << table.status();
  ASSERT_EQ(table->size(), 2u);
  const Principal& runner = *table->at(TokenHash("t1"));
  EXPECT_EQ(runner.name, "runner-a");
  EXPECT_EQ(runner.role, Role::kRunner);
  EXPECT_FALSE(runner.all_tenants);
  EXPECT_THAT(runner.tenants, UnorderedElementsAre("acme", "globex"));
  EXPECT_EQ(runner.expires_at, absl::InfiniteFuture());
  const Principal& runtime = *table->at(TokenHash("t2"));
  EXPECT_TRUE(runtime.all_tenants);
  EXPECT_TRUE(runtime.Holds("anything"));
  EXPECT_EQ(runtime.expires_at,
            absl::FromCivil(absl::CivilSecond(2030, 1, 1, 0, 0, 0), absl::UTCTimeZone()));
}

TEST(ParseTokenFileTest, NamesTheLineOfEachMistake) {
  const std::string hash = TokenHash("t");
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"abc runner-a runner acme", "line 1: the hash must be 64 lower-case hex digits"},
      {hash + " runner-a runner", "line 1: expected"},
      {"\n" + hash + " r boss acme", "line 2: role must be client, runner, runtime or admin"},
      {hash + " r runner acme,,b", "line 1: tenants"},
      {hash + " r runner acme,*", "line 1: tenants"},
      {hash + " r runner acme tomorrow", "line 1: expiry is not RFC 3339"},
      {hash + " r runner a\n" + hash + " s runner b", "line 2: the same token hash appears twice"},
  };
  for (const auto& [text, message] : cases) {
    EXPECT_THAT(ParseTokenFile(text),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(message)))
        << text;
  }
}

class TokenFileAuthenticatorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = TempPath("tokens");
    Write(path_, absl::StrCat(TokenHash("good"), " client-a client acme\n", TokenHash("old"),
                              " client-b client acme 2000-01-01T00:00:00Z\n"));
    auto created = TokenFileAuthenticator::Create(path_, time_);
    ASSERT_TRUE(created.ok()) << created.status();
    auth_ = *std::move(created);
  }

  std::string path_;
  SimulatedTimeSource time_;
  std::unique_ptr<TokenFileAuthenticator> auth_;
};

TEST_F(TokenFileAuthenticatorTest, AKnownTokenIsItsPrincipal) {
  absl::StatusOr<PrincipalPtr> principal = auth_->Authenticate("Bearer good");
  ASSERT_TRUE(principal.ok()) << principal.status();
  EXPECT_EQ((*principal)->name, "client-a");
  EXPECT_TRUE(auth_->Authenticate("bearer good").ok());
}

TEST_F(TokenFileAuthenticatorTest, MissingMalformedUnknownAndExpiredAreUnauthenticated) {
  EXPECT_THAT(auth_->Authenticate(std::nullopt),
              StatusIs(absl::StatusCode::kUnauthenticated, HasSubstr("missing credential")));
  EXPECT_THAT(auth_->Authenticate("Basic Z29vZA=="),
              StatusIs(absl::StatusCode::kUnauthenticated, HasSubstr("malformed credential")));
  EXPECT_THAT(auth_->Authenticate("Bearer forged"),
              StatusIs(absl::StatusCode::kUnauthenticated, HasSubstr("unknown, revoked")));
  EXPECT_THAT(auth_->Authenticate("Bearer old"),
              StatusIs(absl::StatusCode::kUnauthenticated, HasSubstr("expired")));
  EXPECT_THAT(auth_->Authenticate("Bearer " + std::string(5000, 'x')),
              StatusIs(absl::StatusCode::kUnauthenticated, HasSubstr("unknown")));
}

TEST_F(TokenFileAuthenticatorTest, AChangedFileIsReadAgainAndABrokenOneIsIgnored) {
  Write(path_, absl::StrCat(TokenHash("new"), " client-c client acme\n"));
  // Not looked at again within the check interval.
  EXPECT_TRUE(auth_->Authenticate("Bearer good").ok());
  time_.Advance(absl::Seconds(1));
  EXPECT_THAT(auth_->Authenticate("Bearer good"),
              StatusIs(absl::StatusCode::kUnauthenticated, HasSubstr("revoked")));
  EXPECT_TRUE(auth_->Authenticate("Bearer new").ok());

  Write(path_, "not a token file at all\n");
  time_.Advance(absl::Seconds(1));
  EXPECT_TRUE(auth_->Authenticate("Bearer new").ok());
}

TEST(TokenFileAuthenticatorCreateTest, AMissingOrBrokenFileFailsStartup) {
  SimulatedTimeSource time;
  EXPECT_THAT(TokenFileAuthenticator::Create(TempPath("absent"), time),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("absent")));
  Write(TempPath("broken"), "x y z\n");
  EXPECT_THAT(TokenFileAuthenticator::Create(TempPath("broken"), time),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("line 1")));
}

TEST(PrincipalTest, RolesAndTenantsAreCheckedWithNamedMessages) {
  Principal runner{"runner-a", Role::kRunner, false, {"acme"}, absl::InfiniteFuture()};
  EXPECT_TRUE(RequireRole(runner, {Role::kRunner, Role::kAdmin}, "AckClaim").ok());
  EXPECT_THAT(RequireRole(runner, {Role::kRuntime, Role::kAdmin}, "ClaimWakes"),
              StatusIs(absl::StatusCode::kPermissionDenied,
                       "ClaimWakes needs the role runtime or admin; principal \"runner-a\" is a "
                       "runner"));
  EXPECT_TRUE(RequireTenant(runner, "acme").ok());
  EXPECT_THAT(RequireTenant(runner, "globex"),
              StatusIs(absl::StatusCode::kPermissionDenied,
                       "tenant_id: principal \"runner-a\" does not hold tenant \"globex\""));
}

}  // namespace
}  // namespace wake::common::auth
