// Runner sessions against the real registry: a session that heartbeats keeps
// its claim for as long as it likes (leases of 2s here), one that does not
// loses it; and when a runner's new session supersedes the old one, the old
// session's heartbeats, acks and reconnects are refused and change nothing,
// while the new session keeps its claims.
//
// What it catches: heartbeats that do not reach ExtendClaims (or extend the
// wrong claims), a runtime that drops a claim the runner keeps alive, and a
// stale session (an old process, a late retry) that takes the stream back
// from the current one or acks a claim it no longer holds.
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/e2e/e2e_support.h"
#include "tests/support/service_process.h"
#include "tests/support/status_matchers.h"
#include "tests/support/test_database.h"
#include "tests/support/test_runner.h"

namespace wake::testing {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;

constexpr absl::Duration kLease = absl::Seconds(2);
constexpr absl::Duration kWait = absl::Seconds(10);

class RunnerSessionsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto db = TestDatabase::Create();
    ASSERT_TRUE(db.ok()) << db.status();
    db_ = std::move(*db);
    auto registry = StartRegistry(db_->url());
    ASSERT_TRUE(registry.ok()) << registry.status();
    registry_ = std::move(*registry);
    auto runtime = StartRuntime(registry_.address, {"--lease=2s"});
    ASSERT_TRUE(runtime.ok()) << runtime.status();
    runtime_ = std::move(*runtime);
    client_ = std::make_unique<RegistryClient>(registry_.address);
  }

  // One wake for `parent`; its id.
  int64_t MakeWake(const std::string& parent) {
    const std::string child = absl::StrCat(parent, "/child");
    EXPECT_TRUE(client_->RegisterRunFinished(parent, child).ok());
    absl::StatusOr<std::vector<v1::Wake>> wakes = client_->FinishRun(child, "run-1");
    EXPECT_TRUE(wakes.ok()) << wakes.status();
    return wakes.ok() && wakes->size() == 1 ? (*wakes)[0].id() : 0;
  }

  std::unique_ptr<TestRunner> Runner(const std::string& runner_id, const std::string& session_id,
                                     std::vector<std::string> prefixes = {}) {
    TestRunnerOptions options;
    options.runner_id = runner_id;
    options.session_id = session_id;
    options.stream_prefixes = std::move(prefixes);
    auto runner = TestRunner::Connect(Connect(runtime_.address), options);
    EXPECT_TRUE(runner.ok()) << runner.status();
    return runner.ok() ? std::move(*runner) : nullptr;
  }

  std::string LiveToken(const std::string& stream) {
    return db_->QueryValue(
        absl::StrCat("SELECT claim_token FROM stream_claims WHERE stream = '", stream, "'"));
  }

  std::unique_ptr<TestDatabase> db_;
  ServiceProcess registry_;
  ServiceProcess runtime_;
  std::unique_ptr<RegistryClient> client_;
};

TEST_F(RunnerSessionsTest, HeartbeatsKeepAClaimPastSeveralLeasesAndSilenceLosesIt) {
  auto beating = Runner("runner-beating", "s1", {"/beating/"});
  auto silent = Runner("runner-silent", "s1", {"/silent/"});
  ASSERT_NE(beating, nullptr);
  ASSERT_NE(silent, nullptr);
  const int64_t kept_id = MakeWake("/beating/p");
  const int64_t lost_id = MakeWake("/silent/p");
  absl::StatusOr<v1::WakeClaim> kept = beating->NextClaim(kWait);
  ASSERT_TRUE(kept.ok()) << kept.status();
  absl::StatusOr<v1::WakeClaim> lost = silent->NextClaim(kWait);
  ASSERT_TRUE(lost.ok()) << lost.status();
  ASSERT_EQ(kept->wakes(0).id(), kept_id);
  ASSERT_EQ(lost->wakes(0).id(), lost_id);

  // Three and a half leases of heartbeats, one every quarter lease (pacing,
  // as a runner at work would send them).
  const absl::Time until = absl::Now() + 3.5 * kLease;
  int beats = 0;
  while (absl::Now() < until) {
    absl::StatusOr<v1::HeartbeatResponse> beat = beating->Heartbeat();
    ASSERT_TRUE(beat.ok()) << beat.status();
    ASSERT_EQ(beat->extended(), 1) << "after " << beats << " heartbeats";
    ++beats;
    absl::SleepFor(kLease / 4);
  }
  EXPECT_EQ(LiveToken("/beating/p"), kept->claim_token());
  // Never redelivered: the claim stayed this runner's all along.
  EXPECT_EQ(beating->NextClaim(absl::Milliseconds(100)).status().code(),
            absl::StatusCode::kDeadlineExceeded);
  absl::StatusOr<v1::AckClaimResponse> ack = beating->Ack(*kept);
  ASSERT_TRUE(ack.ok()) << ack.status();
  EXPECT_EQ(ack->acked(), 1);

  EXPECT_EQ(db_->QueryValue(absl::StrCat("SELECT count(*) FROM wakes WHERE id = ", kept_id)), "0");

  // The silent runner's claim ran out after a lease and the wake came back
  // under a new token (again after every lease, as it never heartbeats); the
  // old token no longer acks.
  absl::StatusOr<v1::WakeClaim> again = silent->NextClaim(kWait);
  ASSERT_TRUE(again.ok()) << again.status() << "\n" << runtime_.process->ReadLog();
  EXPECT_NE(again->claim_token(), lost->claim_token());
  EXPECT_EQ(again->wakes(0).id(), lost_id);
  EXPECT_THAT(silent->Ack(*lost),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("claim_token")));
}

