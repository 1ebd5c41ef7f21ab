// The gRPC adapter over an in-process channel (no sockets), with the
// scheduler and follower mocked.
#include "runtime-service/runtime_service.h"

#include <memory>
#include <string>

#include "absl/synchronization/notification.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "tests/mocks/runtime/mocks.h"

namespace wake::runtime {
namespace {

using ::testing::_;
using ::testing::AllOf;
using ::testing::DoAll;
using ::testing::ElementsAre;
using ::testing::Field;
using ::testing::HasSubstr;
using ::testing::Return;
using ::testing::SaveArg;
using ::testing::StrictMock;

constexpr absl::Duration kWait = absl::Seconds(10);

v1::WakeClaim ClaimFor(const std::string& token) {
  v1::WakeClaim claim;
  claim.set_claim_token(token);
  claim.set_tenant_id("acme");
  claim.set_stream("/p");
  claim.add_wakes()->set_id(1);
  return claim;
}

class RuntimeServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    service_ = std::make_unique<RuntimeService>(scheduler_, follower_, authenticator_, &rescanner_);
    grpc::ServerBuilder builder;
    builder.RegisterService(service_.get());
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    stub_ = v1::WakeRuntime::NewStub(server_->InProcessChannel(grpc::ChannelArguments()));
  }

  void TearDown() override { server_->Shutdown(); }

  static v1::StreamWakeClaimsRequest Connect() {
    v1::StreamWakeClaimsRequest request;
    request.set_runner_id("runner-a");
    request.set_session_id("s1");
    request.set_tenant_id("acme");
    return request;
  }

  common::auth::OpenAuthenticator authenticator_;
  StrictMock<MockClaimScheduler> scheduler_;
  StrictMock<MockRegistryFollower> follower_;
  StrictMock<MockRescanner> rescanner_;
  std::unique_ptr<RuntimeService> service_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<v1::WakeRuntime::Stub> stub_;
};

TEST_F(RuntimeServiceTest, StreamWakeClaimsRejectsBadRequestsNamingTheField) {
  v1::StreamWakeClaimsRequest request = Connect();
  request.set_max_in_flight(5000);
  grpc::ClientContext context;
  auto reader = stub_->StreamWakeClaims(&context, request);
  v1::WakeClaim claim;
  EXPECT_FALSE(reader->Read(&claim));
  const grpc::Status status = reader->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("max_in_flight"));
}

TEST_F(RuntimeServiceTest, StreamWakeClaimsDeliversClaimsUntilTheRunnerLeaves) {
  ClaimSinkPtr sink;
  absl::Notification connected;
  absl::Notification disconnected;
  EXPECT_CALL(
      scheduler_,
      Connect(AllOf(Field(&RunnerSpec::runner_id, "runner-a"), Field(&RunnerSpec::session_id, "s1"),
                    Field(&RunnerSpec::tenant_id, "acme"), Field(&RunnerSpec::max_in_flight, 16)),
              _))
      .WillOnce(DoAll(
          SaveArg<1>(&sink), [&connected] { connected.Notify(); }, Return(SessionId{7})));
  EXPECT_CALL(scheduler_, Disconnect(7)).WillOnce([&disconnected] { disconnected.Notify(); });

  grpc::ClientContext context;
  auto reader = stub_->StreamWakeClaims(&context, Connect());
  ASSERT_TRUE(connected.WaitForNotificationWithTimeout(kWait));
  EXPECT_TRUE(sink->Send(ClaimFor("tok-1")));
  EXPECT_TRUE(sink->Send(ClaimFor("tok-2")));
  // The session id arrives first, as initial metadata, once it is registered.
  reader->WaitForInitialMetadata();
  const auto& metadata = context.GetServerInitialMetadata();
  auto session = metadata.find(kSessionMetadataKey);
  ASSERT_NE(session, metadata.end());
  EXPECT_EQ(std::string(session->second.data(), session->second.size()), "s1");
  v1::WakeClaim claim;
  ASSERT_TRUE(reader->Read(&claim));
  EXPECT_EQ(claim.claim_token(), "tok-1");
  ASSERT_TRUE(reader->Read(&claim));
  EXPECT_EQ(claim.claim_token(), "tok-2");
  EXPECT_EQ(claim.wakes_size(), 1);

  context.TryCancel();
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::CANCELLED);
  ASSERT_TRUE(disconnected.WaitForNotificationWithTimeout(kWait));
  EXPECT_FALSE(sink->Send(ClaimFor("tok-3")));  // The stream is gone.
}

