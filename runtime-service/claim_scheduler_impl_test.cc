#include "runtime-service/claim_scheduler_impl.h"

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/executor.h"
#include "common/simulated_time_source.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/status_matchers.h"
#include "wake/v1/registry_mock.grpc.pb.h"

namespace wake::runtime {
namespace {

using ::testing::_;
using ::testing::AllOf;
using ::testing::DoAll;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::InSequence;
using ::testing::Invoke;
using ::testing::Property;
using ::testing::Return;
using ::testing::SetArgPointee;
using ::testing::StrictMock;
using ::wake::testing::IsOkAndHolds;
using ::wake::testing::StatusIs;

constexpr char kTenant[] = "acme";
constexpr absl::Duration kLease = absl::Seconds(30);

// Records what the scheduler sends to one runner session.
class RecordingSink : public ClaimSink {
 public:
  bool Send(const v1::WakeClaim& claim) override {
    claims.push_back(claim);
    return true;
  }
  void Close(const absl::Status& status) override { closed = status; }

  std::vector<std::string> Tokens() const {
    std::vector<std::string> tokens;
    for (const v1::WakeClaim& claim : claims) tokens.push_back(claim.claim_token());
    return tokens;
  }

  std::vector<v1::WakeClaim> claims;
  std::optional<absl::Status> closed;
};

std::vector<int64_t> WakeIds(const v1::WakeClaim& claim) {
  std::vector<int64_t> ids;
  for (const v1::Wake& wake : claim.wakes()) ids.push_back(wake.id());
  return ids;
}

v1::ClaimWakesResponse Claimed(const std::string& token, const std::string& stream,
                               std::vector<int64_t> wake_ids) {
  v1::ClaimWakesResponse response;
  response.set_status(v1::CLAIMED);
  response.set_claim_token(token);
  for (int64_t id : wake_ids) {
    v1::Wake* wake = response.add_wakes();
    wake->set_id(id);
    wake->set_tenant_id(kTenant);
    wake->set_stream(stream);
  }
  response.mutable_lease_expires_at()->set_seconds(1767225630);
  return response;
}

v1::ClaimWakesResponse WithStatus(v1::ClaimStatus status) {
  v1::ClaimWakesResponse response;
  response.set_status(status);
  return response;
}

v1::AckWakesResponse Acked(int64_t acked, bool more_pending) {
  v1::AckWakesResponse response;
  response.set_acked(acked);
  response.set_more_pending(more_pending);
  return response;
}

auto ClaimOf(const std::string& stream) {
  return AllOf(Property(&v1::ClaimWakesRequest::tenant_id, kTenant),
               Property(&v1::ClaimWakesRequest::stream, stream),
               Property(&v1::ClaimWakesRequest::runner_id, "rt-1"));
}

template <typename Request>
auto TokenIs(const std::string& token) {
  return Property(&Request::claim_token, token);
}

auto Replies(const v1::ClaimWakesResponse& response) {
  return DoAll(SetArgPointee<2>(response), Return(grpc::Status::OK));
}
auto Replies(const v1::AckWakesResponse& response) {
  return DoAll(SetArgPointee<2>(response), Return(grpc::Status::OK));
}
auto Replies(const v1::ExtendClaimsResponse& response) {
  return DoAll(SetArgPointee<2>(response), Return(grpc::Status::OK));
}
auto Released(int64_t count) {
  v1::ReleaseClaimResponse response;
  response.set_released(count);
  return DoAll(SetArgPointee<2>(response), Return(grpc::Status::OK));
}

v1::ExtendClaimsResponse Extended(const std::string& stream, const std::string& token,
                                  bool extended) {
  v1::ExtendClaimsResponse response;
  v1::ExtendedClaim* claim = response.add_claims();
  claim->mutable_claim()->set_tenant_id(kTenant);
  claim->mutable_claim()->set_stream(stream);
  claim->mutable_claim()->set_claim_token(token);
  claim->set_extended(extended);
  claim->mutable_lease_expires_at()->set_seconds(1767225700);
  return response;
}

// The result a scheduler callback delivered, if it ran.
template <typename T>
struct Captured {
  ClaimScheduler::Callback<T> Callback() {
    return [this](absl::StatusOr<T> r) { result = std::move(r); };
  }
  std::optional<absl::StatusOr<T>> result;
};

class ClaimSchedulerTest : public ::testing::Test {
 protected:
  static SchedulerOptions Options(int max_concurrent_claims = 64) {
    SchedulerOptions options;
    options.runtime_id = "rt-1";
    options.lease = kLease;
    options.retry_initial = absl::Milliseconds(100);
    options.retry_max = absl::Seconds(1);
    options.max_concurrent_claims = max_concurrent_claims;
    return options;
  }

  void MakeScheduler(SchedulerOptions options) {
    scheduler_ = std::make_unique<ClaimSchedulerImpl>(registry_, time_, executor_, options);
  }

  void SetUp() override { MakeScheduler(Options()); }

  void TearDown() override {
    // Every test ends quiescent: nothing left in flight against the registry.
    EXPECT_EQ(executor_.queued(), 0u);
    scheduler_.reset();
  }

  std::shared_ptr<RecordingSink> ConnectRunner(const std::string& runner_id,
                                               const std::string& session_id,
                                               int max_in_flight = 16,
                                               std::vector<std::string> prefixes = {}) {
    auto sink = std::make_shared<RecordingSink>();
    RunnerSpec spec;
    spec.runner_id = runner_id;
    spec.session_id = session_id;
    spec.tenant_id = kTenant;
    spec.max_in_flight = max_in_flight;
    spec.stream_prefixes = std::move(prefixes);
    absl::StatusOr<SessionId> id = scheduler_->Connect(spec, sink);
    EXPECT_TRUE(id.ok()) << id.status();
    sessions_[runner_id + "/" + session_id] = id.value_or(0);
    return sink;
  }

  AckRequest AckOf(const std::string& runner_id, const std::string& session_id,
                   const v1::WakeClaim& claim) {
    AckRequest ack;
    ack.runner_id = runner_id;
    ack.session_id = session_id;
    ack.tenant_id = claim.tenant_id();
    ack.stream = claim.stream();
    ack.claim_token = claim.claim_token();
    return ack;
  }

