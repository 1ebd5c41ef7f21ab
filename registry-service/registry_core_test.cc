#include "registry-service/registry_core.h"

#include <atomic>
#include <thread>

#include "common/simulated_time_source.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/mocks/registry/mocks.h"
#include "tests/mocks/sync/mocks.h"
#include "tests/support/status_matchers.h"

namespace wake::registry {
namespace {

using ::testing::_;
using ::testing::Field;
using ::testing::HasSubstr;
using ::testing::Return;
using ::testing::StrictMock;
using ::wake::testing::StatusIs;

class RegistryCoreTest : public ::testing::Test {
 protected:
  RegistryCoreTest() : collection_(time_), evaluator_(collection_, store_, time_, executor_) {
    collection_.OnReset();
    collection_.OnUpToDate();
    RegistryOptions options;
    options.sweep_interval = absl::Seconds(1);
    options.write_confirm_timeout = absl::Seconds(2);
    core_ = std::make_unique<RegistryCore>(collection_, sync_, store_, evaluator_, time_, executor_,
                                           options);
  }

  v1::RegisterWakeRequest Register() {
    v1::RegisterWakeRequest request;
    request.set_tenant_id("t");
    request.set_subscriber_url("/p");
    request.set_source_url("/c");
    request.mutable_condition()->mutable_run_finished();
    return request;
  }

  void SyncInsert(const sync::Registration& row, int64_t txid) {
    sync::SyncBatch batch;
    sync::RowChange change;
    change.registration = row;
    batch.changes.push_back(change);
    batch.txids = {txid};
    collection_.OnBatch(batch);
  }

  common::SimulatedTimeSource time_;
  common::ManualExecutor executor_;
  sync::RegistrationCollection collection_;
  StrictMock<MockWakeStore> store_;
  StrictMock<sync::MockSyncSource> sync_;
  Evaluator evaluator_;
  std::unique_ptr<RegistryCore> core_;
};

TEST_F(RegistryCoreTest, RegisterReturnsOnceTheTxidIsSynced) {
  sync::Registration stored;
  stored.id = 11;
  stored.tenant_id = "t";
  stored.subscriber_url = "/p";
  stored.source_url = "/c";
  EXPECT_CALL(store_, UpsertRegistration(Field(&sync::Registration::subscriber_url, "/p")))
      .WillOnce([&](const sync::Registration&) {
        // The stream shows the commit before the writer returns, as it often does.
        SyncInsert(stored, 900);
        return UpsertResult{stored, true, 900};
      });
  auto response = core_->RegisterWake(Register());
  ASSERT_TRUE(response.ok()) << response.status();
  EXPECT_TRUE(response->created());
  EXPECT_TRUE(response->confirmed());
  EXPECT_EQ(response->txid(), 900);
  EXPECT_EQ(response->registration().id(), 11);
  EXPECT_EQ(collection_.PendingMutations(), 0u);
}

TEST_F(RegistryCoreTest, FailedRegisterRollsBackAndWritesNothing) {
  EXPECT_CALL(store_, UpsertRegistration(_))
      .WillOnce(Return(absl::UnavailableError("database unavailable: gone")));
  EXPECT_THAT(core_->RegisterWake(Register()),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("gone")));
  EXPECT_EQ(collection_.PendingMutations(), 0u);
  EXPECT_EQ(collection_.size(), 0u);
}

TEST_F(RegistryCoreTest, StrongEvaluationPassesTheBarrierFirst) {
  v1::EvaluateRunFinishedRequest request;
  request.set_tenant_id("t");
  request.set_source_url("/c");
  request.set_run_key("r");
  request.set_status(v1::COMPLETED);
  EXPECT_CALL(sync_, Barrier(_)).WillOnce(Return(absl::UnavailableError("sync down")));
  EXPECT_THAT(core_->EvaluateRunFinished(request),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("sync down")));
  request.set_consistency(v1::LOCAL);  // No barrier call expected.
  auto response = core_->EvaluateRunFinished(request);
  ASSERT_TRUE(response.ok());
  EXPECT_EQ(response->wakes_size(), 0);
}

