// The chaos run is only as good as its books: these tests pin down when a
// wake counts as acked, lost or duplicated, and that runner records survive
// the round trip through their file (including a line cut short by a kill).
#include "tests/chaos/accounting.h"

#include <cstdio>
#include <fstream>

#include "gmock/gmock.h"
#include "grpcpp/support/status_code_enum.h"
#include "gtest/gtest.h"
#include "tests/chaos/record.h"
#include "tests/chaos/workload.h"

namespace wake::chaos {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

const absl::Time kT0 = absl::FromUnixSeconds(1700000000);

RecordLine Claim(const std::string& token, std::vector<RecordedWake> wakes, absl::Time at = kT0,
                 const std::string& session = "s1") {
  RecordLine line;
  line.kind = RecordLine::Kind::kClaim;
  line.at = at;
  line.session_id = session;
  line.claim_token = token;
  line.stream = "/chaos/p0";
  line.wakes = std::move(wakes);
  return line;
}

RecordLine Ack(const std::string& token, int code, absl::Time at = kT0 + absl::Milliseconds(10),
               const std::string& session = "s1") {
  RecordLine line;
  line.kind = RecordLine::Kind::kAck;
  line.at = at;
  line.session_id = session;
  line.claim_token = token;
  line.attempt = 1;
  line.code = code;
  return line;
}

RecordLine AckSent(const std::string& token, const std::string& session = "s1") {
  RecordLine line;
  line.kind = RecordLine::Kind::kAckSent;
  line.at = kT0;
  line.session_id = session;
  line.claim_token = token;
  line.attempt = 1;
  return line;
}

AuditRow Inserted(int64_t id, const WakeKey& key) {
  AuditRow row;
  row.inserted = true;
  row.wake_id = id;
  row.registration_id = key.first;
  row.source_event_key = key.second;
  return row;
}

AuditRow Deleted(int64_t id, const WakeKey& key) {
  AuditRow row = Inserted(id, key);
  row.inserted = false;
  return row;
}

const WakeKey kA{1, EventOffset(1)};
const WakeKey kB{2, EventOffset(2)};

TEST(RecordTest, LinesSurviveTheRoundTripWithAwkwardKeys) {
  RecordLine line = Claim("tok en\t1", {{7, 1, "update:run 1,x%y"}, {8, 2, "0000000000000002_0"}});
  absl::StatusOr<RecordLine> parsed = ParseLine(FormatLine(line));
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->claim_token, "tok en\t1");
  ASSERT_EQ(parsed->wakes.size(), 2u);
  EXPECT_EQ(parsed->wakes[0].source_event_key, "update:run 1,x%y");
  EXPECT_EQ(parsed->wakes[1].id, 8);
  EXPECT_EQ(parsed->at, kT0);

  RecordLine ack = Ack("t", grpc::StatusCode::UNAVAILABLE);
  ack.acked = 3;
  parsed = ParseLine(FormatLine(ack));
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->code, grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(parsed->acked, 3);
}