  StrictMock<v1::MockWakeRegistryStub> registry_;
  common::SimulatedTimeSource time_;
  common::ManualExecutor executor_;
  std::unique_ptr<ClaimSchedulerImpl> scheduler_;
  std::map<std::string, SessionId> sessions_;
};

TEST_F(ClaimSchedulerTest, ThreeTriggersWhileClaimInFlightMakeExactlyTwoClaims) {
  auto sink = ConnectRunner("runner-a", "s1");
  {
    InSequence seq;
    EXPECT_CALL(registry_, ClaimWakes(_, ClaimOf("/parent/1"), _))
        .WillOnce(Replies(Claimed("tok-1", "/parent/1", {1})));
    EXPECT_CALL(registry_, AckWakes(_, TokenIs<v1::AckWakesRequest>("tok-1"), _))
        .WillOnce(Replies(Acked(1, false)));
    EXPECT_CALL(registry_, ClaimWakes(_, ClaimOf("/parent/1"), _))
        .WillOnce(Replies(Claimed("tok-2", "/parent/1", {2, 3, 4})));
    EXPECT_CALL(registry_, AckWakes(_, TokenIs<v1::AckWakesRequest>("tok-2"), _))
        .WillOnce(Replies(Acked(3, false)));
  }

  scheduler_->Trigger(kTenant, "/parent/1", 0);
  ASSERT_EQ(executor_.queued(), 1u);  // The first claim is in flight...
  scheduler_->Trigger(kTenant, "/parent/1", 0);
  scheduler_->Trigger(kTenant, "/parent/1", 0);
  scheduler_->Trigger(kTenant, "/parent/1", 0);
  EXPECT_EQ(executor_.queued(), 1u);  // ...and the others wait behind it, coalesced.
  EXPECT_EQ(scheduler_->Health().queued_streams, 1);

  executor_.RunAll();
  ASSERT_THAT(sink->Tokens(), ElementsAre("tok-1"));
  EXPECT_EQ(executor_.queued(), 0u);  // Dispatched: the follow-up waits for the ack.

  Captured<AckResult> ack1;
  scheduler_->Ack(AckOf("runner-a", "s1", sink->claims[0]), ack1.Callback());
  executor_.RunAll();
  EXPECT_THAT(*ack1.result, IsOkAndHolds(::testing::Field(&AckResult::acked, 1)));
  ASSERT_THAT(sink->Tokens(), ElementsAre("tok-1", "tok-2"));
  EXPECT_THAT(WakeIds(sink->claims[0]), ElementsAre(1));
  EXPECT_THAT(WakeIds(sink->claims[1]), ElementsAre(2, 3, 4));

  Captured<AckResult> ack2;
  scheduler_->Ack(AckOf("runner-a", "s1", sink->claims[1]), ack2.Callback());
  executor_.RunAll();
  ASSERT_TRUE(ack2.result->ok());

  const SchedulerHealth health = scheduler_->Health();
  EXPECT_EQ(health.counters.claims_succeeded, 2);
  EXPECT_EQ(health.counters.claims_dispatched, 2);
  EXPECT_EQ(health.counters.claims_acked, 2);
  EXPECT_EQ(health.queued_streams, 0);
  EXPECT_EQ(health.active_claims, 0);
}

TEST_F(ClaimSchedulerTest, DispatchLatencyCountsFromTheTriggerToTheRunner) {
  std::vector<absl::Duration> latencies;
  SchedulerOptions options = Options();
  options.on_dispatch = [&latencies](absl::Duration d) { latencies.push_back(d); };
  MakeScheduler(options);
  auto sink = ConnectRunner("runner-a", "s1");
  EXPECT_CALL(registry_, ClaimWakes(_, ClaimOf("/parent/1"), _))
      .WillOnce(Replies(Claimed("tok-1", "/parent/1", {1})));
  scheduler_->Trigger(kTenant, "/parent/1", 1);
  time_.Advance(absl::Milliseconds(3));
  scheduler_->Trigger(kTenant, "/parent/1", 2);  // Coalesced: the first one's time counts.
  time_.Advance(absl::Milliseconds(4));
  executor_.RunAll();
  ASSERT_THAT(sink->Tokens(), ElementsAre("tok-1"));
  EXPECT_THAT(latencies, ElementsAre(absl::Milliseconds(7)));
  // The claim carried only wake 1: wake 2's stream is claimed again after
  // the ack, and its latency counts from when it was queued again.
  EXPECT_CALL(registry_, AckWakes(_, TokenIs<v1::AckWakesRequest>("tok-1"), _))
      .WillOnce(Replies(Acked(1, true)));
  EXPECT_CALL(registry_, ClaimWakes(_, ClaimOf("/parent/1"), _))
      .WillOnce(Replies(Claimed("tok-2", "/parent/1", {2})));
  Captured<AckResult> ack;
  scheduler_->Ack(AckOf("runner-a", "s1", sink->claims[0]), ack.Callback());
  executor_.RunAll();
  ASSERT_THAT(sink->Tokens(), ElementsAre("tok-1", "tok-2"));
  ASSERT_EQ(latencies.size(), 2u);
  Captured<AckResult> last;
  EXPECT_CALL(registry_, AckWakes(_, TokenIs<v1::AckWakesRequest>("tok-2"), _))
      .WillOnce(Replies(Acked(1, false)));
  scheduler_->Ack(AckOf("runner-a", "s1", sink->claims[1]), last.Callback());
  executor_.RunAll();
}

TEST_F(ClaimSchedulerTest, NewerTriggerNeverJumpsAheadOfAQueuedOne) {
  MakeScheduler(Options(/*max_concurrent_claims=*/1));
  ConnectRunner("runner-a", "s1");
  std::vector<std::string> order;
  EXPECT_CALL(registry_, ClaimWakes(_, _, _))
      .Times(4)
      .WillRepeatedly([&order](grpc::ClientContext*, const v1::ClaimWakesRequest& request,
                               v1::ClaimWakesResponse* response) {
        order.push_back(request.stream());
        response->set_status(v1::NOTHING_PENDING);
        return grpc::Status::OK;
      });

  scheduler_->Trigger(kTenant, "/a", 0);  // Claimed at once (the only slot).
  scheduler_->Trigger(kTenant, "/b", 0);  // Waits for the slot.
  scheduler_->Trigger(kTenant, "/a", 0);  // Waits behind /a's claim, but before /c.
  scheduler_->Trigger(kTenant, "/c", 0);
  scheduler_->Trigger(kTenant, "/b", 0);  // Coalesces with the queued /b; does not move it.
  EXPECT_EQ(scheduler_->Health().queued_streams, 3);

  executor_.RunAll();
  EXPECT_THAT(order, ElementsAre("/a", "/b", "/a", "/c"));
  EXPECT_EQ(scheduler_->Health().counters.claims_skipped, 4);
}

TEST_F(ClaimSchedulerTest, AckWithMorePendingClaimsAgainAtOnce) {
  auto sink = ConnectRunner("runner-a", "s1");
  {
    InSequence seq;
    EXPECT_CALL(registry_, ClaimWakes(_, ClaimOf("/p"), _))
        .WillOnce(Replies(Claimed("tok-1", "/p", {1, 2})));
    EXPECT_CALL(registry_, AckWakes(_,
                                    AllOf(TokenIs<v1::AckWakesRequest>("tok-1"),
                                          Property(&v1::AckWakesRequest::wake_ids_size, 0)),
                                    _))
        .WillOnce(Replies(Acked(2, true)));
    EXPECT_CALL(registry_, ClaimWakes(_, ClaimOf("/p"), _))
        .WillOnce(Replies(Claimed("tok-2", "/p", {3})));
  }
  scheduler_->Trigger(kTenant, "/p", 0);
  executor_.RunAll();
  ASSERT_THAT(sink->Tokens(), ElementsAre("tok-1"));

  Captured<AckResult> ack;
  scheduler_->Ack(AckOf("runner-a", "s1", sink->claims[0]), ack.Callback());
  executor_.RunOne();  // AckWakes only: the new claim is already on its way.
  ASSERT_TRUE(ack.result.has_value());
  ASSERT_TRUE(ack.result->ok());
  EXPECT_TRUE((*ack.result)->more_pending);
  EXPECT_EQ((*ack.result)->acked, 2);
  EXPECT_EQ(executor_.queued(), 1u);
  executor_.RunAll();
  EXPECT_THAT(sink->Tokens(), ElementsAre("tok-1", "tok-2"));
  EXPECT_EQ(scheduler_->Health().active_claims, 1);

  // Leave nothing behind: the second claim goes back at shutdown.
  EXPECT_CALL(registry_, ReleaseClaim(_, TokenIs<v1::ReleaseClaimRequest>("tok-2"), _))
      .WillOnce(Released(1));
  scheduler_->BeginShutdown();
  scheduler_->ReleaseAll();
  executor_.RunAll();
}

TEST_F(ClaimSchedulerTest, AckClaimsWhatIsPendingInItsTransactionForTheSameRunner) {
  SchedulerOptions options = Options();
  options.claim_next_in_ack = true;
  MakeScheduler(options);
  auto sink = ConnectRunner("runner-a", "s1");
  v1::AckWakesResponse with_next = Acked(2, true);
  *with_next.mutable_next() = Claimed("tok-2", "/p", {3});
  {
    InSequence seq;
    EXPECT_CALL(registry_, ClaimWakes(_, ClaimOf("/p"), _))
        .WillOnce(Replies(Claimed("tok-1", "/p", {1, 2})));
    EXPECT_CALL(registry_, AckWakes(_,
                                    AllOf(TokenIs<v1::AckWakesRequest>("tok-1"),
                                          Property(&v1::AckWakesRequest::claim_next, true),
                                          Property(&v1::AckWakesRequest::runner_id, "rt-1"),
                                          Property(&v1::AckWakesRequest::has_lease, true)),
                                    _))
        .WillOnce(Replies(with_next));
  }
  scheduler_->Trigger(kTenant, "/p", 0);
  executor_.RunAll();
  ASSERT_THAT(sink->Tokens(), ElementsAre("tok-1"));

  Captured<AckResult> ack;
  scheduler_->Ack(AckOf("runner-a", "s1", sink->claims[0]), ack.Callback());
  executor_.RunOne();  // The ack, which brought the next claim: no ClaimWakes.
  ASSERT_TRUE(ack.result.has_value());
  ASSERT_TRUE(ack.result->ok());
  EXPECT_EQ((*ack.result)->acked, 2);
  EXPECT_EQ(executor_.queued(), 0u);
  ASSERT_THAT(sink->Tokens(), ElementsAre("tok-1", "tok-2"));
  EXPECT_THAT(WakeIds(sink->claims[1]), ElementsAre(3));
  EXPECT_EQ(scheduler_->Health().active_claims, 1);

  // The claim it brought is acked like any other.
  EXPECT_CALL(registry_, AckWakes(_, TokenIs<v1::AckWakesRequest>("tok-2"), _))
      .WillOnce(Replies(Acked(1, false)));
  Captured<AckResult> second;
  scheduler_->Ack(AckOf("runner-a", "s1", sink->claims[1]), second.Callback());
  executor_.RunAll();
  ASSERT_TRUE(second.result.has_value() && second.result->ok());
  EXPECT_EQ(scheduler_->Health().active_claims, 0);
}

TEST_F(ClaimSchedulerTest, AckAsksForNoNextClaimWhenTurnedOff) {
  // Off is the default.
  auto sink = ConnectRunner("runner-a", "s1", /*max_in_flight=*/1);
  EXPECT_CALL(registry_, ClaimWakes(_, ClaimOf("/p"), _))
      .WillOnce(Replies(Claimed("tok-1", "/p", {1})));
  EXPECT_CALL(registry_, AckWakes(_,
                                  AllOf(TokenIs<v1::AckWakesRequest>("tok-1"),
                                        Property(&v1::AckWakesRequest::claim_next, false)),
                                  _))
      .WillOnce(Replies(Acked(1, false)));
  scheduler_->Trigger(kTenant, "/p", 0);
  executor_.RunAll();
  Captured<AckResult> ack;
  scheduler_->Ack(AckOf("runner-a", "s1", sink->claims[0]), ack.Callback());
  executor_.RunAll();
  ASSERT_TRUE(ack.result.has_value() && ack.result->ok());
}

TEST_F(ClaimSchedulerTest, AckAsksForNoNextClaimWhenAParkedStreamWaitsForTheRoom) {
  SchedulerOptions options = Options();
  options.claim_next_in_ack = true;
  MakeScheduler(options);
  // The runner's only room is wanted by a stream parked meanwhile.
  auto sink = ConnectRunner("runner-a", "s1", /*max_in_flight=*/1);
  Captured<AckResult> ack;
  EXPECT_CALL(registry_, ClaimWakes(_, ClaimOf("/p"), _))
      .WillOnce(Replies(Claimed("tok-1", "/p", {1})));
  scheduler_->Trigger(kTenant, "/p", 0);
  executor_.RunAll();
  scheduler_->Trigger(kTenant, "/q", 0);  // No room: parked.
  executor_.RunAll();
  {
    InSequence seq;
    EXPECT_CALL(registry_, AckWakes(_,
                                    AllOf(TokenIs<v1::AckWakesRequest>("tok-1"),
                                          Property(&v1::AckWakesRequest::claim_next, false)),
                                    _))
        .WillOnce(Replies(Acked(1, false)));
    EXPECT_CALL(registry_, ClaimWakes(_, ClaimOf("/q"), _))
        .WillOnce(Replies(Claimed("tok-q", "/q", {2})));
  }
  scheduler_->Ack(AckOf("runner-a", "s1", sink->claims[0]), ack.Callback());
  executor_.RunAll();
  EXPECT_THAT(sink->Tokens(), ElementsAre("tok-1", "tok-q"));
  EXPECT_CALL(registry_, ReleaseClaim(_, TokenIs<v1::ReleaseClaimRequest>("tok-q"), _))
      .WillOnce(Released(1));
  scheduler_->BeginShutdown();
  scheduler_->ReleaseAll();
  executor_.RunAll();
}

TEST_F(ClaimSchedulerTest, ClaimThatFindsNothingIsSkipped) {
  auto sink = ConnectRunner("runner-a", "s1");
  EXPECT_CALL(registry_, ClaimWakes(_, ClaimOf("/p"), _))
      .WillOnce(Replies(WithStatus(v1::NOTHING_PENDING)));
  scheduler_->Trigger(kTenant, "/p", 0);
  executor_.RunAll();

  EXPECT_TRUE(sink->claims.empty());
  const SchedulerHealth health = scheduler_->Health();
  EXPECT_EQ(health.counters.claims_skipped, 1);
  EXPECT_EQ(health.counters.claims_succeeded, 0);
  EXPECT_EQ(health.queued_streams, 0);
  EXPECT_EQ(health.active_claims, 0);
  // Nothing is retried: StrictMock fails on any further call.
  time_.Advance(3 * kLease);
  EXPECT_EQ(executor_.queued(), 0u);
}

// The registry can announce a wake (from the WAL) a moment before PostgreSQL
// shows it to ClaimWakes: "nothing pending" for an announced wake is looked
// at again, soon, until a claim carries it.
TEST_F(ClaimSchedulerTest, AnnouncedWakeNotYetClaimableIsLookedForAgain) {
  auto sink = ConnectRunner("runner-a", "s1");
  {
    InSequence seq;
    EXPECT_CALL(registry_, ClaimWakes(_, ClaimOf("/p"), _))
        .Times(2)
        .WillRepeatedly(Replies(WithStatus(v1::NOTHING_PENDING)));
    EXPECT_CALL(registry_, ClaimWakes(_, ClaimOf("/p"), _))
        .WillOnce(Replies(Claimed("tok-1", "/p", {7})));
  }
  scheduler_->Trigger(kTenant, "/p", 7);
  executor_.RunAll();
  EXPECT_TRUE(sink->claims.empty());
  time_.Advance(absl::Milliseconds(9));
  EXPECT_EQ(executor_.queued(), 0u);
  time_.Advance(absl::Milliseconds(1));  // recheck_initial
  EXPECT_EQ(executor_.queued(), 1u);
  executor_.RunAll();
  time_.Advance(absl::Milliseconds(100));  // Then 10x later.
  executor_.RunAll();
  ASSERT_THAT(sink->Tokens(), ElementsAre("tok-1"));
  EXPECT_EQ(scheduler_->Health().counters.claims_skipped, 2);

  EXPECT_CALL(registry_, AckWakes(_, TokenIs<v1::AckWakesRequest>("tok-1"), _))
      .WillOnce(Replies(Acked(1, false)));
  Captured<AckResult> ack;
  scheduler_->Ack(AckOf("runner-a", "s1", sink->claims[0]), ack.Callback());
  executor_.RunAll();
  EXPECT_TRUE(ack.result->ok());
  time_.Advance(3 * kLease);  // Found: nothing more to look for.
  EXPECT_EQ(executor_.queued(), 0u);
}

TEST_F(ClaimSchedulerTest, ClaimMissingAnAnnouncedWakeIsFollowedByAnotherAfterTheAck) {
  auto sink = ConnectRunner("runner-a", "s1");
  {
    InSequence seq;
    EXPECT_CALL(registry_, ClaimWakes(_, ClaimOf("/p"), _))
        .WillOnce(Replies(Claimed("tok-1", "/p", {1})));
    // The registry saw nothing more pending when it took the ack...
    EXPECT_CALL(registry_, AckWakes(_, TokenIs<v1::AckWakesRequest>("tok-1"), _))
        .WillOnce(Replies(Acked(1, false)));
    // ...but wake 2 was announced and is still unaccounted for.
    EXPECT_CALL(registry_, ClaimWakes(_, ClaimOf("/p"), _))
        .WillOnce(Replies(Claimed("tok-2", "/p", {2})));
    EXPECT_CALL(registry_, AckWakes(_, TokenIs<v1::AckWakesRequest>("tok-2"), _))
        .WillOnce(Replies(Acked(1, false)));
  }
  scheduler_->Trigger(kTenant, "/p", 1);
  scheduler_->Trigger(kTenant, "/p", 2);  // Coalesced into the claim in flight.
  executor_.RunAll();
  ASSERT_THAT(sink->Tokens(), ElementsAre("tok-1"));
  Captured<AckResult> ack1;
  scheduler_->Ack(AckOf("runner-a", "s1", sink->claims[0]), ack1.Callback());
  executor_.RunAll();
  ASSERT_THAT(sink->Tokens(), ElementsAre("tok-1", "tok-2"));
  Captured<AckResult> ack2;
  scheduler_->Ack(AckOf("runner-a", "s1", sink->claims[1]), ack2.Callback());
  executor_.RunAll();
  EXPECT_TRUE(ack2.result->ok());
  time_.Advance(3 * kLease);
  EXPECT_EQ(executor_.queued(), 0u);
}

TEST_F(ClaimSchedulerTest, LateAnnouncementOfAWakeAlreadyClaimedOrAckedIsNotLookedFor) {
  auto sink = ConnectRunner("runner-a", "s1");
  {
    InSequence seq;
    EXPECT_CALL(registry_, ClaimWakes(_, ClaimOf("/p"), _))
        .WillOnce(Replies(Claimed("tok-1", "/p", {1, 2})));
    EXPECT_CALL(registry_, AckWakes(_, TokenIs<v1::AckWakesRequest>("tok-1"), _))
        .WillOnce(Replies(Acked(2, false)));
    // No claim follows: the late announcements are accounted for.
  }
  scheduler_->Trigger(kTenant, "/p", 1);
  executor_.RunAll();
  ASSERT_THAT(sink->Tokens(), ElementsAre("tok-1"));
  scheduler_->Trigger(kTenant, "/p", 2);  // The claim carries it already.
  Captured<AckResult> ack;
  scheduler_->Ack(AckOf("runner-a", "s1", sink->claims[0]), ack.Callback());
  scheduler_->Trigger(kTenant, "/p", 1);  // Acked meanwhile... or about to be.
  executor_.RunAll();
  scheduler_->Trigger(kTenant, "/p", 2);  // Acked.
  executor_.RunAll();
  time_.Advance(3 * kLease);
  EXPECT_EQ(executor_.queued(), 0u);
}

TEST_F(ClaimSchedulerTest, AnnouncementsOfWakesTheClaimCarriesMakeNoFollowUpClaim) {
  auto sink = ConnectRunner("runner-a", "s1");
  {
    InSequence seq;
    EXPECT_CALL(registry_, ClaimWakes(_, ClaimOf("/p"), _))
        .WillOnce(Replies(Claimed("tok-1", "/p", {1, 2, 3})));
    EXPECT_CALL(registry_, AckWakes(_, TokenIs<v1::AckWakesRequest>("tok-1"), _))
        .WillOnce(Replies(Acked(3, false)));
  }
  scheduler_->Trigger(kTenant, "/p", 1);
  scheduler_->Trigger(kTenant, "/p", 2);  // Both queued while the claim is in flight,
  scheduler_->Trigger(kTenant, "/p", 3);  // and it takes them.
  EXPECT_EQ(scheduler_->Health().queued_streams, 1);
  executor_.RunAll();
  ASSERT_THAT(sink->Tokens(), ElementsAre("tok-1"));
  EXPECT_EQ(scheduler_->Health().queued_streams, 0);
  Captured<AckResult> ack;
  scheduler_->Ack(AckOf("runner-a", "s1", sink->claims[0]), ack.Callback());
  executor_.RunAll();
  EXPECT_TRUE(ack.result->ok());
  time_.Advance(3 * kLease);
  EXPECT_EQ(executor_.queued(), 0u);
  EXPECT_EQ(scheduler_->Health().counters.claims_skipped, 0);
}

TEST_F(ClaimSchedulerTest, AnnouncedWakeNeverFoundIsGivenUpAfterMaxRechecks) {
  // E.g. another runtime claimed and acked it before this one looked.
  ConnectRunner("runner-a", "s1");
  EXPECT_CALL(registry_, ClaimWakes(_, ClaimOf("/p"), _))
      .Times(4)
      .WillRepeatedly(Replies(WithStatus(v1::NOTHING_PENDING)));
  scheduler_->Trigger(kTenant, "/p", 9);
  executor_.RunAll();
  for (absl::Duration delay :
       {absl::Milliseconds(10), absl::Milliseconds(100), absl::Milliseconds(1000)}) {
    time_.Advance(delay);
    EXPECT_EQ(executor_.queued(), 1u);
    executor_.RunAll();
  }
  time_.Advance(3 * kLease);
  EXPECT_EQ(executor_.queued(), 0u);
  EXPECT_EQ(scheduler_->Health().counters.claims_skipped, 4);
  EXPECT_EQ(scheduler_->Health().queued_streams, 0);
}

TEST_F(ClaimSchedulerTest, AlreadyClaimedElsewhereIsRetriedAfterALease) {
  auto sink = ConnectRunner("runner-a", "s1");
  {
    InSequence seq;
    EXPECT_CALL(registry_, ClaimWakes(_, ClaimOf("/p"), _))
        .WillOnce(Replies(WithStatus(v1::ALREADY_CLAIMED)));
    EXPECT_CALL(registry_, ClaimWakes(_, ClaimOf("/p"), _))
        .WillOnce(Replies(Claimed("tok-1", "/p", {1})));
  }
  scheduler_->Trigger(kTenant, "/p", 0);
  executor_.RunAll();
  EXPECT_EQ(scheduler_->Health().counters.claims_skipped, 1);

  time_.Advance(kLease - absl::Milliseconds(1));
  EXPECT_EQ(executor_.queued(), 0u);
  time_.Advance(absl::Milliseconds(1));
  EXPECT_EQ(executor_.queued(), 1u);
  executor_.RunAll();
  EXPECT_THAT(sink->Tokens(), ElementsAre("tok-1"));

  EXPECT_CALL(registry_, AckWakes(_, TokenIs<v1::AckWakesRequest>("tok-1"), _))
      .WillOnce(Replies(Acked(1, false)));
  Captured<AckResult> ack;
  scheduler_->Ack(AckOf("runner-a", "s1", sink->claims[0]), ack.Callback());
  executor_.RunAll();
}

TEST_F(ClaimSchedulerTest, FailedClaimIsRetriedWithBackoffAndCounted) {
  auto sink = ConnectRunner("runner-a", "s1");
  {
    InSequence seq;
    EXPECT_CALL(registry_, ClaimWakes(_, ClaimOf("/p"), _))
        .WillOnce(Return(grpc::Status(grpc::StatusCode::UNAVAILABLE, "registry down")));
    EXPECT_CALL(registry_, ClaimWakes(_, ClaimOf("/p"), _))
        .WillOnce(Replies(Claimed("tok-1", "/p", {1})));
  }
  scheduler_->Trigger(kTenant, "/p", 0);
  executor_.RunAll();
  SchedulerHealth health = scheduler_->Health();
  EXPECT_EQ(health.counters.claims_failed, 1);
  EXPECT_THAT(health.last_error, HasSubstr("registry down"));
  EXPECT_EQ(health.queued_streams, 1);  // The trigger is kept, not dropped.

  scheduler_->Trigger(kTenant, "/p", 0);  // Coalesces with the pending retry.
  EXPECT_EQ(executor_.queued(), 0u);
  time_.Advance(absl::Milliseconds(100));  // The first backoff is at most retry_initial.
  EXPECT_EQ(executor_.queued(), 1u);
  executor_.RunAll();
  EXPECT_THAT(sink->Tokens(), ElementsAre("tok-1"));

  EXPECT_CALL(registry_, AckWakes(_, TokenIs<v1::AckWakesRequest>("tok-1"), _))
      .WillOnce(Replies(Acked(1, false)));
  Captured<AckResult> ack;
  scheduler_->Ack(AckOf("runner-a", "s1", sink->claims[0]), ack.Callback());
  executor_.RunAll();
}

// The registry may take a claim whose answer never arrives (the call's
// deadline passes after the commit). The retry carries the same idempotency
// key, so it gets that claim back instead of ALREADY_CLAIMED for a lease; a
// claim attempt after an answer has a key of its own.
TEST_F(ClaimSchedulerTest, ClaimRetriedAfterALostAnswerCarriesTheSameIdempotencyKey) {
  auto sink = ConnectRunner("runner-a", "s1");
  std::vector<std::string> keys;
  auto key_of = [&keys](grpc::ClientContext*, const v1::ClaimWakesRequest& request,
                        v1::ClaimWakesResponse*) { keys.push_back(request.idempotency_key()); };
  {
    InSequence seq;
    EXPECT_CALL(registry_, ClaimWakes(_, ClaimOf("/p"), _))
        .WillOnce(DoAll(Invoke(key_of), Return(grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED,
                                                            "Deadline Exceeded"))));
    EXPECT_CALL(registry_, ClaimWakes(_, ClaimOf("/p"), _))
        .WillOnce(DoAll(Invoke(key_of), Replies(Claimed("tok-1", "/p", {1}))));
    EXPECT_CALL(registry_, AckWakes(_, TokenIs<v1::AckWakesRequest>("tok-1"), _))
        .WillOnce(Replies(Acked(1, false)));
    EXPECT_CALL(registry_, ClaimWakes(_, ClaimOf("/p"), _))
        .WillOnce(DoAll(Invoke(key_of), Replies(Claimed("tok-2", "/p", {2}))));
  }
  scheduler_->Trigger(kTenant, "/p", 1);
  executor_.RunAll();
  time_.Advance(absl::Milliseconds(100));  // The first backoff is at most retry_initial.
  executor_.RunAll();
  ASSERT_THAT(sink->Tokens(), ElementsAre("tok-1"));
  ASSERT_EQ(keys.size(), 2u);
  EXPECT_EQ(keys[0].size(), 32u);
  EXPECT_EQ(keys[1], keys[0]);