TEST_F(RegistryCoreTest, TenantScopedRegistryRejectsOtherTenants) {
  RegistryOptions options;
  options.tenant = "acme";
  options.sweep_interval = absl::ZeroDuration();
  RegistryCore scoped(collection_, sync_, store_, evaluator_, time_, executor_, options);
  EXPECT_TRUE(scoped.CheckTenant("acme").ok());
  EXPECT_THAT(scoped.CheckTenant("other"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("tenant_id")));
}

TEST_F(RegistryCoreTest, SweeperReleasesExpiredClaimsPeriodically) {
  EXPECT_CALL(store_, ReleaseExpiredClaims()).WillOnce(Return(2)).WillOnce(Return(0));
  EXPECT_CALL(store_, DueDebounceWindows(_))
      .Times(2)
      .WillRepeatedly(Return(std::vector<WindowKey>()));
  // Event keys are looked at on the first sweep, then every 10 s.
  EXPECT_CALL(store_, SweepEventKeys(_, _)).WillOnce(Return(0));
  time_.Advance(absl::Seconds(1));
  executor_.RunAll();
  time_.Advance(absl::Seconds(1));
  executor_.RunAll();
}

TEST_F(RegistryCoreTest, EventKeysAreSweptEveryTenSeconds) {
  EXPECT_CALL(store_, ReleaseExpiredClaims()).Times(11).WillRepeatedly(Return(0));
  EXPECT_CALL(store_, DueDebounceWindows(_))
      .Times(11)
      .WillRepeatedly(Return(std::vector<WindowKey>()));
  EXPECT_CALL(store_, SweepEventKeys(_, _)).Times(2).WillRepeatedly(Return(0));
  for (int i = 0; i < 11; ++i) {
    time_.Advance(absl::Seconds(1));
    executor_.RunAll();
  }
}

TEST_F(RegistryCoreTest, SweeperClosesDueWindowsAndForgetsKeysInSmallBatches) {
  EXPECT_CALL(store_, ReleaseExpiredClaims()).WillOnce(Return(0));
  EXPECT_CALL(store_, DueDebounceWindows(100)).WillOnce(Return(std::vector<WindowKey>{{"t", 3}}));
  WindowResult fired;
  fired.outcome = WindowResult::Outcome::kFired;
  EXPECT_CALL(store_, CloseDebounceWindow(Field(&WindowKey::registration_id, 3)))
      .WillOnce(Return(fired));
  // Full batches go on; the first short one ends this sweep.
  EXPECT_CALL(store_, SweepEventKeys(_, 1000))
      .WillOnce(Return(1000))
      .WillOnce(Return(1000))
      .WillOnce(Return(17));
  time_.Advance(absl::Seconds(1));
  executor_.RunAll();
}

class RegistryCoreClaimTest : public RegistryCoreTest {
 protected:
  void SyncPendingWake(int64_t id, const std::string& stream) {
    sync::SyncBatch batch;
    sync::RowChange change;
    change.table = sync::SyncTable::kWakes;
    change.wake = sync::WakeRow{id, "t", stream, 1, true};
    batch.changes.push_back(change);
    batch.txids = {id + 1000};
    collection_.OnBatch(batch);
  }

  v1::ClaimWakesRequest Claim() {
    v1::ClaimWakesRequest request;
    request.set_tenant_id("t");
    request.set_stream("/p");
    request.set_runner_id("r");
    return request;
  }

  // Runs ClaimWakes on its own thread until it returns, advancing the
  // simulated clock by 16 ms (the longest backoff) once per store call that
  // is followed by a sleep. `calls` counts store calls (the mocks bump it).
  absl::StatusOr<v1::ClaimWakesResponse> ClaimAdvancing() {
    absl::StatusOr<v1::ClaimWakesResponse> response;
    Advancing([&] { response = core_->ClaimWakes(Claim(), absl::Seconds(30)); });
    return response;
  }

