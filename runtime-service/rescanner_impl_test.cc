#include "runtime-service/rescanner_impl.h"

#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include "absl/strings/str_join.h"
#include "common/executor.h"
#include "common/simulated_time_source.h"
#include "gmock/gmock.h"
#include "grpcpp/test/mock_stream.h"
#include "gtest/gtest.h"
#include "runtime-service/claim_scheduler_impl.h"
#include "tests/mocks/runtime/mocks.h"
#include "wake/v1/registry_mock.grpc.pb.h"

namespace wake::runtime {

void PrintTo(const PendingStream& stream, std::ostream* os) {
  *os << stream.tenant_id << stream.stream << "[" << absl::StrJoin(stream.wake_ids, ",") << "]";
}

namespace {

using ::testing::_;
using ::testing::AllOf;
using ::testing::DoAll;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::InSequence;
using ::testing::IsEmpty;
using ::testing::Property;
using ::testing::Return;
using ::testing::SetArgPointee;
using ::testing::StrictMock;

using Reader = StrictMock<grpc::testing::MockClientReader<v1::ChangeEvent>>;

constexpr absl::Duration kInterval = absl::Seconds(30);
constexpr absl::Duration kSettle = absl::Seconds(1);

v1::ChangeEvent WakeEvent(const std::string& tenant, const std::string& stream, int64_t id) {
  v1::ChangeEvent event;
  event.set_offset("e1_8");  // Snapshot rows carry the snapshot's offset.
  event.mutable_wake()->set_tenant_id(tenant);
  event.mutable_wake()->set_stream(stream);
  event.mutable_wake()->set_wake_id(id);
  return event;
}

// A snapshot: `wakes`, then UP_TO_DATE at `offset`; the rescanner then
// cancels the stream.
Reader* Snapshot(const std::vector<v1::ChangeEvent>& wakes, const std::string& offset) {
  auto* reader = new Reader();
  InSequence seq;
  for (const v1::ChangeEvent& event : wakes) {
    EXPECT_CALL(*reader, Read(_)).WillOnce(DoAll(SetArgPointee<0>(event), Return(true)));
  }
  v1::ChangeEvent up_to_date;
  up_to_date.set_offset(offset);
  up_to_date.set_control(v1::UP_TO_DATE);
  EXPECT_CALL(*reader, Read(_)).WillOnce(DoAll(SetArgPointee<0>(up_to_date), Return(true)));
  EXPECT_CALL(*reader, Finish()).WillOnce(Return(grpc::Status::CANCELLED));
  return reader;
}

auto SnapshotRequest() {
  return AllOf(Property(&v1::SubscribeChangesRequest::from_offset, "-1"),
               Property(&v1::SubscribeChangesRequest::all_tenants, true),
               Property(&v1::SubscribeChangesRequest::kinds,
                        ElementsAre(v1::ChangeEvent::WAKE, v1::ChangeEvent::CONTROL)));
}

FollowerStatus FollowerAt(const std::string& offset) {
  FollowerStatus status;
  status.up_to_date = true;
  status.offset = offset;
  return status;
}

PendingStream Pending(const std::string& tenant, const std::string& stream,
                      std::vector<int64_t> ids) {
  return PendingStream{tenant, stream, std::move(ids)};
}

class RescannerTest : public ::testing::Test {
 protected:
  static RescanOptions Options() {
    RescanOptions options;
    options.interval = kInterval;
    options.settle = kSettle;
    options.catch_up_poll = absl::Milliseconds(50);
    options.catch_up_timeout = absl::Seconds(10);
    return options;
  }

  void MakeRescanner(WakeAccounting& accounting, TriggerSink& triggers) {
    rescanner_ = std::make_unique<RescannerImpl>(registry_, follower_, accounting, triggers, time_,
                                                 executor_, Options());
  }

  void TearDown() override {
    if (rescanner_ != nullptr) rescanner_->Stop();
    executor_.RunAll();  // A read queued after Stop returns at once.
    rescanner_.reset();
  }

  // Runs the next rescan's snapshot read.
  void NextRescan() {
    time_.Advance(kInterval);
    ASSERT_EQ(executor_.queued(), 1u);
    executor_.RunAll();
  }

