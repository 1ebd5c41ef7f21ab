#include "common/sync/postgres/pgoutput.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/status_matchers.h"

namespace wake::sync::pgoutput {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::wake::testing::IsOkAndHolds;
using ::wake::testing::StatusIs;

// Builds messages byte by byte, the way the walsender lays them out.
class Bytes {
 public:
  Bytes& U8(uint8_t v) {
    out_.push_back(static_cast<char>(v));
    return *this;
  }
  Bytes& Int(uint64_t v, int width) {
    for (int i = width - 1; i >= 0; --i) out_.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
    return *this;
  }
  Bytes& I16(int16_t v) { return Int(static_cast<uint16_t>(v), 2); }
  Bytes& I32(int32_t v) { return Int(static_cast<uint32_t>(v), 4); }
  Bytes& I64(int64_t v) { return Int(static_cast<uint64_t>(v), 8); }
  Bytes& Str(const std::string& s) {
    out_ += s;
    out_.push_back('\0');
    return *this;
  }
  Bytes& Raw(const std::string& s) {
    out_ += s;
    return *this;
  }
  // Tuple value helpers.
  Bytes& Text(const std::string& s) { return U8('t').I32(static_cast<int32_t>(s.size())).Raw(s); }
  Bytes& Null() { return U8('n'); }
  Bytes& Unchanged() { return U8('u'); }

  const std::string& str() const { return out_; }

