#include "runtime-service/runtime_validation.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/status_matchers.h"

namespace wake::runtime {
namespace {

using ::testing::ElementsAre;
using ::testing::StartsWith;
using ::wake::testing::StatusIs;

v1::StreamWakeClaimsRequest Connect() {
  v1::StreamWakeClaimsRequest request;
  request.set_runner_id("runner-a");
  request.set_session_id("s1");
  return request;
}

v1::AckClaimRequest Ack() {
  v1::AckClaimRequest request;
  request.set_runner_id("runner-a");
  request.set_session_id("s1");
  request.set_stream("/p");
  request.set_claim_token("tok");
  return request;
}

TEST(RuntimeValidationTest, RunnerSpecDefaults) {
  v1::StreamWakeClaimsRequest request = Connect();
  request.add_stream_prefixes("/agents/");
  absl::StatusOr<RunnerSpec> spec = ToRunnerSpec(request);
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->tenant_id, "default");
  EXPECT_EQ(spec->max_in_flight, 16);
  EXPECT_THAT(spec->stream_prefixes, ElementsAre("/agents/"));
}

TEST(RuntimeValidationTest, IdsWithControlCharactersAreRefusedByName) {
  const std::string nul("acme\0evil", 9);
  v1::StreamWakeClaimsRequest request = Connect();
  request.set_tenant_id(nul);
  EXPECT_THAT(ToRunnerSpec(request), StatusIs(absl::StatusCode::kInvalidArgument,
                                              StartsWith("tenant_id: contains control")));
  request = Connect();
  request.set_runner_id("runner\n2");
  EXPECT_THAT(ToRunnerSpec(request), StatusIs(absl::StatusCode::kInvalidArgument,
                                              StartsWith("runner_id: contains control")));
  request = Connect();
  request.set_session_id("s\x7f");
  EXPECT_THAT(ToRunnerSpec(request), StatusIs(absl::StatusCode::kInvalidArgument,
                                              StartsWith("session_id: contains control")));
  request = Connect();
  request.add_stream_prefixes(std::string("/a\0", 3));
  EXPECT_THAT(ToRunnerSpec(request), StatusIs(absl::StatusCode::kInvalidArgument,
                                              StartsWith("stream_prefixes[0]: contains control")));

  v1::AckClaimRequest ack = Ack();
  ack.set_stream(std::string("/p\0/q", 5));
  EXPECT_THAT(ToAckRequest(ack),
              StatusIs(absl::StatusCode::kInvalidArgument, StartsWith("stream: contains control")));
  ack = Ack();
  ack.set_tenant_id("t\x01");
  EXPECT_THAT(ToAckRequest(ack), StatusIs(absl::StatusCode::kInvalidArgument,
                                          StartsWith("tenant_id: contains control")));
  v1::HeartbeatRequest heartbeat;
  heartbeat.set_runner_id("r");
  heartbeat.set_session_id(std::string("s\0", 2));
  EXPECT_THAT(ValidateHeartbeat(heartbeat), StatusIs(absl::StatusCode::kInvalidArgument,
                                                     StartsWith("session_id: contains control")));
}

TEST(RuntimeValidationTest, RunnerSpecErrorsNameTheField) {
  v1::StreamWakeClaimsRequest request = Connect();
  request.clear_runner_id();
  EXPECT_THAT(ToRunnerSpec(request),
              StatusIs(absl::StatusCode::kInvalidArgument, StartsWith("runner_id: required")));

  request = Connect();
  request.clear_session_id();
  EXPECT_THAT(ToRunnerSpec(request),
              StatusIs(absl::StatusCode::kInvalidArgument, StartsWith("session_id: required")));

  request = Connect();
  request.set_runner_id(std::string(257, 'r'));
  EXPECT_THAT(ToRunnerSpec(request), StatusIs(absl::StatusCode::kInvalidArgument,
                                              StartsWith("runner_id: longer than 256")));

  for (int bad : {-1, 1025}) {
    request = Connect();
    request.set_max_in_flight(bad);
    EXPECT_THAT(ToRunnerSpec(request),
                StatusIs(absl::StatusCode::kInvalidArgument, StartsWith("max_in_flight:")));
  }
  request = Connect();
  request.set_max_in_flight(1024);
  EXPECT_TRUE(ToRunnerSpec(request).ok());

  request = Connect();
  request.add_stream_prefixes("/a");
  request.add_stream_prefixes("");
  EXPECT_THAT(ToRunnerSpec(request), StatusIs(absl::StatusCode::kInvalidArgument,
                                              StartsWith("stream_prefixes[1]: required")));
}

TEST(RuntimeValidationTest, AckErrorsNameTheField) {
  absl::StatusOr<AckRequest> ack = ToAckRequest(Ack());
  ASSERT_TRUE(ack.ok()) << ack.status();
  EXPECT_EQ(ack->tenant_id, "default");

  v1::AckClaimRequest request = Ack();
  request.clear_claim_token();
  EXPECT_THAT(ToAckRequest(request),
              StatusIs(absl::StatusCode::kInvalidArgument, StartsWith("claim_token: required")));
  request = Ack();
  request.clear_stream();
  EXPECT_THAT(ToAckRequest(request),
              StatusIs(absl::StatusCode::kInvalidArgument, StartsWith("stream: required")));
  request = Ack();
  request.add_wake_ids(4);
  request.add_wake_ids(0);
  EXPECT_THAT(ToAckRequest(request),
              StatusIs(absl::StatusCode::kInvalidArgument, StartsWith("wake_ids[1]:")));
}

TEST(RuntimeValidationTest, HeartbeatNeedsRunnerAndSession) {
  v1::HeartbeatRequest request;
  request.set_session_id("s1");
  EXPECT_THAT(ValidateHeartbeat(request),
              StatusIs(absl::StatusCode::kInvalidArgument, StartsWith("runner_id: required")));
  request.set_runner_id("runner-a");
  request.clear_session_id();
  EXPECT_THAT(ValidateHeartbeat(request),
              StatusIs(absl::StatusCode::kInvalidArgument, StartsWith("session_id: required")));
}

TEST(RuntimeValidationTest, HealthCombinesSchedulerAndFollower) {
  SchedulerHealth scheduler;
  scheduler.connected_runners = 2;
  scheduler.active_claims = 3;
  scheduler.queued_streams = 4;
  scheduler.waiting_for_runner = 9;
  scheduler.counters.claims_succeeded = 5;
  scheduler.counters.claims_released = 6;
  scheduler.last_error = "claim x: UNAVAILABLE";
  FollowerStatus follower;
  follower.up_to_date = false;
  follower.events_received = 7;
  follower.reconnects = 8;
  follower.last_error = "UNAVAILABLE: connection refused";
  RescanStatus rescan;
  rescan.rescans = 10;
  rescan.found = 11;
  v1::GetHealthResponse response;
  ToProto(scheduler, follower, rescan, &response);
  EXPECT_EQ(response.connected_runners(), 2);
  EXPECT_EQ(response.active_claims(), 3);
  EXPECT_EQ(response.queued_streams(), 4);
  EXPECT_EQ(response.waiting_for_runner(), 9);
  EXPECT_EQ(response.counters().claims_succeeded(), 5);
  EXPECT_EQ(response.counters().claims_released(), 6);
  EXPECT_EQ(response.counters().events_received(), 7);
  EXPECT_EQ(response.counters().reconnects(), 8);
  EXPECT_EQ(response.counters().rescans(), 10);
  EXPECT_EQ(response.counters().rescan_found(), 11);
  EXPECT_FALSE(response.registry_connected());
  // While the change stream is down, its error is the one shown.
  EXPECT_EQ(response.last_error(), "UNAVAILABLE: connection refused");
}

}  // namespace
}  // namespace wake::runtime