  StrictMock<v1::MockWakeRegistryStub> registry_;
  StrictMock<MockRegistryFollower> follower_;
  StrictMock<MockWakeAccounting> accounting_;
  StrictMock<MockTriggerSink> triggers_;
  common::SimulatedTimeSource time_;
  common::ManualExecutor executor_;
  std::unique_ptr<RescannerImpl> rescanner_;
};

TEST_F(RescannerTest, HealthySystemCountsNothingAndTriggersNothing) {
  MakeRescanner(accounting_, triggers_);
  EXPECT_CALL(registry_, SubscribeChangesRaw(_, SnapshotRequest()))
      .WillOnce(Return(
          Snapshot({WakeEvent("acme", "/p", 1), WakeEvent("acme", "/p", 2), WakeEvent("", "/q", 3)},
                   "e1_8")));
  EXPECT_CALL(follower_, Status()).WillOnce(Return(FollowerAt("e1_8")));
  EXPECT_CALL(accounting_, Unaccounted(ElementsAre(Pending("acme", "/p", {1, 2}),
                                                   Pending("default", "/q", {3}))))
      .WillOnce(Return(std::vector<PendingStream>{}));
  EXPECT_CALL(accounting_, ForgetParkedWithoutPending(_, _)).WillOnce(Return(0));

  rescanner_->Start();
  time_.Advance(kInterval - absl::Milliseconds(1));
  EXPECT_EQ(executor_.queued(), 0u);
  time_.Advance(absl::Milliseconds(1));
  ASSERT_EQ(executor_.queued(), 1u);
  executor_.RunAll();
  RescanStatus status = rescanner_->Status();
  EXPECT_EQ(status.rescans, 1);
  EXPECT_EQ(status.found, 0);
  EXPECT_EQ(status.last_error, "");

  // And again one interval later.
  EXPECT_CALL(registry_, SubscribeChangesRaw(_, SnapshotRequest()))
      .WillOnce(Return(Snapshot({}, "e1_9")));
  EXPECT_CALL(follower_, Status()).WillOnce(Return(FollowerAt("e1_12")));
  EXPECT_CALL(accounting_, Unaccounted(IsEmpty())).WillOnce(Return(std::vector<PendingStream>{}));
  EXPECT_CALL(accounting_, ForgetParkedWithoutPending(IsEmpty(), _)).WillOnce(Return(2));
  NextRescan();
  EXPECT_EQ(rescanner_->Status().rescans, 2);
  EXPECT_EQ(rescanner_->Status().found, 0);
}

TEST_F(RescannerTest, UnaccountedStreamIsTriggeredAndCounted) {
  MakeRescanner(accounting_, triggers_);
  EXPECT_CALL(registry_, SubscribeChangesRaw(_, _))
      .WillOnce(Return(Snapshot(
          {WakeEvent("acme", "/p", 1), WakeEvent("acme", "/q", 3), WakeEvent("acme", "/q", 4)},
          "e1_8")));
  EXPECT_CALL(follower_, Status()).WillOnce(Return(FollowerAt("e1_8")));
  {
    InSequence seq;
    EXPECT_CALL(accounting_, Unaccounted(_))
        .WillOnce(Return(std::vector<PendingStream>{Pending("acme", "/q", {3, 4})}));
    EXPECT_CALL(accounting_, ForgetParkedWithoutPending(_, _)).WillOnce(Return(0));
    // Looked at again after the settle time: still unknown.
    EXPECT_CALL(accounting_, Unaccounted(ElementsAre(Pending("acme", "/q", {3, 4}))))
        .WillOnce(Return(std::vector<PendingStream>{Pending("acme", "/q", {3, 4})}));
    EXPECT_CALL(triggers_, Trigger("acme", "/q", 3));
    EXPECT_CALL(triggers_, Trigger("acme", "/q", 4));
  }
  rescanner_->Start();
  NextRescan();
  EXPECT_EQ(rescanner_->Status().rescans, 0);  // Not before the recheck.
  time_.Advance(kSettle);
  const RescanStatus status = rescanner_->Status();
  EXPECT_EQ(status.rescans, 1);
  EXPECT_EQ(status.found, 1);
}

// The registry reads its pending wakes after taking the snapshot's offset:
// a wake made pending in between is in the snapshot, but announced just
// after that offset. Announced during the settle time, it is not counted.
TEST_F(RescannerTest, WakeAnnouncedWhileSettlingIsNotCounted) {
  MakeRescanner(accounting_, triggers_);
  EXPECT_CALL(registry_, SubscribeChangesRaw(_, _))
      .WillOnce(Return(Snapshot({WakeEvent("acme", "/q", 3)}, "e1_8")));
  EXPECT_CALL(follower_, Status()).WillOnce(Return(FollowerAt("e1_8")));
  {
    InSequence seq;
    EXPECT_CALL(accounting_, Unaccounted(_))
        .WillOnce(Return(std::vector<PendingStream>{Pending("acme", "/q", {3})}));
    EXPECT_CALL(accounting_, ForgetParkedWithoutPending(_, _)).WillOnce(Return(0));
    EXPECT_CALL(accounting_, Unaccounted(_)).WillOnce(Return(std::vector<PendingStream>{}));
  }
  rescanner_->Start();
  NextRescan();
  time_.Advance(kSettle);
  const RescanStatus status = rescanner_->Status();
  EXPECT_EQ(status.rescans, 1);
  EXPECT_EQ(status.found, 0);
}

TEST_F(RescannerTest, ComparesOnlyOnceTheFollowerReachedTheSnapshot) {
  MakeRescanner(accounting_, triggers_);
  EXPECT_CALL(registry_, SubscribeChangesRaw(_, _))
      .WillOnce(Return(Snapshot({WakeEvent("acme", "/p", 1)}, "e1_8")));
  {
    InSequence seq;
    EXPECT_CALL(follower_, Status())
        .Times(2)
        .WillRepeatedly(Return(FollowerAt("e1_7")));  // Not yet told of wake 1.
    EXPECT_CALL(follower_, Status()).WillOnce(Return(FollowerAt("e1_10")));
    EXPECT_CALL(accounting_, Unaccounted(_)).WillOnce(Return(std::vector<PendingStream>{}));
    EXPECT_CALL(accounting_, ForgetParkedWithoutPending(_, _)).WillOnce(Return(0));
  }
  rescanner_->Start();
  NextRescan();
  time_.Advance(absl::Milliseconds(50));
  EXPECT_EQ(rescanner_->Status().rescans, 0);
  time_.Advance(absl::Milliseconds(50));
  EXPECT_EQ(rescanner_->Status().rescans, 1);
  EXPECT_EQ(rescanner_->Status().found, 0);
}

TEST_F(RescannerTest, FollowerOfAnotherRegistryProcessGetsTheSettleTimeInstead) {
  MakeRescanner(accounting_, triggers_);
  EXPECT_CALL(registry_, SubscribeChangesRaw(_, _))
      .WillOnce(Return(Snapshot({WakeEvent("acme", "/p", 1)}, "e2_3")));
  EXPECT_CALL(follower_, Status())
      .Times(2)
      .WillRepeatedly(Return(FollowerAt("e1_100")));  // Epochs differ: not comparable.
  rescanner_->Start();
  NextRescan();
  time_.Advance(kSettle - absl::Milliseconds(1));
  EXPECT_EQ(rescanner_->Status().rescans, 0);
  EXPECT_CALL(accounting_, Unaccounted(_)).WillOnce(Return(std::vector<PendingStream>{}));
  EXPECT_CALL(accounting_, ForgetParkedWithoutPending(_, _)).WillOnce(Return(0));
  time_.Advance(absl::Milliseconds(1));
  EXPECT_EQ(rescanner_->Status().rescans, 1);
}

// The follower wants wakes only; the registry moves its offset past the
// registration changes it skips once per 1024 of them. Live and idle for the
// settle time, it has heard of every wake before the snapshot.
TEST_F(RescannerTest, IdleLiveFollowerBehindOnlyBySkippedChangesCountsAsCaughtUp) {
  MakeRescanner(accounting_, triggers_);
  EXPECT_CALL(registry_, SubscribeChangesRaw(_, _))
      .WillOnce(Return(Snapshot({WakeEvent("acme", "/p", 1)}, "e1_800")));
  EXPECT_CALL(follower_, Status())
      .WillOnce(Return(FollowerAt("e1_5")))
      .WillOnce(Return(FollowerAt("e1_6")))  // Still receiving: not idle.
      .WillRepeatedly(Return(FollowerAt("e1_7")));
  rescanner_->Start();
  NextRescan();
  time_.Advance(absl::Milliseconds(50));
  time_.Advance(kSettle);
  EXPECT_EQ(rescanner_->Status().rescans, 0);  // Idle for less than the settle time.
  EXPECT_CALL(accounting_, Unaccounted(_)).WillOnce(Return(std::vector<PendingStream>{}));
  EXPECT_CALL(accounting_, ForgetParkedWithoutPending(_, _)).WillOnce(Return(0));
  time_.Advance(absl::Milliseconds(50));
  EXPECT_EQ(rescanner_->Status().rescans, 1);
}

TEST_F(RescannerTest, FollowerThatDoesNotCatchUpSkipsTheRescan) {
  MakeRescanner(accounting_, triggers_);
  EXPECT_CALL(registry_, SubscribeChangesRaw(_, _))
      .WillOnce(Return(Snapshot({WakeEvent("acme", "/p", 1)}, "e1_8")));
  FollowerStatus reconnecting = FollowerAt("e1_2");
  reconnecting.up_to_date = false;
  EXPECT_CALL(follower_, Status()).WillRepeatedly(Return(reconnecting));
  rescanner_->Start();
  NextRescan();
  time_.Advance(absl::Seconds(10));  // catch_up_timeout; StrictMock: no comparison.
  const RescanStatus status = rescanner_->Status();
  EXPECT_EQ(status.rescans, 0);
  EXPECT_THAT(status.last_error, HasSubstr("rescan skipped"));
  EXPECT_THAT(status.last_error, HasSubstr("e1_2"));
  // The next rescan comes one interval later.
  EXPECT_CALL(registry_, SubscribeChangesRaw(_, _)).WillOnce(Return(Snapshot({}, "e1_9")));
  NextRescan();
  time_.Advance(absl::Seconds(10));
}

TEST_F(RescannerTest, FailedReadIsRetriedAtTheNextInterval) {
  MakeRescanner(accounting_, triggers_);
  auto* broken = new Reader();
  EXPECT_CALL(*broken, Read(_)).WillOnce(Return(false));
  EXPECT_CALL(*broken, Finish())
      .WillOnce(Return(grpc::Status(grpc::StatusCode::UNAVAILABLE, "registry down")));
  EXPECT_CALL(registry_, SubscribeChangesRaw(_, _))
      .WillOnce(Return(broken))
      .WillOnce(Return(Snapshot({}, "e1_1")));
  rescanner_->Start();
  NextRescan();
  EXPECT_THAT(rescanner_->Status().last_error, HasSubstr("registry down"));
  EXPECT_EQ(rescanner_->Status().rescans, 0);

  EXPECT_CALL(follower_, Status()).WillOnce(Return(FollowerAt("e1_1")));
  EXPECT_CALL(accounting_, Unaccounted(_)).WillOnce(Return(std::vector<PendingStream>{}));
  EXPECT_CALL(accounting_, ForgetParkedWithoutPending(_, _)).WillOnce(Return(0));
  NextRescan();
  EXPECT_EQ(rescanner_->Status().rescans, 1);
}

TEST_F(RescannerTest, ZeroIntervalTurnsRescanningOff) {
  RescanOptions options = Options();
  options.interval = absl::ZeroDuration();
  rescanner_ = std::make_unique<RescannerImpl>(registry_, follower_, accounting_, triggers_, time_,
                                               executor_, options);
  rescanner_->Start();
  time_.Advance(10 * kInterval);
  EXPECT_EQ(executor_.queued(), 0u);
  EXPECT_EQ(rescanner_->Status().rescans, 0);
}

// ---------------------------------------------------------------------------
// With the real scheduler: what it was told of, and what it was not.
// ---------------------------------------------------------------------------

class RecordingSink : public ClaimSink {
 public:
  bool Send(const v1::WakeClaim& claim) override {
    streams.push_back(claim.stream());
    return true;
  }
  void Close(const absl::Status&) override {}
  std::vector<std::string> streams;
};

v1::ClaimWakesResponse Claimed(const std::string& token, const std::string& stream,
                               int64_t wake_id) {
  v1::ClaimWakesResponse response;
  response.set_status(v1::CLAIMED);
  response.set_claim_token(token);
  v1::Wake* wake = response.add_wakes();
  wake->set_id(wake_id);
  wake->set_tenant_id("acme");
  wake->set_stream(stream);
  return response;
}

class RescannerWithSchedulerTest : public RescannerTest {
 protected:
  void SetUp() override {
    SchedulerOptions options;
    options.runtime_id = "rt-1";
    options.lease = absl::Hours(1);  // No lease runs out while rescans come and go.
    scheduler_ = std::make_unique<ClaimSchedulerImpl>(registry_, time_, executor_, options);
    RunnerSpec spec;
    spec.runner_id = "runner-a";
    spec.session_id = "s1";
    spec.tenant_id = "acme";
    ASSERT_TRUE(scheduler_->Connect(spec, sink_).ok());
    MakeRescanner(*scheduler_, *scheduler_);
  }