  Captured<AckResult> ack;
  scheduler_->Ack(AckOf("runner-a", "s1", sink->claims[0]), ack.Callback());
  executor_.RunAll();
  scheduler_->Trigger(kTenant, "/p", 2);
  executor_.RunAll();
  ASSERT_THAT(sink->Tokens(), ElementsAre("tok-1", "tok-2"));
  ASSERT_EQ(keys.size(), 3u);
  EXPECT_EQ(keys[2].size(), 32u);
  EXPECT_NE(keys[2], keys[0]);
}

TEST_F(ClaimSchedulerTest, AnotherPrincipalCannotTakeOverAckOrHeartbeatARunnersSession) {
  auto sink = ConnectRunner("runner-a", "s1");  // Principal "".
  EXPECT_CALL(registry_, ClaimWakes(_, ClaimOf("/p"), _))
      .WillOnce(Replies(Claimed("tok-1", "/p", {1})));
  scheduler_->Trigger(kTenant, "/p", 0);
  executor_.RunAll();
  ASSERT_THAT(sink->Tokens(), ElementsAre("tok-1"));

  RunnerSpec intruder;
  intruder.runner_id = "runner-a";
  intruder.session_id = "s9";
  intruder.tenant_id = kTenant;
  intruder.principal = "mallory";
  EXPECT_THAT(scheduler_->Connect(intruder, std::make_shared<RecordingSink>()),
              StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("another principal")));
  EXPECT_FALSE(sink->closed.has_value());