TEST(RecordTest, ClaimLineWithMissingWakesIsMalformed) {
  std::string text = FormatLine(Claim("t", {{7, 1, "k"}, {8, 1, "l"}}));
  text = text.substr(0, text.rfind(' '));  // Cut after the first wake.
  EXPECT_EQ(ParseLine(text).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(RecordTest, ReaderWaitsForALineToBeComplete) {
  const std::string path = ::testing::TempDir() + "/record_reader_test.rec";
  std::remove(path.c_str());
  const std::string first = FormatLine(Claim("t1", {{1, 1, "k"}}));
  const std::string second = FormatLine(Ack("t1", 0));
  {
    std::ofstream out(path);
    out << first << "\n" << second.substr(0, 5);  // The writer is mid-line.
  }
  RecordReader reader(path);
  std::vector<RecordLine::Kind> seen;
  auto visit = [&seen](const RecordLine& line) { seen.push_back(line.kind); };
  reader.Poll(visit);
  EXPECT_THAT(seen, ElementsAre(RecordLine::Kind::kClaim));
  {
    std::ofstream out(path, std::ios::app);
    out << second.substr(5) << "\n";
  }
  reader.Poll(visit);
  EXPECT_THAT(seen, ElementsAre(RecordLine::Kind::kClaim, RecordLine::Kind::kAck));
  EXPECT_EQ(reader.malformed(), 0);
}

TEST(AccountingTest, EverythingAckedOnceIsClean) {
  Accounting books;
  books.Expect(kA, "/chaos/p0");
  books.Expect(kB, "/chaos/p0");
  books.Evaluated(10, kA);
  books.Record("r1", Claim("t1", {{10, kA.first, kA.second}, {11, kB.first, kB.second}}));
  books.Record("r1", AckSent("t1"));
  books.Record("r1", Ack("t1", grpc::StatusCode::OK));
  EXPECT_THAT(books.Unacked(), IsEmpty());
  const Report r = books.Summarize();
  EXPECT_EQ(r.expected, 2);
  EXPECT_EQ(r.produced, 2);
  EXPECT_EQ(r.delivered, 2);
  EXPECT_EQ(r.acked, 2);
  EXPECT_EQ(r.lost, 0);
  EXPECT_EQ(r.duplicated, 0);
  EXPECT_EQ(r.double_acks, 0);
  EXPECT_EQ(r.unexpected, 0);
}

TEST(AccountingTest, LostWakesAreSortedByWhatTheDatabaseShows) {
  const WakeKey never{3, EventOffset(3)};
  const WakeKey pending{4, EventOffset(4)};
  const WakeKey claimed{5, EventOffset(5)};
  const WakeKey vanished{6, EventOffset(6)};
  Accounting books;
  for (const WakeKey& key : {never, pending, claimed, vanished}) books.Expect(key, "/p");
  books.Audit(Inserted(40, pending));
  books.Audit(Inserted(50, claimed));
  books.Audit(Inserted(60, vanished));
  books.Record("r1", Claim("t5", {{50, claimed.first, claimed.second}}));  // Held, never acked.
  books.Audit(Deleted(60, vanished));  // Gone, and no runner ever acked it.
  books.Remaining(
      {{40, pending.first, pending.second, false}, {50, claimed.first, claimed.second, true}});
  const Report r = books.Summarize();
  EXPECT_EQ(r.lost, 4);
  EXPECT_EQ(r.lost_never_produced, 1);
  EXPECT_EQ(r.lost_pending, 1);
  EXPECT_EQ(r.lost_claimed, 1);
  EXPECT_EQ(r.lost_deleted_unacked, 1);
  EXPECT_EQ(r.lost_unknown, 0);
}

TEST(AccountingTest, AckWhoseReplyWasLostCountsOnlyIfTheRowIsGone) {
  Accounting books;
  books.Expect(kA, "/p");
  books.Expect(kB, "/p");
  books.Record("r1", Claim("t1", {{10, kA.first, kA.second}}));
  books.Record("r1", AckSent("t1"));  // Killed before the reply was written.
  books.Record("r2", Claim("t2", {{11, kB.first, kB.second}}));
  books.Record("r2", AckSent("t2"));
  books.Record("r2", Ack("t2", grpc::StatusCode::UNAVAILABLE));
  EXPECT_EQ(books.Unacked().size(), 2u);
  books.Audit(Inserted(10, kA));
  AuditRow landed = Deleted(10, kA);  // The ack landed.
  landed.at = kT0 + absl::Milliseconds(3);
  books.Audit(landed);
  books.Audit(Inserted(11, kB));
  books.Remaining({{11, kB.first, kB.second, false}});  // This one did not.
  EXPECT_THAT(books.Unacked(), ElementsAre(kB));
  const Report r = books.Summarize();
  EXPECT_EQ(r.acked, 1);
  EXPECT_EQ(r.acked_by_database, 1);
  EXPECT_EQ(r.lost, 1);
  EXPECT_EQ(r.lost_pending, 1);
}

TEST(AccountingTest, RowDeletedBeforeAnyAckWasSentIsNotAnAck) {
  Accounting books;
  books.Expect(kA, "/p");
  books.Record("r1", Claim("t1", {{10, kA.first, kA.second}}));
  RecordLine sent = AckSent("t1");
  sent.at = kT0 + absl::Seconds(5);
  books.Record("r1", sent);
  AuditRow deleted = Deleted(10, kA);
  deleted.at = kT0 + absl::Seconds(1);  // Something else deleted it first.
  books.Audit(Inserted(10, kA));
  books.Audit(deleted);
  const Report r = books.Summarize();
  EXPECT_EQ(r.lost, 1);
  EXPECT_EQ(r.lost_deleted_unacked, 1);
}

TEST(AccountingTest, AcksAreMatchedToTheirOwnRunnerAndSession) {
  Accounting books;
  books.Expect(kA, "/p");
  books.Record("r1", Claim("t1", {{10, kA.first, kA.second}}, kT0, "s1"));
  books.Record("r2", Ack("t1", grpc::StatusCode::OK));             // Another runner.
  books.Record("r1", Ack("t1", grpc::StatusCode::OK, kT0, "s2"));  // Another session.
  EXPECT_EQ(books.Unacked().size(), 1u);
  EXPECT_EQ(books.Summarize().orphan_acks, 2);
}

TEST(AccountingTest, SecondWakeIdForOnePairIsADuplicateEvenIfBothWereAcked) {
  Accounting books;
  books.Expect(kA, "/p");
  books.Record("r1", Claim("t1", {{10, kA.first, kA.second}}));
  books.Record("r1", Ack("t1", grpc::StatusCode::OK));
  books.Audit(Inserted(10, kA));
  books.Audit(Deleted(10, kA));
  books.Audit(Inserted(12, kA));  // A replayed evaluation after the ack.
  books.Record("r2", Claim("t2", {{12, kA.first, kA.second}}));
  books.Record("r2", Ack("t2", grpc::StatusCode::OK));
  const Report r = books.Summarize();
  EXPECT_EQ(r.lost, 0);
  EXPECT_EQ(r.duplicated, 1);
  EXPECT_EQ(r.duplicate_extra, 1);
  EXPECT_THAT(r.duplicated_sample, ElementsAre(kA));
  EXPECT_EQ(r.double_acks, 0);
  EXPECT_EQ(r.produced, 2);
}

TEST(AccountingTest, SameWakeAckedTwiceIsADoubleAckAndARedelivery) {
  Accounting books;
  books.Expect(kA, "/p");
  books.Record("r1", Claim("t1", {{10, kA.first, kA.second}}, kT0));
  books.Record("r1", Ack("t1", grpc::StatusCode::OK, kT0 + absl::Milliseconds(5)));
  books.Record("r2", Claim("t2", {{10, kA.first, kA.second}}, kT0 + absl::Seconds(1)));
  books.Record("r2", Ack("t2", grpc::StatusCode::OK, kT0 + absl::Seconds(2)));
  const Report r = books.Summarize();
  EXPECT_EQ(r.double_acks, 1);
  EXPECT_EQ(r.redelivered_after_ack, 1);
  EXPECT_EQ(r.deliveries, 2);
  EXPECT_EQ(r.duplicated, 0);
}

TEST(AccountingTest, RejectedAckIsNotAnAck) {
  Accounting books;
  books.Expect(kA, "/p");
  books.Record("r1", Claim("t1", {{10, kA.first, kA.second}}));
  books.Record("r1", Ack("t1", grpc::StatusCode::FAILED_PRECONDITION));
  EXPECT_EQ(books.Summarize().lost, 1);
}

TEST(AccountingTest, UnexpectedAndToleratedWakes) {
  Accounting books;
  books.Expect(kA, "/p");
  books.Tolerate(kB);  // Its evaluation was abandoned: may or may not exist.
  books.Audit(Inserted(10, kA));
  books.Audit(Inserted(11, kB));
  books.Audit(Inserted(12, {9, "other"}));
  const Report r = books.Summarize();
  EXPECT_EQ(r.unexpected, 1);
  EXPECT_THAT(r.unexpected_sample, ElementsAre(12));
  EXPECT_EQ(r.lost, 1);  // kA: produced, never acked.
}

TEST(WorkloadTest, FamiliesAddUpToTheWakesAsked) {
  for (int wakes : {1, 7, 1500, 10000}) {
    const std::vector<FamilyPlan> families = PlanFamilies(wakes, 42, "/chaos");
    int total = 0;
    for (const FamilyPlan& family : families) {
      total += family.wakes();
      if (family.one_shot) {
        for (const ChildPlan& child : family.children) EXPECT_EQ(child.runs, 1);
      }
    }
    EXPECT_EQ(total, wakes);
  }
  EXPECT_LT(EventOffset(9), EventOffset(10));
}

}  // namespace
}  // namespace wake::chaos