TEST_F(RuntimeServiceTest, SupersededSessionEndsWithAborted) {
  ClaimSinkPtr sink;
  absl::Notification connected;
  absl::Notification disconnected;
  EXPECT_CALL(scheduler_, Connect(_, _))
      .WillOnce(DoAll(
          SaveArg<1>(&sink), [&connected] { connected.Notify(); }, Return(SessionId{9})));
  EXPECT_CALL(scheduler_, Disconnect(9)).WillOnce([&disconnected] { disconnected.Notify(); });

  grpc::ClientContext context;
  auto reader = stub_->StreamWakeClaims(&context, Connect());
  ASSERT_TRUE(connected.WaitForNotificationWithTimeout(kWait));
  sink->Send(ClaimFor("tok-1"));
  sink->Close(absl::AbortedError("session_id: superseded by session \"s2\""));
  v1::WakeClaim claim;
  ASSERT_TRUE(reader->Read(&claim));  // What was queued still arrives...
  EXPECT_EQ(claim.claim_token(), "tok-1");
  EXPECT_FALSE(reader->Read(&claim));  // ...then the stream ends.
  const grpc::Status status = reader->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::ABORTED);
  EXPECT_THAT(status.error_message(), HasSubstr("superseded"));
  ASSERT_TRUE(disconnected.WaitForNotificationWithTimeout(kWait));
}

TEST_F(RuntimeServiceTest, ConnectRefusedByTheSchedulerEndsTheStream) {
  EXPECT_CALL(scheduler_, Connect(_, _))
      .WillOnce(Return(absl::UnavailableError("runtime is shutting down")));
  grpc::ClientContext context;
  auto reader = stub_->StreamWakeClaims(&context, Connect());
  v1::WakeClaim claim;
  EXPECT_FALSE(reader->Read(&claim));
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(context.GetServerInitialMetadata().count(kSessionMetadataKey), 0u);
}

TEST_F(RuntimeServiceTest, AckClaimConvertsAndMapsTheStatus) {
  EXPECT_CALL(scheduler_, Ack(AllOf(Field(&AckRequest::claim_token, "tok-1"),
                                    Field(&AckRequest::tenant_id, "default"),
                                    Field(&AckRequest::wake_ids, ElementsAre(3, 4))),
                              _))
      .WillOnce([](const AckRequest&, ClaimScheduler::Callback<AckResult> done) {
        done(AckResult{2, true});
      });
  EXPECT_CALL(scheduler_, Ack(Field(&AckRequest::claim_token, "tok-2"), _))
      .WillOnce([](const AckRequest&, ClaimScheduler::Callback<AckResult> done) {
        done(absl::FailedPreconditionError("claim_token: not held by this runner session"));
      });

  v1::AckClaimRequest request;
  request.set_runner_id("runner-a");
  request.set_session_id("s1");
  request.set_stream("/p");
  request.set_claim_token("tok-1");
  request.add_wake_ids(3);
  request.add_wake_ids(4);
  v1::AckClaimResponse response;
  {
    grpc::ClientContext context;
    ASSERT_TRUE(stub_->AckClaim(&context, request, &response).ok());
    EXPECT_EQ(response.acked(), 2);
    EXPECT_TRUE(response.more_pending());
  }
  {
    request.set_claim_token("tok-2");
    grpc::ClientContext context;
    const grpc::Status status = stub_->AckClaim(&context, request, &response);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
    EXPECT_THAT(status.error_message(), HasSubstr("claim_token"));
  }
  {
    request.clear_claim_token();  // Refused before reaching the scheduler.
    grpc::ClientContext context;
    const grpc::Status status = stub_->AckClaim(&context, request, &response);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_THAT(status.error_message(), HasSubstr("claim_token"));
  }
}

TEST_F(RuntimeServiceTest, HeartbeatOfAnOldSessionIsFailedPrecondition) {
  EXPECT_CALL(scheduler_, Heartbeat("runner-a", "s1", "anonymous", _))
      .WillOnce([](const std::string&, const std::string&, const std::string&,
                   ClaimScheduler::Callback<HeartbeatResult> done) {
        done(absl::FailedPreconditionError(
            "session_id: \"s1\" is not the current session of runner \"runner-a\""));
      });
  EXPECT_CALL(scheduler_, Heartbeat("runner-a", "s2", "anonymous", _))
      .WillOnce([](const std::string&, const std::string&, const std::string&,
                   ClaimScheduler::Callback<HeartbeatResult> done) {
        done(HeartbeatResult{1, absl::FromUnixSeconds(1767225700)});
      });
  v1::HeartbeatRequest request;
  request.set_runner_id("runner-a");
  request.set_session_id("s1");
  v1::HeartbeatResponse response;
  {
    grpc::ClientContext context;
    const grpc::Status status = stub_->Heartbeat(&context, request, &response);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
    EXPECT_THAT(status.error_message(), HasSubstr("session_id"));
  }
  {
    request.set_session_id("s2");
    grpc::ClientContext context;
    ASSERT_TRUE(stub_->Heartbeat(&context, request, &response).ok());
    EXPECT_EQ(response.extended(), 1);
    EXPECT_EQ(response.lease_expires_at().seconds(), 1767225700);
  }
}