  Captured<HeartbeatResult> beat;
  scheduler_->Heartbeat("runner-a", "s1", "mallory", beat.Callback());
  EXPECT_THAT(*beat.result,
              StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("another principal")));

  AckRequest ack;
  ack.runner_id = "runner-a";
  ack.session_id = "s1";
  ack.tenant_id = kTenant;
  ack.stream = "/p";
  ack.claim_token = "tok-1";
  ack.principal = "mallory";
  Captured<AckResult> acked;
  scheduler_->Ack(ack, acked.Callback());
  EXPECT_THAT(*acked.result,
              StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("another principal")));
  EXPECT_EQ(executor_.queued(), 0u);  // Nothing went to the registry.
}

TEST_F(ClaimSchedulerTest, OldSessionHeartbeatCannotSuppressTheNewSessions) {
  auto old_sink = ConnectRunner("runner-a", "s1");
  EXPECT_CALL(registry_, ClaimWakes(_, ClaimOf("/p"), _))
      .WillOnce(Replies(Claimed("tok-1", "/p", {1})))
      .WillOnce(Replies(Claimed("tok-2", "/p", {1})));
  scheduler_->Trigger(kTenant, "/p", 0);
  executor_.RunAll();
  ASSERT_THAT(old_sink->Tokens(), ElementsAre("tok-1"));

  // The old session heartbeats; its ExtendClaims is still in flight when the
  // runner restarts with a new session.
  EXPECT_CALL(registry_, ExtendClaims(_, Property(&v1::ExtendClaimsRequest::claims_size, 1), _))
      .WillOnce(Replies(Extended("/p", "tok-1", false)));
  Captured<HeartbeatResult> old_beat;
  scheduler_->Heartbeat("runner-a", "s1", "", old_beat.Callback());
  EXPECT_CALL(registry_, ReleaseClaim(_, TokenIs<v1::ReleaseClaimRequest>("tok-1"), _))
      .WillOnce(Released(1));
  auto new_sink = ConnectRunner("runner-a", "s2");
  ASSERT_TRUE(old_sink->closed.has_value());
  EXPECT_THAT(*old_sink->closed, StatusIs(absl::StatusCode::kAborted, HasSubstr("superseded")));
  executor_.RunAll();  // Old heartbeat lands, tok-1 released and claimed anew for s2.
  EXPECT_TRUE(old_beat.result->ok());
  ASSERT_THAT(new_sink->Tokens(), ElementsAre("tok-2"));

  // Later heartbeats of the old session are refused and touch nothing...
  Captured<HeartbeatResult> stale;
  scheduler_->Heartbeat("runner-a", "s1", "", stale.Callback());
  EXPECT_THAT(*stale.result,
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("session_id")));
  EXPECT_EQ(executor_.queued(), 0u);

  // ...while the current session's heartbeat extends its claim.
  EXPECT_CALL(registry_,
              ExtendClaims(_,
                           Property(&v1::ExtendClaimsRequest::claims,
                                    ElementsAre(Property(&v1::ClaimRef::claim_token, "tok-2"))),
                           _))
      .WillOnce(Replies(Extended("/p", "tok-2", true)));
  Captured<HeartbeatResult> beat;
  scheduler_->Heartbeat("runner-a", "s2", "", beat.Callback());
  executor_.RunAll();
  ASSERT_TRUE(beat.result->ok());
  EXPECT_EQ((*beat.result)->extended, 1);
  EXPECT_EQ((*beat.result)->lease_expires_at, absl::FromUnixSeconds(1767225700));

  // An old heartbeat never stops the current session's lease from being
  // kept: its claim survives a lease period of (new) heartbeats.
  time_.Advance(kLease / 2);
  EXPECT_CALL(registry_, ExtendClaims(_, _, _)).WillOnce(Replies(Extended("/p", "tok-2", true)));
  scheduler_->Heartbeat("runner-a", "s1", "", stale.Callback());
  scheduler_->Heartbeat("runner-a", "s2", "", beat.Callback());
  executor_.RunAll();
  time_.Advance(kLease / 2 + absl::Seconds(1));
  EXPECT_EQ(scheduler_->Health().active_claims, 1);
  EXPECT_EQ(executor_.queued(), 0u);

  EXPECT_CALL(registry_, AckWakes(_, TokenIs<v1::AckWakesRequest>("tok-2"), _))
      .WillOnce(Replies(Acked(1, false)));
  Captured<AckResult> ack;
  scheduler_->Ack(AckOf("runner-a", "s2", new_sink->claims[0]), ack.Callback());
  executor_.RunAll();
  EXPECT_TRUE(ack.result->ok());
}