  void TearDown() override {
    RescannerTest::TearDown();
    scheduler_->BeginShutdown();
    scheduler_->ReleaseAll();
    executor_.RunAll();
    scheduler_.reset();
  }

  std::shared_ptr<RecordingSink> sink_ = std::make_shared<RecordingSink>();
  std::unique_ptr<ClaimSchedulerImpl> scheduler_;
};

TEST_F(RescannerWithSchedulerTest, OnlyTheStreamWhoseWakeWasNeverAnnouncedIsFoundAndClaimed) {
  // Announced and claimed: accounted for.
  EXPECT_CALL(registry_, ClaimWakes(_, Property(&v1::ClaimWakesRequest::stream, "/p"), _))
      .WillOnce(DoAll(SetArgPointee<2>(Claimed("tok-p", "/p", 1)), Return(grpc::Status::OK)));
  scheduler_->Trigger("acme", "/p", 1);
  // Announced, parked (no runner of tenant beta): accounted for.
  scheduler_->Trigger("beta", "/r", 7);
  // Announced, but another runtime holds the stream (its wake arrived after
  // that runtime's claim, so it is still pending): accounted for.
  v1::ClaimWakesResponse already_claimed;
  already_claimed.set_status(v1::ALREADY_CLAIMED);
  EXPECT_CALL(registry_, ClaimWakes(_, Property(&v1::ClaimWakesRequest::stream, "/s"), _))
      .WillOnce(DoAll(SetArgPointee<2>(already_claimed), Return(grpc::Status::OK)));
  scheduler_->Trigger("acme", "/s", 11);
  executor_.RunAll();
  ASSERT_THAT(sink_->streams, ElementsAre("/p"));

  // The registry has a wake for /q that this runtime was never told of.
  EXPECT_CALL(registry_, SubscribeChangesRaw(_, _))
      .WillOnce(Return(Snapshot({WakeEvent("acme", "/p", 1), WakeEvent("beta", "/r", 7),
                                 WakeEvent("acme", "/s", 11), WakeEvent("acme", "/q", 5)},
                                "e1_8")));
  EXPECT_CALL(follower_, Status()).WillRepeatedly(Return(FollowerAt("e1_8")));
  rescanner_->Start();
  NextRescan();
  EXPECT_CALL(registry_, ClaimWakes(_, Property(&v1::ClaimWakesRequest::stream, "/q"), _))
      .WillOnce(DoAll(SetArgPointee<2>(Claimed("tok-q", "/q", 5)), Return(grpc::Status::OK)));
  time_.Advance(kSettle);
  executor_.RunAll();
  EXPECT_THAT(sink_->streams, ElementsAre("/p", "/q"));
  const RescanStatus status = rescanner_->Status();
  EXPECT_EQ(status.rescans, 1);
  EXPECT_EQ(status.found, 1);
  EXPECT_EQ(scheduler_->Health().waiting_for_runner, 1);  // /r still pending: kept.

  // Next time everything is accounted for; /r has left the registry (another
  // runtime took it), so its parked stream is forgotten.
  EXPECT_CALL(registry_, SubscribeChangesRaw(_, _))
      .WillOnce(Return(Snapshot({WakeEvent("acme", "/p", 1), WakeEvent("acme", "/q", 5)}, "e1_8")));
  NextRescan();
  EXPECT_EQ(rescanner_->Status().rescans, 2);
  EXPECT_EQ(rescanner_->Status().found, 1);
  EXPECT_EQ(scheduler_->Health().waiting_for_runner, 0);
  EXPECT_EQ(scheduler_->Health().queued_streams, 0);

  EXPECT_CALL(registry_, ReleaseClaim(_, _, _)).Times(2).WillRepeatedly(Return(grpc::Status::OK));
}

// A stream parked after the rescan began may have a wake the snapshot missed:
// it is kept.
TEST_F(RescannerWithSchedulerTest, StreamParkedAfterTheSnapshotBeganIsKept) {
  EXPECT_CALL(registry_, SubscribeChangesRaw(_, _))
      .WillOnce([this](grpc::ClientContext*, const v1::SubscribeChangesRequest&) {
        scheduler_->Trigger("beta", "/late", 9);  // Announced while the snapshot is read.
        return Snapshot({}, "e1_8");
      });
  EXPECT_CALL(follower_, Status()).WillRepeatedly(Return(FollowerAt("e1_9")));
  rescanner_->Start();
  NextRescan();
  EXPECT_EQ(rescanner_->Status().rescans, 1);
  EXPECT_EQ(scheduler_->Health().waiting_for_runner, 1);
}

}  // namespace
}  // namespace wake::runtime
