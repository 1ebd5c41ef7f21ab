#include "common/sync/postgres/rows.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/status_matchers.h"

namespace wake::sync::pgrows {
namespace {

using pgoutput::Tuple;
using pgoutput::TupleValue;
using ::testing::HasSubstr;
using ::wake::testing::IsOkAndHolds;
using ::wake::testing::StatusIs;

TupleValue T(const std::string& s) { return {TupleValue::Kind::kText, s}; }
TupleValue N() { return {TupleValue::Kind::kNull, ""}; }
TupleValue U() { return {TupleValue::Kind::kUnchangedToast, ""}; }

absl::Time Utc(int y, int mo, int d, int h, int mi, int s) {
  return absl::FromCivil(absl::CivilSecond(y, mo, d, h, mi, s), absl::UTCTimeZone());
}

// The table's real column order (0001_init.sql).
const std::vector<std::string> kRegistrationColumns = {
    "id",           "tenant_id",  "subscriber_url", "source_url",       "condition",
    "debounce_ms",  "timeout_ms", "one_shot",       "timeout_consumed", "include_response",
    "manifest_key", "created_at"};

Tuple RegistrationRow() {
  return {T("17"),
          T("acme"),
          T("/parent/1"),
          T("/child/7"),
          T(R"({"on": "change", "ops": ["update", "insert"], "collections": ["inbox"]})"),
          T("250"),
          T("0"),
          T("t"),
          T("f"),
          T("t"),
          T("m1"),
          T("2026-03-04 05:06:07.25+00")};
}

TEST(RowsTest, ParsesScalars) {
  EXPECT_THAT(ParseInt64("-9223372036854775808"), IsOkAndHolds(INT64_MIN));
  EXPECT_THAT(ParseInt32("2147483647"), IsOkAndHolds(2147483647));
  EXPECT_THAT(ParseInt32("2147483648"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not an integer")));
  EXPECT_THAT(ParseInt64("12x"), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("bigint")));
  EXPECT_THAT(ParseBool("t"), IsOkAndHolds(true));
  EXPECT_THAT(ParseBool("f"), IsOkAndHolds(false));
  EXPECT_THAT(ParseBool("yes"), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("boolean")));
}

TEST(RowsTest, ParsesIsoTimestamptz) {
  EXPECT_THAT(ParseTimestamptz("2026-03-04 05:06:07+00"), IsOkAndHolds(Utc(2026, 3, 4, 5, 6, 7)));
  EXPECT_THAT(ParseTimestamptz("2026-03-04 05:06:07.123456+00"),
              IsOkAndHolds(Utc(2026, 3, 4, 5, 6, 7) + absl::Microseconds(123456)));
  EXPECT_THAT(ParseTimestamptz("2026-03-04 05:06:07.5+00"),
              IsOkAndHolds(Utc(2026, 3, 4, 5, 6, 7) + absl::Milliseconds(500)));
  EXPECT_THAT(ParseTimestamptz("2026-03-04 10:36:07+05:30"),
              IsOkAndHolds(Utc(2026, 3, 4, 5, 6, 7)));
  EXPECT_THAT(ParseTimestamptz("2026-03-04 01:36:07-03:30"),
              IsOkAndHolds(Utc(2026, 3, 4, 5, 6, 7)));
  EXPECT_THAT(ParseTimestamptz("1900-01-01 00:00:00-00:17:30"),
              IsOkAndHolds(Utc(1900, 1, 1, 0, 17, 30)));
  EXPECT_THAT(
      ParseTimestamptz("0044-03-15 12:00:00+00 BC"),
      IsOkAndHolds(absl::FromCivil(absl::CivilSecond(-43, 3, 15, 12, 0, 0), absl::UTCTimeZone())));
  EXPECT_THAT(ParseTimestamptz("infinity"), IsOkAndHolds(absl::InfiniteFuture()));
  EXPECT_THAT(ParseTimestamptz("-infinity"), IsOkAndHolds(absl::InfinitePast()));
  for (const char* bad :
       {"", "2026-03-04", "2026-03-04 05:06:07", "2026-3-04 05:06:07+00", "2026-02-30 05:06:07+00",
        "2026-03-04T05:06:07+00", "2026-03-04 05:06:07.1234567+00", "2026-03-04 05:06:07+00 junk",
        "Tue Mar 04 05:06:07 2026 UTC"}) {
    EXPECT_THAT(ParseTimestamptz(bad),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("timestamptz")))
        << bad;
  }
}

TEST(RowsTest, DecodesACompleteRegistration) {
  const RowLayout layout(SyncTable::kRegistrations, kRegistrationColumns);
  ASSERT_TRUE(layout.CheckComplete().ok());
  absl::StatusOr<Registration> r =
      DecodeRegistration(layout, RegistrationRow(), nullptr, RowNeed::kComplete);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->id, 17);
  EXPECT_EQ(r->tenant_id, "acme");
  EXPECT_EQ(r->subscriber_url, "/parent/1");
  EXPECT_EQ(r->source_url, "/child/7");
  EXPECT_EQ(r->condition.kind, ConditionKind::kChange);
  EXPECT_EQ(r->condition.collections, std::vector<std::string>{"inbox"});
  EXPECT_EQ(r->condition.ops, (std::vector<ChangeOp>{ChangeOp::kInsert, ChangeOp::kUpdate}));
  EXPECT_EQ(r->debounce_ms, 250);
  EXPECT_EQ(r->timeout_ms, 0);
  EXPECT_TRUE(r->one_shot);
  EXPECT_FALSE(r->timeout_consumed);
  EXPECT_TRUE(r->include_response);
  EXPECT_EQ(r->manifest_key, "m1");
  EXPECT_EQ(r->created_at, Utc(2026, 3, 4, 5, 6, 7) + absl::Milliseconds(250));
}