TEST_F(RunnerSessionsTest, SupersededSessionIsRefusedEverywhereAndTheCurrentOneKeepsItsClaims) {
  auto old_session = Runner("runner-a", "s1");
  ASSERT_NE(old_session, nullptr);
  MakeWake("/p");
  absl::StatusOr<v1::WakeClaim> old_claim = old_session->NextClaim(kWait);
  ASSERT_TRUE(old_claim.ok()) << old_claim.status();

  // The runner restarts: its new session supersedes the old one, whose claim
  // is released and comes back to the new session.
  auto new_session = Runner("runner-a", "s2");
  ASSERT_NE(new_session, nullptr);
  EXPECT_THAT(old_session->WaitClosed(kWait),
              StatusIs(absl::StatusCode::kAborted, HasSubstr("superseded")));
  absl::StatusOr<v1::WakeClaim> claim = new_session->NextClaim(kWait);
  ASSERT_TRUE(claim.ok()) << claim.status();
  ASSERT_NE(claim->claim_token(), old_claim->claim_token());
  EXPECT_EQ(LiveToken("/p"), claim->claim_token());

  // Everything the old session tries is refused...
  EXPECT_THAT(old_session->Heartbeat(),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("session_id")));
  EXPECT_THAT(old_session->Ack(*old_claim),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("claim_token")));
  EXPECT_THAT(old_session->Ack(*claim), StatusIs(absl::StatusCode::kFailedPrecondition,
                                                 HasSubstr("not held by this runner session")));
  TestRunnerOptions stale;
  stale.runner_id = "runner-a";
  stale.session_id = "s1";
  EXPECT_THAT(TestRunner::Connect(Connect(runtime_.address), stale),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       AllOf(HasSubstr("session_id"), HasSubstr("superseded"))));

  // ...and changes nothing: the new session is connected, holds its claim,
  // heartbeats and acks it.
  EXPECT_EQ(new_session->WaitClosed(absl::Milliseconds(200)).code(),
            absl::StatusCode::kDeadlineExceeded);
  EXPECT_EQ(LiveToken("/p"), claim->claim_token());
  absl::StatusOr<v1::HeartbeatResponse> beat = new_session->Heartbeat();
  ASSERT_TRUE(beat.ok()) << beat.status();
  EXPECT_EQ(beat->extended(), 1);
  absl::StatusOr<v1::GetHealthResponse> health = RuntimeHealth(runtime_.address);
  ASSERT_TRUE(health.ok()) << health.status();
  EXPECT_EQ(health->connected_runners(), 1);
  EXPECT_EQ(health->active_claims(), 1);
  EXPECT_EQ(health->counters().claims_released(), 1);  // The old session's, on supersede.
  absl::StatusOr<v1::AckClaimResponse> ack = new_session->Ack(*claim);
  ASSERT_TRUE(ack.ok()) << ack.status();
  EXPECT_EQ(ack->acked(), 1);
  EXPECT_EQ(db_->QueryValue("SELECT count(*) FROM wakes"), "0");
}

}  // namespace
}  // namespace wake::testing