// A runner's superseded session (an old process, a late retry) connecting
// again must not take the stream back from the current session: it would
// close that session and release its claims.
TEST_F(ClaimSchedulerTest, SupersededSessionCannotConnectAgainAndChangesNothing) {
  auto old_sink = ConnectRunner("runner-a", "s1");
  {
    InSequence seq;
    EXPECT_CALL(registry_, ClaimWakes(_, ClaimOf("/p"), _))
        .WillOnce(Replies(Claimed("tok-1", "/p", {1})));
    EXPECT_CALL(registry_, ReleaseClaim(_, TokenIs<v1::ReleaseClaimRequest>("tok-1"), _))
        .WillOnce(Released(1));
    EXPECT_CALL(registry_, ClaimWakes(_, ClaimOf("/p"), _))
        .WillOnce(Replies(Claimed("tok-2", "/p", {1})));
  }
  scheduler_->Trigger(kTenant, "/p", 0);
  executor_.RunAll();
  auto new_sink = ConnectRunner("runner-a", "s2");
  executor_.RunAll();
  ASSERT_THAT(new_sink->Tokens(), ElementsAre("tok-2"));

  RunnerSpec stale;
  stale.runner_id = "runner-a";
  stale.session_id = "s1";
  stale.tenant_id = kTenant;
  auto stale_sink = std::make_shared<RecordingSink>();
  EXPECT_THAT(scheduler_->Connect(stale, stale_sink),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       AllOf(HasSubstr("session_id"), HasSubstr("superseded"))));
  executor_.RunAll();  // StrictMock: no release, no claim.
  EXPECT_FALSE(new_sink->closed.has_value());
  EXPECT_FALSE(stale_sink->closed.has_value());
  SchedulerHealth health = scheduler_->Health();
  EXPECT_EQ(health.connected_runners, 1);
  EXPECT_EQ(health.active_claims, 1);
  EXPECT_EQ(health.counters.claims_released, 1);  // Only s1's own claim, on supersede.

  // The current session still heartbeats and acks its claim.
  EXPECT_CALL(registry_, ExtendClaims(_, _, _)).WillOnce(Replies(Extended("/p", "tok-2", true)));
  Captured<HeartbeatResult> beat;
  scheduler_->Heartbeat("runner-a", "s2", "", beat.Callback());
  executor_.RunAll();
  ASSERT_TRUE(beat.result->ok());
  EXPECT_EQ((*beat.result)->extended, 1);
  EXPECT_CALL(registry_, AckWakes(_, TokenIs<v1::AckWakesRequest>("tok-2"), _))
      .WillOnce(Replies(Acked(1, false)));
  Captured<AckResult> ack;
  scheduler_->Ack(AckOf("runner-a", "s2", new_sink->claims[0]), ack.Callback());
  executor_.RunAll();
  EXPECT_TRUE(ack.result->ok());

  // Reconnecting with the current session id is not refused.
  scheduler_->Disconnect(sessions_["runner-a/s2"]);
  ConnectRunner("runner-a", "s2");
  EXPECT_EQ(scheduler_->Health().connected_runners, 1);
}

TEST_F(ClaimSchedulerTest, AckFromAnotherSessionIsRefused) {
  auto sink = ConnectRunner("runner-a", "s1");
  ConnectRunner("runner-b", "s9");
  EXPECT_CALL(registry_, ClaimWakes(_, ClaimOf("/p"), _))
      .WillOnce(Replies(Claimed("tok-1", "/p", {1})));
  scheduler_->Trigger(kTenant, "/p", 0);
  executor_.RunAll();
  ASSERT_THAT(sink->Tokens(), ElementsAre("tok-1"));

  Captured<AckResult> ack;
  scheduler_->Ack(AckOf("runner-b", "s9", sink->claims[0]), ack.Callback());
  EXPECT_THAT(*ack.result,
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("claim_token")));
  EXPECT_EQ(executor_.queued(), 0u);

  EXPECT_CALL(registry_, ReleaseClaim(_, TokenIs<v1::ReleaseClaimRequest>("tok-1"), _))
      .WillOnce(Released(1));
  scheduler_->BeginShutdown();
  scheduler_->ReleaseAll();
  executor_.RunAll();
}

TEST_F(ClaimSchedulerTest, AckOfAClaimThisRuntimeDoesNotKnowGoesToTheRegistry) {
  // E.g. a claim delivered by an earlier runtime process.
  ConnectRunner("runner-a", "s1");
  EXPECT_CALL(registry_, AckWakes(_, TokenIs<v1::AckWakesRequest>("tok-old"), _))
      .WillOnce(Replies(Acked(2, true)));
  EXPECT_CALL(registry_, ClaimWakes(_, ClaimOf("/p"), _))
      .WillOnce(Replies(WithStatus(v1::NOTHING_PENDING)));
  AckRequest request;
  request.runner_id = "runner-a";
  request.session_id = "s1";
  request.tenant_id = kTenant;
  request.stream = "/p";
  request.claim_token = "tok-old";
  Captured<AckResult> ack;
  scheduler_->Ack(request, ack.Callback());
  executor_.RunAll();
  ASSERT_TRUE(ack.result->ok());
  EXPECT_TRUE((*ack.result)->more_pending);
}

grpc::Status Deadlock() {
  return grpc::Status(grpc::StatusCode::ABORTED, "deadlock detected; retry");
}

// ABORTED is how the store reports a deadlock or serialization failure: the
// same ack succeeds when made again, so the runtime retries it instead of
// giving the claim up.
TEST_F(ClaimSchedulerTest, AbortedAckIsRetriedAndSucceeds) {
  auto sink = ConnectRunner("runner-a", "s1");
  EXPECT_CALL(registry_, ClaimWakes(_, ClaimOf("/p"), _))
      .WillOnce(Replies(Claimed("tok-1", "/p", {1})));
  scheduler_->Trigger(kTenant, "/p", 0);
  executor_.RunAll();
  ASSERT_THAT(sink->Tokens(), ElementsAre("tok-1"));

  EXPECT_CALL(registry_, AckWakes(_, TokenIs<v1::AckWakesRequest>("tok-1"), _))
      .WillOnce(Return(Deadlock()))
      .WillOnce(Return(Deadlock()))
      .WillOnce(Replies(Acked(1, false)));
  Captured<AckResult> ack;
  scheduler_->Ack(AckOf("runner-a", "s1", sink->claims[0]), ack.Callback());
  executor_.RunAll();
  EXPECT_FALSE(ack.result.has_value());  // Not answered: retried after a short backoff.
  EXPECT_EQ(executor_.queued(), 0u);
  time_.Advance(absl::Milliseconds(10));
  executor_.RunAll();
  EXPECT_FALSE(ack.result.has_value());
  time_.Advance(absl::Milliseconds(20));
  executor_.RunAll();
  ASSERT_TRUE(ack.result.has_value());
  EXPECT_THAT(*ack.result, IsOkAndHolds(::testing::Field(&AckResult::acked, 1)));
  const SchedulerHealth health = scheduler_->Health();
  EXPECT_EQ(health.active_claims, 0);
  EXPECT_EQ(health.counters.claims_acked, 1);
  time_.Advance(3 * kLease);  // Nothing is left to redeliver.
  EXPECT_EQ(executor_.queued(), 0u);
}