TEST(RowsTest, MatchesColumnsByNameWhateverTheOrderAndExtras) {
  std::vector<std::string> columns = kRegistrationColumns;
  Tuple row = RegistrationRow();
  std::reverse(columns.begin(), columns.end());
  std::reverse(row.begin(), row.end());
  columns.push_back("added_later");
  row.push_back(T("whatever"));
  absl::StatusOr<Registration> r = DecodeRegistration(RowLayout(SyncTable::kRegistrations, columns),
                                                      row, nullptr, RowNeed::kComplete);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->id, 17);
  EXPECT_EQ(r->manifest_key, "m1");
}

TEST(RowsTest, UnchangedToastComesFromTheOldRow) {
  const RowLayout layout(SyncTable::kRegistrations, kRegistrationColumns);
  Tuple new_row = RegistrationRow();
  new_row[3] = U();  // source_url unchanged and TOASTed
  new_row[8] = T("t");
  Tuple old_row = RegistrationRow();
  old_row[3] = T("/a/very/long/source");
  absl::StatusOr<Registration> r =
      DecodeRegistration(layout, new_row, &old_row, RowNeed::kComplete);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->source_url, "/a/very/long/source");
  EXPECT_TRUE(r->timeout_consumed);

  // Without an old row the value is unknown: NOT_FOUND, not bad data.
  EXPECT_THAT(DecodeRegistration(layout, new_row, nullptr, RowNeed::kComplete),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("source_url")));
}

TEST(RowsTest, ReportsBadOrMissingRegistrationValues) {
  const RowLayout layout(SyncTable::kRegistrations, kRegistrationColumns);
  Tuple row = RegistrationRow();
  row[4] = T(R"({"on":"sometimes"})");
  EXPECT_THAT(DecodeRegistration(layout, row, nullptr, RowNeed::kComplete),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("condition")));
  row = RegistrationRow();
  row[5] = N();
  EXPECT_THAT(DecodeRegistration(layout, row, nullptr, RowNeed::kComplete),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("debounce_ms: null")));
  row = RegistrationRow();
  row[7] = T("maybe");
  EXPECT_THAT(DecodeRegistration(layout, row, nullptr, RowNeed::kComplete),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("one_shot")));

  const RowLayout missing(SyncTable::kRegistrations, {"id", "tenant_id"});
  EXPECT_THAT(missing.CheckComplete(),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("subscriber_url")));
}