  // Runs `call` on its own thread until it returns, advancing the clock as
  // ClaimAdvancing does.
  void Advancing(const std::function<void()>& call) {
    std::atomic<bool> done{false};
    std::thread caller([&] {
      call();
      done = true;
    });
    int advanced = 0;
    while (!done) {
      if (time_.Sleepers() > 0 && calls_ > advanced) {
        ++advanced;
        time_.Advance(absl::Milliseconds(16));
      } else {
        std::this_thread::yield();
      }
    }
    caller.join();
  }

  std::atomic<int> calls_{0};

  // A store action that returns `result` and counts the call.
  std::function<absl::StatusOr<ClaimResult>(const std::string&, const std::string&,
                                            const std::string&, const std::string&, absl::Duration)>
  Counted(ClaimResult result) {
    return [this, result](const std::string&, const std::string&, const std::string&,
                          const std::string&, absl::Duration) -> absl::StatusOr<ClaimResult> {
      ++calls_;
      return result;
    };
  }

  ClaimResult Claimed() {
    ClaimResult result;
    result.status = v1::CLAIMED;
    result.claim_token = "tok";
    result.wakes.emplace_back().set_id(7);
    return result;
  }
};

TEST_F(RegistryCoreClaimTest, NothingPendingIsAnsweredAtOnceWhenNoWakeWasAnnounced) {
  ClaimResult nothing;
  nothing.status = v1::NOTHING_PENDING;
  EXPECT_CALL(store_, ClaimWakes("t", "/p", "r", _, _)).WillOnce(Return(nothing));
  SyncPendingWake(5, "/other");
  auto response = core_->ClaimWakes(Claim(), absl::Seconds(30));
  ASSERT_TRUE(response.ok()) << response.status();
  EXPECT_EQ(response->status(), v1::NOTHING_PENDING);
}

TEST_F(RegistryCoreClaimTest, AnnouncedWakeNotYetVisibleIsClaimedOnARetry) {
  ClaimResult nothing;
  nothing.status = v1::NOTHING_PENDING;
  ::testing::InSequence in_order;
  EXPECT_CALL(store_, ClaimWakes("t", "/p", "r", _, _))
      .WillOnce(Counted(nothing))
      .WillOnce(Counted(nothing))
      .WillOnce(Counted(Claimed()));
  SyncPendingWake(7, "/p");
  auto response = ClaimAdvancing();
  ASSERT_TRUE(response.ok()) << response.status();
  EXPECT_EQ(response->status(), v1::CLAIMED);
  EXPECT_EQ(response->claim_token(), "tok");
  ASSERT_EQ(response->wakes_size(), 1);
  EXPECT_EQ(response->wakes(0).id(), 7);
}

TEST_F(RegistryCoreClaimTest, RetriesStopAfterTheVisibilityWait) {
  ClaimResult nothing;
  nothing.status = v1::NOTHING_PENDING;
  // 0.5 + 1 + 2 + 4 + 8 + 16 * 15 = 255.5 ms: the first retry past 250 ms is the last.
  EXPECT_CALL(store_, ClaimWakes("t", "/p", "r", _, _)).Times(21).WillRepeatedly(Counted(nothing));
  SyncPendingWake(7, "/p");
  auto response = ClaimAdvancing();
  ASSERT_TRUE(response.ok()) << response.status();
  EXPECT_EQ(response->status(), v1::NOTHING_PENDING);
}

TEST_F(RegistryCoreClaimTest, StoreErrorsAreNotRetried) {
  EXPECT_CALL(store_, ClaimWakes("t", "/p", "r", _, _))
      .WillOnce(Return(absl::UnavailableError("database down")));
  SyncPendingWake(7, "/p");
  EXPECT_THAT(core_->ClaimWakes(Claim(), absl::Seconds(30)),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("database down")));
}

MATCHER_P(StreamsAre, streams, "") {
  std::vector<std::string> got;
  for (const ClaimSpec& spec : arg) got.push_back(spec.stream);
  return got == streams;
}