TEST_F(ClaimSchedulerTest, AckAbortedOnEveryAttemptReachesTheRunnerAndTheClaimStaysDelivered) {
  auto sink = ConnectRunner("runner-a", "s1");
  EXPECT_CALL(registry_, ClaimWakes(_, ClaimOf("/p"), _))
      .WillOnce(Replies(Claimed("tok-1", "/p", {1})));
  scheduler_->Trigger(kTenant, "/p", 0);
  executor_.RunAll();
  ASSERT_THAT(sink->Tokens(), ElementsAre("tok-1"));

  EXPECT_CALL(registry_, AckWakes(_, TokenIs<v1::AckWakesRequest>("tok-1"), _))
      .Times(4)  // SchedulerOptions::max_ack_attempts
      .WillRepeatedly(Return(Deadlock()));
  Captured<AckResult> ack;
  scheduler_->Ack(AckOf("runner-a", "s1", sink->claims[0]), ack.Callback());
  executor_.RunAll();
  for (absl::Duration backoff :
       {absl::Milliseconds(10), absl::Milliseconds(20), absl::Milliseconds(40)}) {
    EXPECT_FALSE(ack.result.has_value());
    time_.Advance(backoff);
    executor_.RunAll();
  }
  ASSERT_TRUE(ack.result.has_value());
  EXPECT_THAT(*ack.result, StatusIs(absl::StatusCode::kAborted, HasSubstr("deadlock")));
  EXPECT_EQ(scheduler_->Health().active_claims, 1);
  EXPECT_THAT(scheduler_->Health().last_error, HasSubstr("ack acme//p"));

  // Still the runner's claim: its next ack goes through.
  EXPECT_CALL(registry_, AckWakes(_, TokenIs<v1::AckWakesRequest>("tok-1"), _))
      .WillOnce(Replies(Acked(1, false)));
  Captured<AckResult> again;
  scheduler_->Ack(AckOf("runner-a", "s1", sink->claims[0]), again.Callback());
  executor_.RunAll();
  EXPECT_THAT(*again.result, IsOkAndHolds(::testing::Field(&AckResult::acked, 1)));
  EXPECT_EQ(scheduler_->Health().active_claims, 0);
}

// A claim the registry no longer has is over: its ack is not retried, and
// the stream is claimed again so its wakes are redelivered.
TEST_F(ClaimSchedulerTest, AckOfAClaimThatIsGoneIsNotRetried) {
  auto sink = ConnectRunner("runner-a", "s1");
  {
    InSequence seq;
    EXPECT_CALL(registry_, ClaimWakes(_, ClaimOf("/p"), _))
        .WillOnce(Replies(Claimed("tok-1", "/p", {1})));
    EXPECT_CALL(registry_, AckWakes(_, TokenIs<v1::AckWakesRequest>("tok-1"), _))
        .WillOnce(Return(grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                                      "claim_token: the claim is not live")));
    EXPECT_CALL(registry_, ClaimWakes(_, ClaimOf("/p"), _))
        .WillOnce(Replies(WithStatus(v1::NOTHING_PENDING)));
  }
  scheduler_->Trigger(kTenant, "/p", 0);
  executor_.RunAll();
  Captured<AckResult> ack;
  scheduler_->Ack(AckOf("runner-a", "s1", sink->claims[0]), ack.Callback());
  executor_.RunAll();
  ASSERT_TRUE(ack.result.has_value());
  EXPECT_THAT(*ack.result, StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("not live")));
  time_.Advance(absl::Seconds(1));
  EXPECT_EQ(executor_.queued(), 0u);
  EXPECT_EQ(scheduler_->Health().active_claims, 0);
}

TEST_F(ClaimSchedulerTest, AbortedReleaseIsRetriedUntilItLands) {
  auto sink_a = ConnectRunner("runner-a", "s1");
  auto sink_b = ConnectRunner("runner-b", "s1");
  {
    InSequence seq;
    EXPECT_CALL(registry_, ClaimWakes(_, ClaimOf("/p"), _))
        .WillOnce(Replies(Claimed("tok-1", "/p", {1})));
    EXPECT_CALL(registry_, ReleaseClaim(_, TokenIs<v1::ReleaseClaimRequest>("tok-1"), _))
        .WillOnce(Return(Deadlock()))
        .WillOnce(Return(Deadlock()))
        .WillOnce(Released(1));
    // Only once the release landed is the stream claimed for another runner.
    EXPECT_CALL(registry_, ClaimWakes(_, ClaimOf("/p"), _))
        .WillOnce(Replies(Claimed("tok-2", "/p", {1})));
  }
  scheduler_->Trigger(kTenant, "/p", 0);
  executor_.RunAll();
  ASSERT_THAT(sink_a->Tokens(), ElementsAre("tok-1"));

  scheduler_->Disconnect(sessions_["runner-a/s1"]);
  executor_.RunAll();
  EXPECT_FALSE(scheduler_->AwaitSettled(absl::ZeroDuration()));  // The release is pending.
  time_.Advance(absl::Milliseconds(10));
  executor_.RunAll();
  time_.Advance(absl::Milliseconds(20));
  executor_.RunAll();
  EXPECT_THAT(sink_b->Tokens(), ElementsAre("tok-2"));
  EXPECT_EQ(scheduler_->Health().counters.claims_released, 1);

  EXPECT_CALL(registry_, AckWakes(_, TokenIs<v1::AckWakesRequest>("tok-2"), _))
      .WillOnce(Replies(Acked(1, false)));
  Captured<AckResult> ack;
  scheduler_->Ack(AckOf("runner-b", "s1", sink_b->claims[0]), ack.Callback());
  executor_.RunAll();
  EXPECT_TRUE(ack.result->ok());
}

TEST_F(ClaimSchedulerTest, ReleaseOfAClaimThatIsGoneIsNotRetried) {
  auto sink = ConnectRunner("runner-a", "s1");
  ConnectRunner("runner-b", "s1");
  {
    InSequence seq;
    EXPECT_CALL(registry_, ClaimWakes(_, ClaimOf("/p"), _))
        .WillOnce(Replies(Claimed("tok-1", "/p", {1})));
    EXPECT_CALL(registry_, ReleaseClaim(_, TokenIs<v1::ReleaseClaimRequest>("tok-1"), _))
        .WillOnce(Return(grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                                      "claim_token: the claim is not live")));
    // Redelivery: whoever holds the wakes now, this runtime looks for them.
    EXPECT_CALL(registry_, ClaimWakes(_, ClaimOf("/p"), _))
        .WillOnce(Replies(WithStatus(v1::NOTHING_PENDING)));
  }
  scheduler_->Trigger(kTenant, "/p", 0);
  executor_.RunAll();
  ASSERT_THAT(sink->Tokens(), ElementsAre("tok-1"));
  scheduler_->Disconnect(sessions_["runner-a/s1"]);
  executor_.RunAll();
  time_.Advance(absl::Seconds(1));
  EXPECT_EQ(executor_.queued(), 0u);
  EXPECT_TRUE(scheduler_->AwaitSettled(absl::ZeroDuration()));
  EXPECT_EQ(scheduler_->Health().counters.claims_released, 0);
}

// What the rescan asks: which pending wakes was this runtime never told of?
TEST_F(ClaimSchedulerTest, UnaccountedWakesAreThoseNeverAnnouncedClaimedParkedOrAcked) {
  auto sink = ConnectRunner("runner-a", "s1");
  EXPECT_CALL(registry_, ClaimWakes(_, ClaimOf("/p"), _))
      .WillOnce(Replies(Claimed("tok-1", "/p", {1, 2})));
  scheduler_->Trigger(kTenant, "/p", 1);
  scheduler_->Trigger("beta", "/parked", 5);  // No runner of tenant beta.
  executor_.RunAll();
  const std::vector<PendingStream> pending = {
      {kTenant, "/p", {1, 2, 3}}, {"beta", "/parked", {5, 6}}, {kTenant, "/never", {9}}};
  auto ids = [](const std::vector<PendingStream>& streams) {
    std::vector<std::string> out;
    for (const PendingStream& stream : streams) {
      for (int64_t id : stream.wake_ids) out.push_back(absl::StrCat(stream.stream, ":", id));
    }
    return out;
  };
  // 1 announced, 2 carried by the claim, 5 announced to a parked stream.
  EXPECT_THAT(ids(scheduler_->Unaccounted(pending)), ElementsAre("/p:3", "/parked:6", "/never:9"));

  EXPECT_CALL(registry_, AckWakes(_, TokenIs<v1::AckWakesRequest>("tok-1"), _))
      .WillOnce(Replies(Acked(2, false)));
  Captured<AckResult> ack;
  scheduler_->Ack(AckOf("runner-a", "s1", sink->claims[0]), ack.Callback());
  executor_.RunAll();
  ASSERT_TRUE(ack.result->ok());
  // Acked (2 was never announced): still accounted for, the snapshot was older.
  EXPECT_THAT(ids(scheduler_->Unaccounted(pending)), ElementsAre("/p:3", "/parked:6", "/never:9"));
}

TEST_F(ClaimSchedulerTest, RunnerDisconnectReleasesItsClaimsForRedelivery) {
  auto sink_a = ConnectRunner("runner-a", "s1");
  auto sink_b = ConnectRunner("runner-b", "s1");
  {
    InSequence seq;
    EXPECT_CALL(registry_, ClaimWakes(_, ClaimOf("/p"), _))
        .WillOnce(Replies(Claimed("tok-1", "/p", {1, 2})));
    EXPECT_CALL(registry_, ReleaseClaim(_,
                                        AllOf(TokenIs<v1::ReleaseClaimRequest>("tok-1"),
                                              Property(&v1::ReleaseClaimRequest::stream, "/p")),
                                        _))
        .WillOnce(Released(2));
    EXPECT_CALL(registry_, ClaimWakes(_, ClaimOf("/p"), _))
        .WillOnce(Replies(Claimed("tok-2", "/p", {1, 2})));
  }
  scheduler_->Trigger(kTenant, "/p", 0);
  executor_.RunAll();
  ASSERT_THAT(sink_a->Tokens(), ElementsAre("tok-1"));  // Round robin starts with a.

  scheduler_->Disconnect(sessions_["runner-a/s1"]);
  executor_.RunAll();
  EXPECT_THAT(sink_b->Tokens(), ElementsAre("tok-2"));
  EXPECT_THAT(WakeIds(sink_b->claims[0]), ElementsAre(1, 2));
  const SchedulerHealth health = scheduler_->Health();
  EXPECT_EQ(health.counters.claims_released, 1);
  EXPECT_EQ(health.connected_runners, 1);

  EXPECT_CALL(registry_, AckWakes(_, TokenIs<v1::AckWakesRequest>("tok-2"), _))
      .WillOnce(Replies(Acked(2, false)));
  Captured<AckResult> ack;
  scheduler_->Ack(AckOf("runner-b", "s1", sink_b->claims[0]), ack.Callback());
  executor_.RunAll();
  EXPECT_TRUE(ack.result->ok());
}

