// The runtime put together as in main() — gRPC adapter, scheduler, thread
// pool — with the registry mocked and runners from tests/support/test_runner
// talking over an in-process channel (no sockets).
#include <memory>
#include <string>

#include "common/executor.h"
#include "common/simulated_time_source.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "runtime-service/claim_scheduler_impl.h"
#include "runtime-service/runtime_service.h"
#include "tests/mocks/runtime/mocks.h"
#include "tests/support/status_matchers.h"
#include "tests/support/test_runner.h"
#include "wake/v1/registry_mock.grpc.pb.h"

namespace wake::runtime {
namespace {

using ::testing::_;
using ::testing::DoAll;
using ::testing::HasSubstr;
using ::testing::NiceMock;
using ::testing::Property;
using ::testing::Return;
using ::testing::SetArgPointee;
using ::testing::StrictMock;
using ::wake::testing::StatusIs;
using ::wake::testing::TestRunner;
using ::wake::testing::TestRunnerOptions;

constexpr absl::Duration kWait = absl::Seconds(10);

v1::ClaimWakesResponse Claimed(const std::string& token, const std::string& stream) {
  v1::ClaimWakesResponse response;
  response.set_status(v1::CLAIMED);
  response.set_claim_token(token);
  v1::Wake* wake = response.add_wakes();
  wake->set_id(1);
  wake->set_tenant_id("acme");
  wake->set_stream(stream);
  return response;
}

class RuntimeComponentTest : public ::testing::Test {
 protected:
  void SetUp() override {
    SchedulerOptions options;
    options.runtime_id = "rt-1";
    scheduler_ = std::make_unique<ClaimSchedulerImpl>(registry_, time_, executor_, options);
    service_ = std::make_unique<RuntimeService>(*scheduler_, follower_, authenticator_);
    grpc::ServerBuilder builder;
    builder.RegisterService(service_.get());
    server_ = builder.BuildAndStart();
    channel_ = server_->InProcessChannel(grpc::ChannelArguments());
  }

  void TearDown() override {
    server_->Shutdown();
    scheduler_.reset();
  }

  std::unique_ptr<TestRunner> Runner(const std::string& runner_id, const std::string& session_id) {
    TestRunnerOptions options;
    options.runner_id = runner_id;
    options.session_id = session_id;
    options.tenant_id = "acme";
    auto runner = TestRunner::Connect(channel_, options);
    EXPECT_TRUE(runner.ok()) << runner.status();
    return runner.ok() ? std::move(*runner) : nullptr;
  }

  StrictMock<v1::MockWakeRegistryStub> registry_;
  NiceMock<MockRegistryFollower> follower_;
  common::SimulatedTimeSource time_;
  common::ThreadPoolExecutor executor_{2};
  std::unique_ptr<ClaimSchedulerImpl> scheduler_;
  common::auth::OpenAuthenticator authenticator_;
  std::unique_ptr<RuntimeService> service_;
  std::unique_ptr<grpc::Server> server_;
  std::shared_ptr<grpc::Channel> channel_;
};

TEST_F(RuntimeComponentTest, ClaimReachesTheRunnerAndItsAckReachesTheRegistry) {
  auto runner = Runner("runner-a", "s1");
  ASSERT_NE(runner, nullptr);
  EXPECT_CALL(registry_, ClaimWakes(_, Property(&v1::ClaimWakesRequest::stream, "/p"), _))
      .WillOnce(DoAll(SetArgPointee<2>(Claimed("tok-1", "/p")), Return(grpc::Status::OK)));
  v1::AckWakesResponse acked;
  acked.set_acked(1);
  EXPECT_CALL(registry_, AckWakes(_, Property(&v1::AckWakesRequest::claim_token, "tok-1"), _))
      .WillOnce(DoAll(SetArgPointee<2>(acked), Return(grpc::Status::OK)));

  scheduler_->Trigger("acme", "/p", 0);
  absl::StatusOr<v1::WakeClaim> claim = runner->NextClaim(kWait);
  ASSERT_TRUE(claim.ok()) << claim.status();
  EXPECT_EQ(claim->claim_token(), "tok-1");
  absl::StatusOr<v1::AckClaimResponse> ack = runner->Ack(*claim);
  ASSERT_TRUE(ack.ok()) << ack.status();
  EXPECT_EQ(ack->acked(), 1);
  EXPECT_FALSE(ack->more_pending());
}

TEST_F(RuntimeComponentTest, RestartedRunnerSupersedesItsOldSessionAndGetsTheClaimAgain) {
  auto old_session = Runner("runner-a", "s1");
  ASSERT_NE(old_session, nullptr);
  EXPECT_CALL(registry_, ClaimWakes(_, _, _))
      .WillOnce(DoAll(SetArgPointee<2>(Claimed("tok-1", "/p")), Return(grpc::Status::OK)))
      .WillOnce(DoAll(SetArgPointee<2>(Claimed("tok-2", "/p")), Return(grpc::Status::OK)));
  EXPECT_CALL(registry_,
              ReleaseClaim(_, Property(&v1::ReleaseClaimRequest::claim_token, "tok-1"), _))
      .WillOnce(Return(grpc::Status::OK));
  scheduler_->Trigger("acme", "/p", 0);
  ASSERT_TRUE(old_session->NextClaim(kWait).ok());

  auto new_session = Runner("runner-a", "s2");
  ASSERT_NE(new_session, nullptr);
  EXPECT_THAT(old_session->WaitClosed(kWait),
              StatusIs(absl::StatusCode::kAborted, HasSubstr("superseded")));
  absl::StatusOr<v1::WakeClaim> redelivered = new_session->NextClaim(kWait);
  ASSERT_TRUE(redelivered.ok()) << redelivered.status();
  EXPECT_EQ(redelivered->claim_token(), "tok-2");

  // The old session's heartbeat is refused; the new one's goes through.
  EXPECT_THAT(old_session->Heartbeat(),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("session_id")));
  v1::ExtendClaimsResponse extended;
  v1::ExtendedClaim* claim = extended.add_claims();
  claim->mutable_claim()->set_tenant_id("acme");
  claim->mutable_claim()->set_stream("/p");
  claim->mutable_claim()->set_claim_token("tok-2");
  claim->set_extended(true);
  EXPECT_CALL(registry_, ExtendClaims(_, _, _))
      .WillOnce(DoAll(SetArgPointee<2>(extended), Return(grpc::Status::OK)));
  absl::StatusOr<v1::HeartbeatResponse> beat = new_session->Heartbeat();
  ASSERT_TRUE(beat.ok()) << beat.status();
  EXPECT_EQ(beat->extended(), 1);

  // The runner goes away: its claim is released, and with no runner left
  // the stream waits for one instead of being claimed again.
  EXPECT_CALL(registry_,
              ReleaseClaim(_, Property(&v1::ReleaseClaimRequest::claim_token, "tok-2"), _))
      .WillOnce(Return(grpc::Status::OK));
  new_session->Disconnect();
  EXPECT_EQ(new_session->WaitClosed(kWait).code(), absl::StatusCode::kCancelled);
  EXPECT_TRUE(scheduler_->AwaitSettled(kWait));
  EXPECT_EQ(scheduler_->Health().counters.claims_released, 2);
  EXPECT_EQ(scheduler_->Health().waiting_for_runner, 1);
}

}  // namespace
}  // namespace wake::runtime