MATCHER_P3(KeyIs, tenant, stream, token, "") {
  return arg.tenant_id == tenant && arg.stream == stream && arg.claim_token == token;
}

TEST_F(RegistryCoreClaimTest, ClaimStreamsAnswersEachEntryAndRetriesOnlyTheUnseenWake) {
  ClaimResult nothing;
  nothing.status = v1::NOTHING_PENDING;
  ClaimResult other = Claimed();
  other.claim_token = "tok-b";
  ::testing::InSequence in_order;
  EXPECT_CALL(store_, ClaimStreams(StreamsAre(std::vector<std::string>{"/a", "/b", "/c"})))
      .WillOnce([this, nothing](const std::vector<ClaimSpec>&) {
        ++calls_;
        return std::vector<absl::StatusOr<ClaimResult>>{Claimed(), nothing,
                                                        absl::UnavailableError("database down")};
      });
  // Only /b was announced: it alone is looked at again, as ClaimWakes would.
  EXPECT_CALL(store_, ClaimWakes("t", "/b", "r", _, _)).WillOnce(Counted(other));
  SyncPendingWake(7, "/b");
  v1::ClaimStreamsRequest request;
  for (const char* stream : {"/a", "/b", "/c"}) {
    v1::ClaimWakesRequest* claim = request.add_claims();
    *claim = Claim();
    claim->set_stream(stream);
  }
  absl::StatusOr<v1::ClaimStreamsResponse> response;
  Advancing([&] {
    response = core_->ClaimStreams(request, std::vector<absl::Duration>(3, absl::Seconds(30)));
  });
  ASSERT_TRUE(response.ok()) << response.status();
  ASSERT_EQ(response->claims_size(), 3);
  EXPECT_EQ(response->claims(0).code(), 0);
  EXPECT_EQ(response->claims(0).claim().claim_token(), "tok");
  EXPECT_EQ(response->claims(1).code(), 0);
  EXPECT_EQ(response->claims(1).claim().status(), v1::CLAIMED);
  EXPECT_EQ(response->claims(1).claim().claim_token(), "tok-b");
  EXPECT_EQ(response->claims(2).code(), static_cast<int>(absl::StatusCode::kUnavailable));
  EXPECT_EQ(response->claims(2).message(), "database down");
  EXPECT_FALSE(response->claims(2).has_claim());
}

TEST_F(RegistryCoreClaimTest, AckClaimsAnswersEachEntryWithItsNextClaim) {
  EXPECT_CALL(store_, AckClaims(::testing::Truly([](const std::vector<AckSpec>& acks) {
                return acks.size() == 2 && acks[0].claim.claim_token == "a" &&
                       acks[0].next.has_value() && acks[0].next->runner_id == "r" &&
                       acks[0].next->lease == absl::Seconds(20) && !acks[1].next.has_value() &&
                       acks[1].wake_ids == std::vector<int64_t>{4, 5};
              })))
      .WillOnce(Return(std::vector<absl::StatusOr<AckResult>>{
          AckResult{2, true, Claimed()},
          absl::FailedPreconditionError("claim_token: the claim is not live")}));
  v1::AckClaimsRequest request;
  v1::AckWakesRequest* ack = request.add_acks();
  ack->set_tenant_id("t");
  ack->set_stream("/a");
  ack->set_claim_token("a");
  ack->set_claim_next(true);
  ack->set_runner_id("r");
  ack = request.add_acks();
  ack->set_tenant_id("t");
  ack->set_stream("/b");
  ack->set_claim_token("b");
  ack->add_wake_ids(4);
  ack->add_wake_ids(5);
  auto response = core_->AckClaims(request, {absl::Seconds(20), absl::Seconds(30)});
  ASSERT_TRUE(response.ok()) << response.status();
  ASSERT_EQ(response->acks_size(), 2);
  EXPECT_EQ(response->acks(0).ack().acked(), 2);
  EXPECT_TRUE(response->acks(0).ack().more_pending());
  EXPECT_EQ(response->acks(0).ack().next().status(), v1::CLAIMED);
  EXPECT_EQ(response->acks(0).ack().next().claim_token(), "tok");
  ASSERT_EQ(response->acks(0).ack().next().wakes_size(), 1);
  EXPECT_EQ(response->acks(1).code(), static_cast<int>(absl::StatusCode::kFailedPrecondition));
  EXPECT_FALSE(response->acks(1).has_ack());
}