// Claims follow runners: a runtime without a runner for a stream does not
// claim it (another runtime may have one), but keeps the trigger.
TEST_F(ClaimSchedulerTest, WithoutARunnerTheStreamIsParkedAndClaimedWhenOneConnects) {
  scheduler_->Trigger(kTenant, "/p", 7);
  EXPECT_EQ(executor_.queued(), 0u);  // StrictMock: no ClaimWakes.
  SchedulerHealth health = scheduler_->Health();
  EXPECT_EQ(health.waiting_for_runner, 1);
  EXPECT_EQ(health.queued_streams, 1);
  EXPECT_EQ(health.active_claims, 0);
  time_.Advance(3 * kLease);  // Parked, not given up.
  EXPECT_EQ(executor_.queued(), 0u);

  EXPECT_CALL(registry_, ClaimWakes(_, ClaimOf("/p"), _))
      .WillOnce(Replies(Claimed("tok-1", "/p", {7})));
  auto sink = ConnectRunner("runner-a", "s1");
  executor_.RunAll();
  ASSERT_THAT(sink->Tokens(), ElementsAre("tok-1"));
  health = scheduler_->Health();
  EXPECT_EQ(health.waiting_for_runner, 0);
  EXPECT_EQ(health.queued_streams, 0);

  EXPECT_CALL(registry_, AckWakes(_, TokenIs<v1::AckWakesRequest>("tok-1"), _))
      .WillOnce(Replies(Acked(1, false)));
  Captured<AckResult> ack;
  scheduler_->Ack(AckOf("runner-a", "s1", sink->claims[0]), ack.Callback());
  executor_.RunAll();
  EXPECT_TRUE(ack.result->ok());
}

TEST_F(ClaimSchedulerTest, NoClaimWithoutARunnerOfTheTenantWithAMatchingPrefixAndRoom) {
  auto full = ConnectRunner("runner-full", "s1", /*max_in_flight=*/1, {"/busy/", "/p"});
  EXPECT_CALL(registry_, ClaimWakes(_, ClaimOf("/busy/1"), _))
      .WillOnce(Replies(Claimed("tok-busy", "/busy/1", {1})));
  scheduler_->Trigger(kTenant, "/busy/1", 0);
  executor_.RunAll();
  ASSERT_THAT(full->Tokens(), ElementsAre("tok-busy"));

  RunnerSpec other_tenant;
  other_tenant.runner_id = "runner-beta";
  other_tenant.session_id = "s1";
  other_tenant.tenant_id = "beta";
  ASSERT_TRUE(scheduler_->Connect(other_tenant, std::make_shared<RecordingSink>()).ok());
  ConnectRunner("runner-prefix", "s1", /*max_in_flight=*/16, {"/q/"});

  // Wrong tenant, wrong prefix, no room: StrictMock fails on any ClaimWakes.
  scheduler_->Trigger(kTenant, "/p", 2);
  executor_.RunAll();
  EXPECT_EQ(scheduler_->Health().waiting_for_runner, 1);

  // Room again (the busy claim is acked): now /p is claimed, for that runner.
  {
    InSequence seq;
    EXPECT_CALL(registry_, AckWakes(_, TokenIs<v1::AckWakesRequest>("tok-busy"), _))
        .WillOnce(Replies(Acked(1, false)));
    EXPECT_CALL(registry_, ClaimWakes(_, ClaimOf("/p"), _))
        .WillOnce(Replies(Claimed("tok-p", "/p", {2})));
  }
  Captured<AckResult> ack;
  scheduler_->Ack(AckOf("runner-full", "s1", full->claims[0]), ack.Callback());
  executor_.RunAll();
  EXPECT_TRUE(ack.result->ok());
  EXPECT_THAT(full->Tokens(), ElementsAre("tok-busy", "tok-p"));
  EXPECT_EQ(scheduler_->Health().waiting_for_runner, 0);

  EXPECT_CALL(registry_, ReleaseClaim(_, TokenIs<v1::ReleaseClaimRequest>("tok-p"), _))
      .WillOnce(Released(1));
  scheduler_->BeginShutdown();
  scheduler_->ReleaseAll();
  executor_.RunAll();
}

// Room is taken when ClaimWakes is sent, not when its answer comes: the
// runtime never claims more than its runners can take.
TEST_F(ClaimSchedulerTest, RoomIsReservedWhenTheClaimIsSent) {
  auto sink = ConnectRunner("runner-a", "s1", /*max_in_flight=*/2);
  std::vector<std::string> claimed;
  EXPECT_CALL(registry_, ClaimWakes(_, _, _))
      .WillRepeatedly([&claimed](grpc::ClientContext*, const v1::ClaimWakesRequest& request,
                                 v1::ClaimWakesResponse* response) {
        claimed.push_back(request.stream());
        *response = Claimed("tok" + request.stream(), request.stream(), {1});
        return grpc::Status::OK;
      });
  for (const char* stream : {"/a", "/b", "/c", "/d"}) scheduler_->Trigger(kTenant, stream, 0);
  EXPECT_EQ(executor_.queued(), 2u);  // Two calls in flight, none answered yet.
  EXPECT_EQ(scheduler_->Health().waiting_for_runner, 2);
  executor_.RunAll();
  EXPECT_THAT(claimed, ElementsAre("/a", "/b"));
  EXPECT_THAT(sink->Tokens(), ElementsAre("tok/a", "tok/b"));

  // A claim that finds nothing gives its room back at once.
  EXPECT_CALL(registry_, AckWakes(_, TokenIs<v1::AckWakesRequest>("tok/a"), _))
      .WillOnce(Replies(Acked(1, false)));
  Captured<AckResult> ack;
  scheduler_->Ack(AckOf("runner-a", "s1", sink->claims[0]), ack.Callback());
  executor_.RunAll();
  EXPECT_THAT(claimed, ElementsAre("/a", "/b", "/c"));
  EXPECT_EQ(scheduler_->Health().waiting_for_runner, 1);

  EXPECT_CALL(registry_, ReleaseClaim(_, _, _)).Times(2).WillRepeatedly(Released(1));
  scheduler_->BeginShutdown();
  scheduler_->ReleaseAll();
  executor_.RunAll();
}

TEST_F(ClaimSchedulerTest, ParkedStreamsAreClaimedInTheirQueuedOrder) {
  std::vector<std::string> claimed;
  EXPECT_CALL(registry_, ClaimWakes(_, _, _))
      .WillRepeatedly([&claimed](grpc::ClientContext*, const v1::ClaimWakesRequest& request,
                                 v1::ClaimWakesResponse* response) {
        claimed.push_back(request.stream());
        *response = Claimed("tok" + request.stream(), request.stream(), {1});
        return grpc::Status::OK;
      });
  for (const char* stream : {"/c", "/a", "/d", "/b"}) scheduler_->Trigger(kTenant, stream, 0);
  scheduler_->Trigger(kTenant, "/a", 0);  // Coalesces: /a keeps its place.
  EXPECT_EQ(scheduler_->Health().waiting_for_runner, 4);

  // Room for two: the two oldest.
  auto sink = ConnectRunner("runner-a", "s1", /*max_in_flight=*/2);
  executor_.RunAll();
  EXPECT_THAT(claimed, ElementsAre("/c", "/a"));

  // Each ack makes room for the next one in line.
  EXPECT_CALL(registry_, AckWakes(_, _, _)).WillRepeatedly(Replies(Acked(1, false)));
  for (size_t i = 0; i < 2; ++i) {
    Captured<AckResult> ack;
    scheduler_->Ack(AckOf("runner-a", "s1", sink->claims[i]), ack.Callback());
    executor_.RunAll();
    EXPECT_TRUE(ack.result->ok());
  }
  EXPECT_THAT(claimed, ElementsAre("/c", "/a", "/d", "/b"));
  EXPECT_EQ(scheduler_->Health().waiting_for_runner, 0);

  EXPECT_CALL(registry_, ReleaseClaim(_, _, _)).Times(2).WillRepeatedly(Released(1));
  scheduler_->BeginShutdown();
  scheduler_->ReleaseAll();
  executor_.RunAll();
}

// The runner a claim was taken for left while ClaimWakes was in flight.
TEST_F(ClaimSchedulerTest, ClaimWhoseRunnerLeftMidClaimGoesToAnotherRunner) {
  ConnectRunner("runner-a", "s1");
  EXPECT_CALL(registry_, ClaimWakes(_, ClaimOf("/p"), _))
      .WillOnce(Replies(Claimed("tok-1", "/p", {1})));
  scheduler_->Trigger(kTenant, "/p", 0);
  auto sink_b = ConnectRunner("runner-b", "s1");
  scheduler_->Disconnect(sessions_["runner-a/s1"]);
  executor_.RunAll();
  EXPECT_THAT(sink_b->Tokens(), ElementsAre("tok-1"));

  EXPECT_CALL(registry_, AckWakes(_, TokenIs<v1::AckWakesRequest>("tok-1"), _))
      .WillOnce(Replies(Acked(1, false)));
  Captured<AckResult> ack;
  scheduler_->Ack(AckOf("runner-b", "s1", sink_b->claims[0]), ack.Callback());
  executor_.RunAll();
  EXPECT_TRUE(ack.result->ok());
}