 private:
  std::string out_;
};

TupleValue T(const std::string& s) { return {TupleValue::Kind::kText, s}; }
TupleValue N() { return {TupleValue::Kind::kNull, ""}; }
TupleValue U() { return {TupleValue::Kind::kUnchangedToast, ""}; }

TEST(PgOutputTest, DecodesBegin) {
  const std::string data =
      Bytes().U8('B').Int(0x16B374D848ULL, 8).I64(774000000123).I32(0x7654321).str();
  absl::StatusOr<Message> m = DecodeMessage(data);
  ASSERT_TRUE(m.ok()) << m.status();
  const auto& begin = std::get<Begin>(*m);
  EXPECT_EQ(begin.final_lsn, 0x16B374D848ULL);
  EXPECT_EQ(begin.commit_time, 774000000123);
  EXPECT_EQ(begin.xid, 0x7654321u);
}

TEST(PgOutputTest, DecodesCommit) {
  const std::string data = Bytes().U8('C').U8(0).Int(0x100, 8).Int(0x128, 8).I64(5).str();
  absl::StatusOr<Message> m = DecodeMessage(data);
  ASSERT_TRUE(m.ok()) << m.status();
  const auto& commit = std::get<Commit>(*m);
  EXPECT_EQ(commit.commit_lsn, 0x100u);
  EXPECT_EQ(commit.end_lsn, 0x128u);
  EXPECT_EQ(commit.commit_time, 5);
}

TEST(PgOutputTest, DecodesRelation) {
  const std::string data = Bytes()
                               .U8('R')
                               .I32(16385)
                               .Str("public")
                               .Str("wake_registrations")
                               .U8('f')
                               .I16(2)
                               .U8(1)
                               .Str("id")
                               .I32(20)
                               .I32(-1)
                               .U8(0)
                               .Str("tenant_id")
                               .I32(25)
                               .I32(-1)
                               .str();
  absl::StatusOr<Message> m = DecodeMessage(data);
  ASSERT_TRUE(m.ok()) << m.status();
  const auto& rel = std::get<Relation>(*m);
  EXPECT_EQ(rel.id, 16385u);
  EXPECT_EQ(rel.schema, "public");
  EXPECT_EQ(rel.name, "wake_registrations");
  EXPECT_EQ(rel.replica_identity, 'f');
  ASSERT_EQ(rel.columns.size(), 2u);
  EXPECT_EQ(rel.columns[0].name, "id");
  EXPECT_TRUE(rel.columns[0].part_of_key);
  EXPECT_EQ(rel.columns[0].type_oid, 20u);
  EXPECT_EQ(rel.columns[1].name, "tenant_id");
  EXPECT_FALSE(rel.columns[1].part_of_key);
  EXPECT_EQ(rel.columns[1].type_modifier, -1);
}

TEST(PgOutputTest, DecodesInsertWithTextAndNull) {
  const std::string data =
      Bytes().U8('I').I32(16385).U8('N').I16(3).Text("42").Null().Text("").str();
  absl::StatusOr<Message> m = DecodeMessage(data);
  ASSERT_TRUE(m.ok()) << m.status();
  const auto& insert = std::get<Insert>(*m);
  EXPECT_EQ(insert.relation_id, 16385u);
  EXPECT_THAT(insert.new_tuple, ElementsAre(T("42"), N(), T("")));
}

TEST(PgOutputTest, DecodesUpdateWithOldRowAndUnchangedToast) {
  const std::string data = Bytes()
                               .U8('U')
                               .I32(7)
                               .U8('O')
                               .I16(2)
                               .Text("1")
                               .Text("long value")
                               .U8('N')
                               .I16(2)
                               .Text("1")
                               .Unchanged()
                               .str();
  absl::StatusOr<Message> m = DecodeMessage(data);
  ASSERT_TRUE(m.ok()) << m.status();
  const auto& update = std::get<Update>(*m);
  EXPECT_EQ(update.relation_id, 7u);
  ASSERT_TRUE(update.old_tuple.has_value());
  EXPECT_FALSE(update.old_is_key);
  EXPECT_THAT(*update.old_tuple, ElementsAre(T("1"), T("long value")));
  EXPECT_THAT(update.new_tuple, ElementsAre(T("1"), U()));
}

TEST(PgOutputTest, DecodesUpdateWithoutOldRow) {
  const std::string data = Bytes().U8('U').I32(7).U8('N').I16(1).Text("x").str();
  absl::StatusOr<Message> m = DecodeMessage(data);
  ASSERT_TRUE(m.ok()) << m.status();
  const auto& update = std::get<Update>(*m);
  EXPECT_FALSE(update.old_tuple.has_value());
  EXPECT_THAT(update.new_tuple, ElementsAre(T("x")));
}

TEST(PgOutputTest, DecodesDeleteByKeyAndByFullRow) {
  {
    absl::StatusOr<Message> m =
        DecodeMessage(Bytes().U8('D').I32(9).U8('K').I16(2).Text("5").Null().str());
    ASSERT_TRUE(m.ok()) << m.status();
    const auto& del = std::get<Delete>(*m);
    EXPECT_TRUE(del.old_is_key);
    EXPECT_THAT(del.old_tuple, ElementsAre(T("5"), N()));
  }
  {
    absl::StatusOr<Message> m =
        DecodeMessage(Bytes().U8('D').I32(9).U8('O').I16(2).Text("5").Text("t").str());
    ASSERT_TRUE(m.ok()) << m.status();
    const auto& del = std::get<Delete>(*m);
    EXPECT_FALSE(del.old_is_key);
    EXPECT_THAT(del.old_tuple, ElementsAre(T("5"), T("t")));
  }
}

TEST(PgOutputTest, DecodesTruncateOriginTypeAndMessage) {
  absl::StatusOr<Message> t = DecodeMessage(Bytes().U8('T').I32(2).U8(1).I32(10).I32(11).str());
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_THAT(std::get<Truncate>(*t).relation_ids, ElementsAre(10u, 11u));
  EXPECT_EQ(std::get<Truncate>(*t).options, 1);

  absl::StatusOr<Message> o = DecodeMessage(Bytes().U8('O').Int(99, 8).Str("node_a").str());
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(std::get<Origin>(*o).name, "node_a");

  absl::StatusOr<Message> y =
      DecodeMessage(Bytes().U8('Y').I32(3802).Str("pg_catalog").Str("jsonb").str());
  ASSERT_TRUE(y.ok()) << y.status();
  EXPECT_EQ(std::get<Type>(*y).name, "jsonb");

  absl::StatusOr<Message> msg =
      DecodeMessage(Bytes().U8('M').U8(1).Int(77, 8).Str("wakeline").I32(3).Raw("abc").str());
  ASSERT_TRUE(msg.ok()) << msg.status();
  EXPECT_TRUE(std::get<LogicalMessage>(*msg).transactional);
  EXPECT_EQ(std::get<LogicalMessage>(*msg).prefix, "wakeline");
  EXPECT_EQ(std::get<LogicalMessage>(*msg).content, "abc");
}

TEST(PgOutputTest, RejectsTruncatedAndMalformedMessagesNamingTheField) {
  EXPECT_THAT(DecodeMessage(""), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("empty")));
  EXPECT_THAT(DecodeMessage(Bytes().U8('B').Int(1, 8).str()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("commit_time")));
  // A text value claiming more bytes than there are.
  EXPECT_THAT(DecodeMessage(Bytes().U8('I').I32(1).U8('N').I16(1).U8('t').I32(10).Raw("ab").str()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("new[0].value")));
  EXPECT_THAT(DecodeMessage(Bytes().U8('I').I32(1).U8('N').I16(1).U8('x').str()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("unknown tuple value kind")));
  EXPECT_THAT(DecodeMessage(Bytes().U8('I').I32(1).U8('K').I16(0).str()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("new_tag")));
  EXPECT_THAT(DecodeMessage(Bytes().U8('R').I32(1).Str("public").Raw("unterminated").str()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("relname")));
  EXPECT_THAT(DecodeMessage(Bytes().U8('C').U8(0).Int(1, 8).Int(2, 8).I64(3).U8(0).str()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("trailing")));
  EXPECT_THAT(DecodeMessage(Bytes().U8('S').I32(1).str()),
              StatusIs(absl::StatusCode::kUnimplemented, HasSubstr("protocol version 1")));
}