TEST_F(RegistryCoreClaimTest, AckWakesClaimsNextInItsTransactionOnlyWhenAsked) {
  v1::AckWakesRequest request;
  request.set_tenant_id("t");
  request.set_stream("/a");
  request.set_claim_token("a");
  EXPECT_CALL(store_, AckWakes(KeyIs("t", "/a", "a"), std::vector<int64_t>{}))
      .WillOnce(Return(AckResult{1, true, std::nullopt}));
  auto plain = core_->AckWakes(request, absl::Seconds(30));
  ASSERT_TRUE(plain.ok()) << plain.status();
  EXPECT_TRUE(plain->more_pending());
  EXPECT_FALSE(plain->has_next());

  request.set_claim_next(true);
  request.set_runner_id("r");
  EXPECT_CALL(store_, AckClaims(::testing::Truly([](const std::vector<AckSpec>& acks) {
                return acks.size() == 1 && acks[0].next.has_value() &&
                       acks[0].next->stream == "/a" && acks[0].next->lease == absl::Seconds(9);
              })))
      .WillOnce(Return(std::vector<absl::StatusOr<AckResult>>{AckResult{1, true, Claimed()}}));
  auto next = core_->AckWakes(request, absl::Seconds(9));
  ASSERT_TRUE(next.ok()) << next.status();
  EXPECT_EQ(next->next().claim_token(), "tok");
}

TEST_F(RegistryCoreClaimTest, BatchAnswersGiveBackClaimsThatOutgrowTheMessage) {
  RegistryOptions options;
  options.sweep_interval = absl::ZeroDuration();
  options.max_response_bytes = 300;
  RegistryCore small(collection_, sync_, store_, evaluator_, time_, executor_, options);
  // Two claims of about 200 bytes each: the second does not fit beside the first.
  auto big = [this](const std::string& token) {
    ClaimResult result = Claimed();
    result.claim_token = token;
    result.wakes[0].mutable_message()->set_source(std::string(200, 's'));
    return result;
  };
  EXPECT_CALL(store_, ClaimStreams(StreamsAre(std::vector<std::string>{"/a", "/b"})))
      .WillOnce(Return(std::vector<absl::StatusOr<ClaimResult>>{big("ta"), big("tb")}));
  EXPECT_CALL(store_, ReleaseClaim(KeyIs("t", "/b", "tb"))).WillOnce(Return(1));
  v1::ClaimStreamsRequest claims;
  for (const char* stream : {"/a", "/b"}) {
    v1::ClaimWakesRequest* claim = claims.add_claims();
    *claim = Claim();
    claim->set_stream(stream);
  }
  auto claimed = small.ClaimStreams(claims, {absl::Seconds(30), absl::Seconds(30)});
  ASSERT_TRUE(claimed.ok()) << claimed.status();
  EXPECT_EQ(claimed->claims(0).claim().claim_token(), "ta");
  EXPECT_EQ(claimed->claims(1).code(), static_cast<int>(absl::StatusCode::kResourceExhausted));
  EXPECT_THAT(claimed->claims(1).message(), HasSubstr("claim this stream alone"));
  EXPECT_LT(claimed->ByteSizeLong(), 400u);  // Not both claims.

  // An ack's next claim that does not fit is given back; more_pending stays.
  EXPECT_CALL(store_, AckClaims(_))
      .WillOnce(Return(std::vector<absl::StatusOr<AckResult>>{AckResult{1, true, big("na")},
                                                              AckResult{1, true, big("nb")}}));
  EXPECT_CALL(store_, ReleaseClaim(KeyIs("t", "/b", "nb"))).WillOnce(Return(1));
  v1::AckClaimsRequest acks;
  for (const char* stream : {"/a", "/b"}) {
    v1::AckWakesRequest* ack = acks.add_acks();
    ack->set_tenant_id("t");
    ack->set_stream(stream);
    ack->set_claim_token("old");
    ack->set_claim_next(true);
    ack->set_runner_id("r");
  }
  auto acked = small.AckClaims(acks, {absl::Seconds(30), absl::Seconds(30)});
  ASSERT_TRUE(acked.ok()) << acked.status();
  EXPECT_EQ(acked->acks(0).ack().next().claim_token(), "na");
  EXPECT_EQ(acked->acks(1).code(), 0);
  EXPECT_TRUE(acked->acks(1).ack().more_pending());
  EXPECT_FALSE(acked->acks(1).ack().has_next());
  EXPECT_LT(acked->ByteSizeLong(), 400u);
}