TEST(RowsTest, KeyOnlyRegistrationDeleteKeepsTheId) {
  const RowLayout layout(SyncTable::kRegistrations, kRegistrationColumns);
  Tuple key(12, N());
  key[0] = T("99");
  absl::StatusOr<Registration> r = DecodeRegistration(layout, key, nullptr, RowNeed::kKey);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->id, 99);
  EXPECT_EQ(r->subscriber_url, "");
  key[0] = N();
  EXPECT_THAT(DecodeRegistration(layout, key, nullptr, RowNeed::kKey),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("id: null")));
}

const std::vector<std::string> kWakeColumns = {
    "id",        "tenant_id",           "stream",           "registration_id", "source_event_key",
    "message",   "run_finished_status", "include_response", "created_at",      "claim_token",
    "claimed_at"};

Tuple WakeTuple(const TupleValue& claim_token) {
  return {T("5"),      T("acme"), T("/parent/1"),
          T("17"),     T("k"),    T("{}"),
          N(),         T("t"),    T("2026-03-04 05:06:07+00"),
          claim_token, N()};
}

TEST(RowsTest, DecodesWakesFromTheStreamAndTheSnapshot) {
  const RowLayout stream(SyncTable::kWakes, kWakeColumns);
  ASSERT_TRUE(stream.CheckComplete().ok());
  absl::StatusOr<WakeRow> pending = DecodeWake(stream, WakeTuple(N()), nullptr, RowNeed::kComplete);
  ASSERT_TRUE(pending.ok()) << pending.status();
  EXPECT_EQ(pending->id, 5);
  EXPECT_EQ(pending->tenant_id, "acme");
  EXPECT_EQ(pending->stream, "/parent/1");
  EXPECT_EQ(pending->registration_id, 17);
  EXPECT_TRUE(pending->pending);
  absl::StatusOr<WakeRow> claimed =
      DecodeWake(stream, WakeTuple(T("tok")), nullptr, RowNeed::kComplete);
  ASSERT_TRUE(claimed.ok()) << claimed.status();
  EXPECT_FALSE(claimed->pending);

  const RowLayout snapshot(SyncTable::kWakes,
                           {"id", "tenant_id", "stream", "registration_id", "pending"});
  ASSERT_TRUE(snapshot.CheckComplete().ok());
  absl::StatusOr<WakeRow> w =
      DecodeWake(snapshot, {T("6"), T("t1"), T("s"), T("2"), T("f")}, nullptr, RowNeed::kComplete);
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_EQ(w->id, 6);
  EXPECT_FALSE(w->pending);
}

TEST(RowsTest, WakeGapsComeFromThePreviousState) {
  const RowLayout layout(SyncTable::kWakes, kWakeColumns);
  WakeRow previous{5, "acme", "/parent/1", 17, true};
  // Update leaving a TOASTed stream out, claiming the wake.
  Tuple update = WakeTuple(T("tok"));
  update[2] = U();
  absl::StatusOr<WakeRow> w = DecodeWake(layout, update, &previous, RowNeed::kComplete);
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_EQ(w->stream, "/parent/1");
  EXPECT_FALSE(w->pending);
  EXPECT_THAT(DecodeWake(layout, update, nullptr, RowNeed::kComplete),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("stream")));

  // Key-only delete: only the id is in the row.
  Tuple key(kWakeColumns.size(), N());
  key[0] = T("5");
  previous.pending = false;
  absl::StatusOr<WakeRow> deleted = DecodeWake(layout, key, &previous, RowNeed::kKey);
  ASSERT_TRUE(deleted.ok()) << deleted.status();
  EXPECT_EQ(deleted->tenant_id, "acme");
  EXPECT_EQ(deleted->stream, "/parent/1");
  EXPECT_FALSE(deleted->pending);
  absl::StatusOr<WakeRow> unknown = DecodeWake(layout, key, nullptr, RowNeed::kKey);
  ASSERT_TRUE(unknown.ok()) << unknown.status();
  EXPECT_EQ(unknown->id, 5);
}

}  // namespace
}  // namespace wake::sync::pgrows