TEST(PgOutputTest, ParsesXLogDataAndKeepalive) {
  const std::string payload = Bytes().U8('C').U8(0).Int(1, 8).Int(2, 8).I64(3).str();
  // The payload points into the frame, which must outlive it.
  const std::string frame = Bytes().U8('w').Int(0x10, 8).Int(0x20, 8).I64(123).Raw(payload).str();
  absl::StatusOr<CopyMessage> w = ParseCopyMessage(frame);
  ASSERT_TRUE(w.ok()) << w.status();
  const auto& xlog = std::get<XLogData>(*w);
  EXPECT_EQ(xlog.wal_start, 0x10u);
  EXPECT_EQ(xlog.wal_end, 0x20u);
  EXPECT_EQ(xlog.send_time, 123);
  EXPECT_EQ(xlog.payload, payload);

  absl::StatusOr<CopyMessage> k =
      ParseCopyMessage(Bytes().U8('k').Int(0xABCDEF, 8).I64(9).U8(1).str());
  ASSERT_TRUE(k.ok()) << k.status();
  EXPECT_EQ(std::get<Keepalive>(*k).wal_end, 0xABCDEFu);
  EXPECT_TRUE(std::get<Keepalive>(*k).reply_requested);

  EXPECT_THAT(ParseCopyMessage(Bytes().U8('k').Int(1, 8).str()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("send_time")));
  EXPECT_THAT(ParseCopyMessage("z"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("unknown type")));
}

TEST(PgOutputTest, EncodesStandbyStatusUpdate) {
  const std::string encoded = EncodeStandbyStatus(0x0102, 0x0304, 0x0506, 0x0708, true);
  EXPECT_EQ(
      encoded,
      Bytes().U8('r').Int(0x0102, 8).Int(0x0304, 8).Int(0x0506, 8).Int(0x0708, 8).U8(1).str());
  EXPECT_EQ(encoded.size(), 34u);
  EXPECT_EQ(EncodeStandbyStatus(1, 1, 1, 1, false).back(), '\0');
}

TEST(PgOutputTest, ParsesAndFormatsLsn) {
  EXPECT_THAT(ParseLsn("16/B374D848"), IsOkAndHolds(0x16B374D848ULL));
  EXPECT_THAT(ParseLsn("0/0"), IsOkAndHolds(0u));
  EXPECT_THAT(ParseLsn("FFFFFFFF/FFFFFFFF"), IsOkAndHolds(~0ULL));
  EXPECT_EQ(FormatLsn(0x16B374D848ULL), "16/B374D848");
  EXPECT_EQ(FormatLsn(0), "0/0");
  for (const char* bad :
       {"", "/", "1/", "/1", "12", "1/2/3", "G/1", "-1/1", "1/+1", "123456789/1"}) {
    EXPECT_THAT(ParseLsn(bad),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not an LSN")))
        << bad;
  }
}

TEST(PgOutputTest, ConvertsReplicationTimestamps) {
  EXPECT_EQ(FromPgTimestamp(0),
            absl::FromCivil(absl::CivilSecond(2000, 1, 1, 0, 0, 0), absl::UTCTimeZone()));
  const absl::Time t = absl::FromUnixMicros(1767225600123456);
  EXPECT_EQ(FromPgTimestamp(ToPgTimestamp(t)), t);
}

TEST(PgOutputTest, ExtendsXidAcrossEpochs) {
  constexpr int64_t kEpoch = int64_t{1} << 32;
  // Same epoch, before and after the reference.
  EXPECT_EQ(ExtendXid(1000, 3 * kEpoch + 900), 3 * kEpoch + 1000);
  EXPECT_EQ(ExtendXid(800, 3 * kEpoch + 900), 3 * kEpoch + 800);
  // The reference is just past a wrap; an older xid is in the previous epoch.
  EXPECT_EQ(ExtendXid(0xFFFFFFF0u, 3 * kEpoch + 5), 2 * kEpoch + 0xFFFFFFF0);
  // The reference is just before a wrap; a newer xid is in the next epoch.
  EXPECT_EQ(ExtendXid(7, 3 * kEpoch + 0xFFFFFFF0), 4 * kEpoch + 7);
  // Epoch 0 never goes negative.
  EXPECT_EQ(ExtendXid(0xFFFFFFF0u, 100), 0xFFFFFFF0);
  EXPECT_EQ(ExtendXid(742, 750), 742);
}

}  // namespace
}  // namespace wake::sync::pgoutput