TEST_F(RegistryCoreTest, UnregisterHidesRowsAtOnceAndReportsTheCount) {
  sync::Registration row;
  row.id = 3;
  row.tenant_id = "t";
  row.subscriber_url = "/p";
  row.source_url = "/c";
  SyncInsert(row, 1);
  v1::UnregisterWakesRequest request;
  request.set_tenant_id("t");
  request.mutable_subscriber()->set_subscriber_url("/p");
  EXPECT_CALL(store_, DeleteRegistrations(
                          Field(&UnregisterSelector::kind, UnregisterSelector::Kind::kSubscriber)))
      .WillOnce([&](const UnregisterSelector&) {
        sync::SyncBatch batch;
        sync::RowChange change;
        change.op = sync::ChangeOp::kDelete;
        change.registration = row;
        batch.changes.push_back(change);
        batch.txids = {2};
        collection_.OnBatch(batch);
        return DeleteResult{{3}, 2};
      });
  auto response = core_->UnregisterWakes(request);
  ASSERT_TRUE(response.ok());
  EXPECT_EQ(response->removed(), 1);
  EXPECT_EQ(collection_.size(), 0u);
}

TEST_F(RegistryCoreTest, ListRegistrationsPagesWithTokensAndFilters) {
  for (int64_t id = 1; id <= 7; ++id) {
    sync::Registration row;
    row.id = id;
    row.tenant_id = "t";
    row.subscriber_url = id % 2 == 0 ? "/even" : "/odd";
    row.source_url = "/c";
    SyncInsert(row, 100 + id);
  }
  v1::ListRegistrationsRequest request;
  request.set_tenant_id("t");
  request.set_subscriber_url("/odd");
  request.set_page_size(2);
  request.set_consistency(v1::LOCAL);  // No barrier call expected.
  std::vector<std::vector<int64_t>> pages;
  int64_t after = 0;
  for (;;) {
    auto page = core_->ListRegistrations(request, after);
    ASSERT_TRUE(page.ok()) << page.status();
    std::vector<int64_t> ids;
    for (const v1::Registration& row : page->registrations()) ids.push_back(row.id());
    pages.push_back(ids);
    if (page->next_page_token().empty()) break;
    after = std::stoll(page->next_page_token());
  }
  using Page = std::vector<int64_t>;
  EXPECT_THAT(pages, ::testing::ElementsAre(Page{1, 3}, Page{5, 7}));
  // The default consistency passes the barrier first.
  request.clear_consistency();
  request.set_subscriber_url("/even");
  request.set_page_size(3);
  EXPECT_CALL(sync_, Barrier(_)).WillOnce(Return(absl::OkStatus()));
  auto page = core_->ListRegistrations(request, 2);
  ASSERT_TRUE(page.ok());
  ASSERT_EQ(page->registrations_size(), 2);
  EXPECT_EQ(page->registrations(0).id(), 4);
  EXPECT_EQ(page->registrations(1).id(), 6);
  EXPECT_TRUE(page->next_page_token().empty());
}

}  // namespace
}  // namespace wake::registry
