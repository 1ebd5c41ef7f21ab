#include "common/sync/registration.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/status_matchers.h"

namespace wake::sync {
namespace {

using ::testing::HasSubstr;
using ::wake::testing::StatusIs;

TEST(ConditionJsonTest, RunFinishedRoundTrips) {
  Condition condition;
  EXPECT_EQ(ConditionToJson(condition), R"({"on":"runFinished"})");
  auto parsed = ConditionFromJson(R"({"on": "runFinished"})");
  ASSERT_TRUE(parsed.ok());
  EXPECT_EQ(*parsed, condition);
}

TEST(ConditionJsonTest, ChangeIsCanonicalAndRoundTrips) {
  Condition condition;
  condition.kind = ConditionKind::kChange;
  condition.collections = {"inbox", "runs", "inbox"};
  condition.ops = {ChangeOp::kUpdate, ChangeOp::kInsert};
  Canonicalize(condition);
  const std::string json = ConditionToJson(condition);
  EXPECT_EQ(json, R"({"on":"change","collections":["inbox","runs"],"ops":["insert","update"]})");
  // jsonb prints keys in its own order and with spaces.
  auto parsed = ConditionFromJson(
      R"({"on": "change", "ops": ["update", "insert"], "collections": ["runs", "inbox"]})");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(*parsed, condition);
}

TEST(ConditionJsonTest, RunFinishedParsesInAnySpacing) {
  for (const char* json :
       {R"({"on": "runFinished"})", R"({"on":"runFinished"})", R"( { "on" : "runFinished" } )"}) {
    auto parsed = ConditionFromJson(json);
    ASSERT_TRUE(parsed.ok()) << json;
    EXPECT_EQ(parsed->kind, ConditionKind::kRunFinished) << json;
  }
  // The shortcut takes only exact matches: anything else is parsed in full.
  EXPECT_THAT(ConditionFromJson(R"({"on": "runFinished"}x)"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not a JSON object")));
}

TEST(ConditionJsonTest, EmptyFiltersMeanAll) {
  auto parsed = ConditionFromJson(R"({"on":"change"})");
  ASSERT_TRUE(parsed.ok());
  EXPECT_TRUE(parsed->collections.empty());
  EXPECT_TRUE(parsed->ops.empty());
}

TEST(ConditionJsonTest, MalformedIsRejected) {
  EXPECT_THAT(ConditionFromJson("nope"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not a JSON object")));
  EXPECT_THAT(ConditionFromJson(R"({"on":"later"})"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("unknown kind")));
  EXPECT_THAT(ConditionFromJson(R"({"on":"change","ops":["upsert"]})"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("unknown op")));
}

TEST(IdentityKeyTest, DiffersOnEveryUniqueColumn) {
  Registration base;
  base.tenant_id = "t";
  base.subscriber_url = "/s";
  base.source_url = "/x";
  const std::string key = IdentityKey(base);
  Registration other = base;
  other.one_shot = true;
  EXPECT_NE(IdentityKey(other), key);
  other = base;
  other.manifest_key = "m";
  EXPECT_NE(IdentityKey(other), key);
  other = base;
  other.timeout_consumed = true;  // Not part of the key.
  EXPECT_EQ(IdentityKey(other), key);
  other = base;
  other.subscriber_url = "/s|";
  other.source_url = "x";
  EXPECT_NE(IdentityKey(other), key);
}

}  // namespace
}  // namespace wake::sync
