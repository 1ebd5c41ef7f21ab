#include "runtime-service/registry_follower_impl.h"

#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/notification.h"
#include "common/simulated_time_source.h"
#include "gmock/gmock.h"
#include "grpcpp/test/mock_stream.h"
#include "gtest/gtest.h"
#include "tests/mocks/runtime/mocks.h"
#include "wake/v1/registry_mock.grpc.pb.h"

namespace wake::runtime {
namespace {

using ::testing::_;
using ::testing::AllOf;
using ::testing::DoAll;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::InSequence;
using ::testing::Property;
using ::testing::Return;
using ::testing::SetArgPointee;
using ::testing::StrictMock;

using Reader = StrictMock<grpc::testing::MockClientReader<v1::ChangeEvent>>;

v1::ChangeEvent WakeEvent(const std::string& offset, const std::string& tenant,
                          const std::string& stream, int64_t wake_id = 0) {
  v1::ChangeEvent event;
  event.set_offset(offset);
  event.mutable_wake()->set_tenant_id(tenant);
  event.mutable_wake()->set_stream(stream);
  event.mutable_wake()->set_wake_id(wake_id);
  return event;
}

v1::ChangeEvent Control(const std::string& offset, v1::ControlKind kind) {
  v1::ChangeEvent event;
  event.set_offset(offset);
  event.set_control(kind);
  return event;
}

// A reader that yields `events`, then ends with `status`.
Reader* Stream(const std::vector<v1::ChangeEvent>& events, grpc::Status status) {
  auto* reader = new Reader();
  InSequence seq;
  for (const v1::ChangeEvent& event : events) {
    EXPECT_CALL(*reader, Read(_)).WillOnce(DoAll(SetArgPointee<0>(event), Return(true)));
  }
  EXPECT_CALL(*reader, Read(_)).WillOnce(Return(false));
  EXPECT_CALL(*reader, Finish()).WillOnce(Return(status));
  return reader;
}

auto SubscriptionFrom(const std::string& offset) {
  return AllOf(Property(&v1::SubscribeChangesRequest::from_offset, offset),
               Property(&v1::SubscribeChangesRequest::all_tenants, true),
               Property(&v1::SubscribeChangesRequest::kinds,
                        ElementsAre(v1::ChangeEvent::WAKE, v1::ChangeEvent::CONTROL)));
}

class RegistryFollowerTest : public ::testing::Test {
 protected:
  RegistryFollowerTest() : follower_(registry_, triggers_, time_, Options()) {}

  FollowerOptions Options() {
    FollowerOptions options;
    options.retry_initial = absl::Milliseconds(100);
    options.retry_max = absl::Seconds(5);
    options.on_up_to_date_changed = [this](bool up) { up_to_date_changes_.push_back(up); };
    return options;
  }