TEST_F(RuntimeServiceTest, GetHealthReportsCounters) {
  SchedulerHealth health;
  health.connected_runners = 3;
  health.waiting_for_runner = 5;
  health.counters.claims_dispatched = 11;
  EXPECT_CALL(scheduler_, Health()).WillOnce(Return(health));
  RescanStatus rescan;
  rescan.rescans = 6;
  rescan.found = 1;
  EXPECT_CALL(rescanner_, Status()).WillOnce(Return(rescan));
  FollowerStatus status;
  status.up_to_date = true;
  status.events_received = 42;
  EXPECT_CALL(follower_, Status()).WillOnce(Return(status));
  grpc::ClientContext context;
  v1::GetHealthResponse response;
  ASSERT_TRUE(stub_->GetHealth(&context, v1::GetHealthRequest(), &response).ok());
  EXPECT_EQ(response.connected_runners(), 3);
  EXPECT_EQ(response.counters().claims_dispatched(), 11);
  EXPECT_EQ(response.counters().events_received(), 42);
  EXPECT_EQ(response.waiting_for_runner(), 5);
  EXPECT_EQ(response.counters().rescans(), 6);
  EXPECT_EQ(response.counters().rescan_found(), 1);
  EXPECT_TRUE(response.registry_connected());
}

// Tokens "runner-a" (role runner, tenant acme) and "client" (role client).
class TwoTokens final : public common::auth::Authenticator {
 public:
  absl::StatusOr<common::auth::PrincipalPtr> Authenticate(
      const std::optional<absl::string_view>& authorization) override {
    absl::StatusOr<absl::string_view> token = common::auth::BearerToken(authorization);
    if (!token.ok()) return token.status();
    using common::auth::Principal;
    using common::auth::Role;
    if (*token == "runner-a") {
      return std::make_shared<const Principal>(
          Principal{"runner-a", Role::kRunner, false, {"acme"}, absl::InfiniteFuture()});
    }
    if (*token == "client") {
      return std::make_shared<const Principal>(
          Principal{"client", Role::kClient, true, {}, absl::InfiniteFuture()});
    }
    return absl::UnauthenticatedError("unknown, revoked or expired token");
  }
};

class AuthorizedRuntimeServiceTest : public RuntimeServiceTest {
 protected:
  void SetUp() override {
    service_ = std::make_unique<RuntimeService>(scheduler_, follower_, tokens_, &rescanner_);
    grpc::ServerBuilder builder;
    builder.RegisterService(service_.get());
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    stub_ = v1::WakeRuntime::NewStub(server_->InProcessChannel(grpc::ChannelArguments()));
  }

  grpc::Status Ack(const std::string& token, const std::string& tenant) {
    v1::AckClaimRequest request;
    request.set_runner_id("runner-a");
    request.set_session_id("s1");
    request.set_tenant_id(tenant);
    request.set_stream("/p");
    request.set_claim_token("tok");
    grpc::ClientContext context;
    if (!token.empty()) context.AddMetadata("authorization", "Bearer " + token);
    v1::AckClaimResponse response;
    return stub_->AckClaim(&context, request, &response);
  }

  TwoTokens tokens_;
};

TEST_F(AuthorizedRuntimeServiceTest, AckNeedsACredentialTheRunnerRoleAndTheTenant) {
  // StrictMock: none of these reaches the scheduler.
  grpc::Status status = Ack("", "acme");
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_THAT(status.error_message(), HasSubstr("missing credential"));
  status = Ack("forged", "acme");
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  status = Ack("client", "acme");
  EXPECT_EQ(status.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_THAT(status.error_message(), HasSubstr("AckClaim needs the role runner or admin"));
  status = Ack("runner-a", "globex");
  EXPECT_EQ(status.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_THAT(status.error_message(),
              HasSubstr("tenant_id: principal \"runner-a\" does not hold tenant \"globex\""));

  EXPECT_CALL(scheduler_, Ack(AllOf(Field(&AckRequest::tenant_id, "acme"),
                                    Field(&AckRequest::principal, "runner-a")),
                              _))
      .WillOnce([](const AckRequest&, ClaimScheduler::Callback<AckResult> done) {
        done(AckResult{1, false});
      });
  EXPECT_TRUE(Ack("runner-a", "acme").ok());
}

TEST_F(AuthorizedRuntimeServiceTest, StreamWakeClaimsOfAnotherTenantIsRefused) {
  v1::StreamWakeClaimsRequest request = Connect();
  request.set_tenant_id("globex");
  grpc::ClientContext context;
  context.AddMetadata("authorization", "Bearer runner-a");
  auto reader = stub_->StreamWakeClaims(&context, request);
  v1::WakeClaim claim;
  EXPECT_FALSE(reader->Read(&claim));
  const grpc::Status status = reader->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_THAT(status.error_message(), HasSubstr("does not hold tenant \"globex\""));
}

TEST_F(AuthorizedRuntimeServiceTest, GetHealthNeedsRuntimeOrAdmin) {
  grpc::ClientContext context;
  context.AddMetadata("authorization", "Bearer runner-a");
  v1::GetHealthResponse response;
  const grpc::Status status = stub_->GetHealth(&context, v1::GetHealthRequest(), &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_THAT(status.error_message(), HasSubstr("GetHealth needs the role runtime or admin"));
}

}  // namespace
}  // namespace wake::runtime
