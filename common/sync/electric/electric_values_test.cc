#include "common/sync/electric/electric_values.h"

#include "absl/time/civil_time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/status_matchers.h"

namespace wake::sync {
namespace {

using ::testing::HasSubstr;
using ::wake::testing::IsOkAndHolds;
using ::wake::testing::StatusIs;

absl::Time Utc(int y, int mo, int d, int h, int mi, int s) {
  return absl::FromCivil(absl::CivilSecond(y, mo, d, h, mi, s), absl::UTCTimeZone());
}

nlohmann::json RegistrationValue() {
  return {
      {"id", "42"},
      {"tenant_id", "acme"},
      {"subscriber_url", "/parent/1"},
      {"source_url", "/child/7"},
      {"condition", R"({"on": "change", "ops": ["update", "insert"], "collections": ["inbox"]})"},
      {"debounce_ms", "250"},
      {"timeout_ms", "0"},
      {"one_shot", "t"},
      {"timeout_consumed", "f"},
      {"include_response", "true"},
      {"manifest_key", ""},
      {"created_at", "2026-03-04 05:06:07.123456+00"}};
}

TEST(ElectricValuesTest, IntegersAreStrict) {
  EXPECT_THAT(ParsePgInt8("9223372036854775807"), IsOkAndHolds(INT64_MAX));
  EXPECT_THAT(ParsePgInt8("-12"), IsOkAndHolds(-12));
  EXPECT_THAT(ParsePgInt8("9223372036854775808"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not a bigint")));
  EXPECT_THAT(ParsePgInt8(" 1"), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("\" 1\"")));
  EXPECT_THAT(ParsePgInt4("2147483647"), IsOkAndHolds(2147483647));
  EXPECT_THAT(ParsePgInt4("2147483648"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not an integer")));
  EXPECT_THAT(ParsePgInt4(""), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("integer")));
}

TEST(ElectricValuesTest, Booleans) {
  EXPECT_THAT(ParsePgBool("t"), IsOkAndHolds(true));
  EXPECT_THAT(ParsePgBool("true"), IsOkAndHolds(true));
  EXPECT_THAT(ParsePgBool("f"), IsOkAndHolds(false));
  EXPECT_THAT(ParsePgBool("false"), IsOkAndHolds(false));
  EXPECT_THAT(ParsePgBool("yes"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not a boolean")));
}

TEST(ElectricValuesTest, TimestamptzForms) {
  EXPECT_THAT(ParsePgTimestamptz("2026-03-04 05:06:07+00"), IsOkAndHolds(Utc(2026, 3, 4, 5, 6, 7)));
  EXPECT_THAT(ParsePgTimestamptz("2026-03-04 05:06:07.123456+00"),
              IsOkAndHolds(Utc(2026, 3, 4, 5, 6, 7) + absl::Microseconds(123456)));
  EXPECT_THAT(ParsePgTimestamptz("2026-03-04T05:06:07.5Z"),
              IsOkAndHolds(Utc(2026, 3, 4, 5, 6, 7) + absl::Milliseconds(500)));
  EXPECT_THAT(ParsePgTimestamptz("2026-03-04 10:36:07+05:30"),
              IsOkAndHolds(Utc(2026, 3, 4, 5, 6, 7)));
  EXPECT_THAT(ParsePgTimestamptz("2026-03-04 00:06:07-0500"),
              IsOkAndHolds(Utc(2026, 3, 4, 5, 6, 7)));
  EXPECT_THAT(ParsePgTimestamptz("infinity"), IsOkAndHolds(absl::InfiniteFuture()));
  EXPECT_THAT(ParsePgTimestamptz("-infinity"), IsOkAndHolds(absl::InfinitePast()));
}

TEST(ElectricValuesTest, TimestamptzRejectsNonsense) {
  for (const char* bad : {"2026-02-30 00:00:00+00", "2026-13-01 00:00:00+00", "2026-03-04 05:06:07",
                          "2026-03-04 25:06:07+00", "yesterday", "2026-03-04 05:06:07+00 BC",
                          "2026-03-04 05:06:07.+00"}) {
    EXPECT_THAT(ParsePgTimestamptz(bad),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("timestamptz")))
        << bad;
  }
}

TEST(ElectricValuesTest, LsnInBothNotations) {
  EXPECT_THAT(ParseLsn("0/16B3F70"), IsOkAndHolds(0x16B3F70u));
  EXPECT_THAT(ParseLsn("16/B374D848"), IsOkAndHolds((uint64_t{0x16} << 32) | 0xB374D848u));
  EXPECT_THAT(ParseLsn("25383248"), IsOkAndHolds(25383248u));
  EXPECT_THAT(ParseLsn("0/xyz"), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("LSN")));
  EXPECT_THAT(ParseLsn("-5"), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("LSN")));
  EXPECT_EQ(FormatLsn((uint64_t{0x16} << 32) | 0xB374D848u), "16/B374D848");
}

TEST(ElectricValuesTest, FullRegistrationRow) {
  absl::StatusOr<Registration> r = RegistrationFromShapeValue(RegistrationValue(), true);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->id, 42);
  EXPECT_EQ(r->tenant_id, "acme");
  EXPECT_EQ(r->subscriber_url, "/parent/1");
  EXPECT_EQ(r->source_url, "/child/7");
  EXPECT_EQ(r->condition.kind, ConditionKind::kChange);
  EXPECT_EQ(r->condition.collections, std::vector<std::string>{"inbox"});
  EXPECT_EQ(r->debounce_ms, 250);
  EXPECT_TRUE(r->one_shot);
  EXPECT_FALSE(r->timeout_consumed);
  EXPECT_TRUE(r->include_response);
  EXPECT_EQ(r->created_at, Utc(2026, 3, 4, 5, 6, 7) + absl::Microseconds(123456));
}

TEST(ElectricValuesTest, JsonbMayArriveEmbedded) {
  nlohmann::json value = RegistrationValue();
  value["condition"] = nlohmann::json{{"on", "runFinished"}};
  value["id"] = 42;
  absl::StatusOr<Registration> r = RegistrationFromShapeValue(value, true);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->condition.kind, ConditionKind::kRunFinished);
  EXPECT_EQ(r->id, 42);
}

TEST(ElectricValuesTest, BadColumnsAreNamed) {
  nlohmann::json value = RegistrationValue();
  value["debounce_ms"] = "soon";
  EXPECT_THAT(RegistrationFromShapeValue(value, true),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("wake_registrations.debounce_ms: \"soon\" is not an integer")));
  value = RegistrationValue();
  value.erase("created_at");
  EXPECT_THAT(RegistrationFromShapeValue(value, true),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("wake_registrations.created_at: missing")));
  value = RegistrationValue();
  value["subscriber_url"] = nullptr;
  EXPECT_THAT(
      RegistrationFromShapeValue(value, true),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("subscriber_url: unexpected NULL")));
  EXPECT_THAT(RegistrationFromShapeValue(nlohmann::json::array(), true),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not a JSON object")));
}

TEST(ElectricValuesTest, DeletesNeedOnlyTheId) {
  absl::StatusOr<Registration> r = RegistrationFromShapeValue({{"id", "9"}}, false);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->id, 9);
  EXPECT_THAT(RegistrationFromShapeValue({{"tenant_id", "x"}}, false),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("wake_registrations.id")));
}

TEST(ElectricValuesTest, WakeRowsArePendingWithoutClaimToken) {
  nlohmann::json value = {{"id", "5"},
                          {"tenant_id", "acme"},
                          {"stream", "/parent/1"},
                          {"registration_id", "42"},
                          {"claim_token", nullptr}};
  absl::StatusOr<WakeRow> w = WakeRowFromShapeValue(value, true);
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_EQ(w->id, 5);
  EXPECT_EQ(w->stream, "/parent/1");
  EXPECT_EQ(w->registration_id, 42);
  EXPECT_TRUE(w->pending);
  value["claim_token"] = "tok-1";
  w = WakeRowFromShapeValue(value, true);
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_FALSE(w->pending);
  value.erase("claim_token");
  EXPECT_THAT(WakeRowFromShapeValue(value, true),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("wakes.claim_token")));
}

}  // namespace
}  // namespace wake::sync