  StrictMock<v1::MockWakeRegistryStub> registry_;
  StrictMock<MockTriggerSink> triggers_;
  common::SimulatedTimeSource time_;
  std::vector<bool> up_to_date_changes_;
  RegistryFollowerImpl follower_;
};

TEST_F(RegistryFollowerTest, StreamDropReconnectsAndCatchesUpFromTheLastOffset) {
  const grpc::Status dropped(grpc::StatusCode::UNAVAILABLE, "connection reset");
  {
    InSequence seq;
    EXPECT_CALL(registry_, SubscribeChangesRaw(_, SubscriptionFrom("-1")))
        .WillOnce(Return(Stream({WakeEvent("o1", "acme", "/p/1", 11), Control("o2", v1::UP_TO_DATE),
                                 WakeEvent("o3", "acme", "/p/2", 12)},
                                dropped)));
    EXPECT_CALL(registry_, SubscribeChangesRaw(_, SubscriptionFrom("o3")))
        .WillOnce(Return(
            Stream({WakeEvent("o4", "beta", "/p/3", 13), Control("o5", v1::UP_TO_DATE)}, dropped)));
  }
  {
    InSequence seq;
    EXPECT_CALL(triggers_, Trigger("acme", "/p/1", 11));
    EXPECT_CALL(triggers_, Trigger("acme", "/p/2", 12));
    // Missed while disconnected: replayed from the offset.
    EXPECT_CALL(triggers_, Trigger("beta", "/p/3", 13));
  }

  const absl::Duration first_delay = follower_.RunOnce();
  EXPECT_GT(first_delay, absl::ZeroDuration());
  EXPECT_LE(first_delay, absl::Milliseconds(100));
  FollowerStatus status = follower_.Status();
  EXPECT_FALSE(status.up_to_date);
  EXPECT_EQ(status.offset, "o3");
  EXPECT_EQ(status.events_received, 3);
  EXPECT_EQ(status.reconnects, 0);
  EXPECT_THAT(status.last_error, HasSubstr("connection reset"));

  follower_.RunOnce();
  status = follower_.Status();
  EXPECT_EQ(status.offset, "o5");
  EXPECT_EQ(status.events_received, 5);
  EXPECT_EQ(status.reconnects, 1);
  // Serving exactly while each subscription was up to date.
  EXPECT_THAT(up_to_date_changes_, ElementsAre(true, false, true, false));
}

TEST_F(RegistryFollowerTest, MustRefetchResubscribesFromTheStartAtOnce) {
  auto* refetch = new Reader();
  {
    InSequence seq;
    EXPECT_CALL(*refetch, Read(_))
        .WillOnce(DoAll(SetArgPointee<0>(Control("o2", v1::MUST_REFETCH)), Return(true)));
    // The follower stops reading and ends the call itself.
    EXPECT_CALL(*refetch, Finish())
        .WillOnce(Return(grpc::Status(grpc::StatusCode::CANCELLED, "cancelled")));
  }
  {
    InSequence seq;
    EXPECT_CALL(registry_, SubscribeChangesRaw(_, SubscriptionFrom("-1")))
        .WillOnce(Return(Stream({WakeEvent("o1", "acme", "/p/1")}, grpc::Status::OK)));
    EXPECT_CALL(registry_, SubscribeChangesRaw(_, SubscriptionFrom("o1")))
        .WillOnce(Return(refetch));
    // The snapshot again: every pending wake is replayed.
    EXPECT_CALL(registry_, SubscribeChangesRaw(_, SubscriptionFrom("-1")))
        .WillOnce(Return(Stream({WakeEvent("s1", "acme", "/p/1"), Control("s2", v1::UP_TO_DATE)},
                                grpc::Status::OK)));
  }
  EXPECT_CALL(triggers_, Trigger("acme", "/p/1", _)).Times(2);

  follower_.RunOnce();
  ASSERT_EQ(follower_.Status().offset, "o1");
  EXPECT_EQ(follower_.RunOnce(), absl::ZeroDuration());  // No backoff before refetching.
  EXPECT_EQ(follower_.Status().offset, "-1");
  follower_.RunOnce();
  EXPECT_EQ(follower_.Status().offset, "s2");
  EXPECT_EQ(follower_.Status().reconnects, 2);
}

TEST_F(RegistryFollowerTest, BackoffGrowsWhileFailingAndResetsOnceUpToDate) {
  const grpc::Status down(grpc::StatusCode::UNAVAILABLE, "connection refused");
  EXPECT_CALL(registry_, SubscribeChangesRaw(_, _))
      .WillOnce(Return(Stream({}, down)))
      .WillOnce(Return(Stream({}, down)))
      .WillOnce(Return(Stream({}, down)))
      .WillOnce(Return(Stream({Control("o1", v1::UP_TO_DATE)}, down)));
  EXPECT_LE(follower_.RunOnce(), absl::Milliseconds(100));
  EXPECT_GT(follower_.RunOnce(), absl::Milliseconds(100) - absl::Nanoseconds(1));
  EXPECT_GT(follower_.RunOnce(), absl::Milliseconds(200) - absl::Nanoseconds(1));
  EXPECT_LE(follower_.RunOnce(), absl::Milliseconds(100));
}

TEST_F(RegistryFollowerTest, RunWaitsOutTheBackoffOnTheTimeSourceAndStops) {
  const grpc::Status down(grpc::StatusCode::UNAVAILABLE, "connection refused");
  absl::Notification second;
  EXPECT_CALL(registry_, SubscribeChangesRaw(_, _))
      .WillOnce(Return(Stream({}, down)))
      .WillOnce([&](grpc::ClientContext*, const v1::SubscribeChangesRequest&) {
        follower_.Stop();
        second.Notify();
        return Stream({}, down);
      });
  std::thread runner([this] { follower_.Run(); });
  // The second attempt comes only once simulated time passes the backoff.
  while (time_.ArmedTimers() == 0) std::this_thread::yield();
  EXPECT_FALSE(second.HasBeenNotified());
  time_.Advance(absl::Milliseconds(100));
  runner.join();
  EXPECT_TRUE(second.HasBeenNotified());
}

}  // namespace
}  // namespace wake::runtime