// A claim no runner here can take is given back after a short hold, not
// kept alive: another runtime may have a runner for it.
TEST_F(ClaimSchedulerTest, HeldClaimIsReleasedAfterTheHoldTimeoutNotExtended) {
  {
    InSequence seq;
    EXPECT_CALL(registry_, ClaimWakes(_, ClaimOf("/p"), _))
        .WillOnce(Replies(Claimed("tok-1", "/p", {1})));
    EXPECT_CALL(registry_, ReleaseClaim(_, TokenIs<v1::ReleaseClaimRequest>("tok-1"), _))
        .WillOnce(Released(1));
  }
  // Held: the runner it was claimed for left while ClaimWakes was in flight.
  ConnectRunner("runner-a", "s1");
  scheduler_->Trigger(kTenant, "/p", 1);
  scheduler_->Disconnect(sessions_["runner-a/s1"]);
  executor_.RunAll();
  EXPECT_EQ(scheduler_->Health().active_claims, 1);
  time_.Advance(absl::Milliseconds(999));  // SchedulerOptions::hold_timeout is 1s.
  EXPECT_EQ(executor_.queued(), 0u);
  time_.Advance(absl::Milliseconds(1));
  executor_.RunAll();
  SchedulerHealth health = scheduler_->Health();
  EXPECT_EQ(health.active_claims, 0);
  EXPECT_EQ(health.counters.claims_released, 1);
  // Still no runner: the stream waits here, unclaimed and never extended.
  EXPECT_EQ(health.waiting_for_runner, 1);
  time_.Advance(3 * kLease);
  EXPECT_EQ(executor_.queued(), 0u);

  // A runner comes: the stream is claimed for it.
  EXPECT_CALL(registry_, ClaimWakes(_, ClaimOf("/p"), _))
      .WillOnce(Replies(Claimed("tok-2", "/p", {1})));
  auto sink = ConnectRunner("runner-b", "s1");
  executor_.RunAll();
  EXPECT_THAT(sink->Tokens(), ElementsAre("tok-2"));
  EXPECT_CALL(registry_, AckWakes(_, TokenIs<v1::AckWakesRequest>("tok-2"), _))
      .WillOnce(Replies(Acked(1, false)));
  Captured<AckResult> ack;
  scheduler_->Ack(AckOf("runner-b", "s1", sink->claims[0]), ack.Callback());
  executor_.RunAll();
  EXPECT_TRUE(ack.result->ok());
}

TEST_F(ClaimSchedulerTest, HeldClaimGoesToARunnerThatConnectsWithinTheHold) {
  EXPECT_CALL(registry_, ClaimWakes(_, ClaimOf("/p"), _))
      .WillOnce(Replies(Claimed("tok-1", "/p", {1})));
  ConnectRunner("runner-a", "s1");
  scheduler_->Trigger(kTenant, "/p", 0);
  scheduler_->Disconnect(sessions_["runner-a/s1"]);
  executor_.RunAll();
  time_.Advance(absl::Milliseconds(500));
  auto sink = ConnectRunner("runner-b", "s1");
  EXPECT_THAT(sink->Tokens(), ElementsAre("tok-1"));
  time_.Advance(absl::Seconds(1));  // No release: it is delivered.
  EXPECT_EQ(executor_.queued(), 0u);

  EXPECT_CALL(registry_, AckWakes(_, TokenIs<v1::AckWakesRequest>("tok-1"), _))
      .WillOnce(Replies(Acked(1, false)));
  Captured<AckResult> ack;
  scheduler_->Ack(AckOf("runner-b", "s1", sink->claims[0]), ack.Callback());
  executor_.RunAll();
  EXPECT_TRUE(ack.result->ok());
}

// A heartbeat finds the claim gone in the registry (it expired and another
// runtime took it): this runtime gives it up and claims the stream again.
TEST_F(ClaimSchedulerTest, DeliveredClaimTheRegistryNoLongerExtendsIsClaimedAgain) {
  auto sink = ConnectRunner("runner-a", "s1");
  {
    InSequence seq;
    EXPECT_CALL(registry_, ClaimWakes(_, ClaimOf("/p"), _))
        .WillOnce(Replies(Claimed("tok-1", "/p", {1})));
    EXPECT_CALL(registry_, ExtendClaims(_, _, _)).WillOnce(Replies(Extended("/p", "tok-1", false)));
    EXPECT_CALL(registry_, ClaimWakes(_, ClaimOf("/p"), _))
        .WillOnce(Replies(WithStatus(v1::ALREADY_CLAIMED)));
  }
  scheduler_->Trigger(kTenant, "/p", 0);
  executor_.RunAll();
  Captured<HeartbeatResult> beat;
  scheduler_->Heartbeat("runner-a", "s1", "", beat.Callback());
  executor_.RunAll();
  ASSERT_TRUE(beat.result->ok());
  EXPECT_EQ((*beat.result)->extended, 0);
  EXPECT_EQ(scheduler_->Health().active_claims, 0);

  // Its ack now goes to the registry, which has the last word on the token.
  EXPECT_CALL(registry_, AckWakes(_, TokenIs<v1::AckWakesRequest>("tok-1"), _))
      .WillOnce(Return(grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                                    "claim_token: the claim is not live")));
  Captured<AckResult> ack;
  scheduler_->Ack(AckOf("runner-a", "s1", sink->claims[0]), ack.Callback());
  executor_.RunAll();
  EXPECT_THAT(*ack.result, StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("live")));

  // ALREADY_CLAIMED is looked at again after a lease.
  EXPECT_CALL(registry_, ClaimWakes(_, ClaimOf("/p"), _))
      .WillOnce(Replies(WithStatus(v1::NOTHING_PENDING)));
  time_.Advance(kLease);
  executor_.RunAll();
}

TEST_F(ClaimSchedulerTest, RoundRobinRespectsCapacityAndPrefixes) {
  auto sink_a = ConnectRunner("runner-a", "s1", /*max_in_flight=*/1, {"/a/"});
  auto sink_b = ConnectRunner("runner-b", "s1", /*max_in_flight=*/2);
  EXPECT_CALL(registry_, ClaimWakes(_, _, _))
      .WillRepeatedly([](grpc::ClientContext*, const v1::ClaimWakesRequest& request,
                         v1::ClaimWakesResponse* response) {
        *response = Claimed("tok" + request.stream(), request.stream(), {1});
        return grpc::Status::OK;
      });
  for (const char* stream : {"/a/1", "/a/2", "/b/1", "/a/3"}) {
    scheduler_->Trigger(kTenant, stream, 0);
    executor_.RunAll();
  }
  EXPECT_THAT(sink_a->Tokens(), ElementsAre("tok/a/1"));
  EXPECT_THAT(sink_b->Tokens(), ElementsAre("tok/a/2", "tok/b/1"));
  // /a/3 waits for room, unclaimed.
  EXPECT_EQ(scheduler_->Health().active_claims, 3);
  EXPECT_EQ(scheduler_->Health().waiting_for_runner, 1);

  EXPECT_CALL(registry_, AckWakes(_, _, _)).WillOnce(Replies(Acked(1, false)));
  Captured<AckResult> ack;
  scheduler_->Ack(AckOf("runner-a", "s1", sink_a->claims[0]), ack.Callback());
  executor_.RunAll();
  EXPECT_THAT(sink_a->Tokens(), ElementsAre("tok/a/1", "tok/a/3"));

  EXPECT_CALL(registry_, ReleaseClaim(_, _, _)).Times(3).WillRepeatedly(Released(1));
  scheduler_->BeginShutdown();
  scheduler_->ReleaseAll();
  executor_.RunAll();
  EXPECT_EQ(scheduler_->Health().active_claims, 0);
}

TEST_F(ClaimSchedulerTest, ShutdownReleasesHeldClaimsAndStopsClaiming) {
  EXPECT_CALL(registry_, ClaimWakes(_, ClaimOf("/p"), _))
      .WillOnce(Replies(Claimed("tok-1", "/p", {1})));
  // Held: its runner left while ClaimWakes was in flight.
  ConnectRunner("runner-a", "s1");
  scheduler_->Trigger(kTenant, "/p", 0);
  scheduler_->Disconnect(sessions_["runner-a/s1"]);
  executor_.RunAll();
  ASSERT_EQ(scheduler_->Health().active_claims, 1);

  EXPECT_CALL(registry_, ReleaseClaim(_, TokenIs<v1::ReleaseClaimRequest>("tok-1"), _))
      .WillOnce(Released(1));
  scheduler_->BeginShutdown();
  scheduler_->Trigger(kTenant, "/q", 0);  // Ignored: no new claims.
  executor_.RunAll();
  EXPECT_TRUE(scheduler_->AwaitSettled(absl::ZeroDuration()));
  EXPECT_EQ(scheduler_->Health().counters.claims_released, 1);

  RunnerSpec spec;
  spec.runner_id = "runner-b";
  spec.session_id = "s1";
  spec.tenant_id = kTenant;
  EXPECT_THAT(scheduler_->Connect(spec, std::make_shared<RecordingSink>()),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("shutting down")));
}

}  // namespace
}  // namespace wake::runtime
