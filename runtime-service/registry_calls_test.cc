#include "runtime-service/registry_calls.h"

#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>

#include "common/executor.h"
#include "common/simulated_time_source.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/status_matchers.h"
#include "wake/v1/registry_mock.grpc.pb.h"

namespace wake::runtime {
namespace {

using ::testing::_;
using ::testing::DoAll;
using ::testing::HasSubstr;
using ::testing::Return;
using ::testing::SetArgPointee;
using ::testing::StrictMock;
using ::wake::testing::StatusIs;

using AsyncApi = v1::WakeRegistry::StubInterface::async_interface;

// The callback API of the real stub, for the calls RegistryCalls makes:
// each call is parked until the test completes it.
class FakeAsyncApi : public AsyncApi {
 public:
  struct Pending {
    const v1::ClaimWakesRequest* request;
    v1::ClaimWakesResponse* response;
    std::function<void(grpc::Status)> done;
  };
  std::optional<Pending> claim;
  template <typename Request, typename Response>
  struct Call {
    const Request* request;
    Response* response;
    std::function<void(grpc::Status)> done;
  };
  std::deque<Call<v1::ClaimStreamsRequest, v1::ClaimStreamsResponse>> claim_batches;
  std::deque<Call<v1::AckClaimsRequest, v1::AckClaimsResponse>> ack_batches;
  std::deque<Call<v1::AckWakesRequest, v1::AckWakesResponse>> acks;

  void ClaimWakes(grpc::ClientContext*, const v1::ClaimWakesRequest* request,
                  v1::ClaimWakesResponse* response,
                  std::function<void(grpc::Status)> done) override {
    claim = Pending{request, response, std::move(done)};
  }
  void ClaimStreams(grpc::ClientContext*, const v1::ClaimStreamsRequest* request,
                    v1::ClaimStreamsResponse* response,
                    std::function<void(grpc::Status)> done) override {
    claim_batches.push_back({request, response, std::move(done)});
  }
  void AckClaims(grpc::ClientContext*, const v1::AckClaimsRequest* request,
                 v1::AckClaimsResponse* response, std::function<void(grpc::Status)> done) override {
    ack_batches.push_back({request, response, std::move(done)});
  }
  void AckWakes(grpc::ClientContext*, const v1::AckWakesRequest* request,
                v1::AckWakesResponse* response, std::function<void(grpc::Status)> done) override {
    acks.push_back({request, response, std::move(done)});
  }

#define WAKE_UNUSED_UNARY(Method)                                                      \
  void Method(grpc::ClientContext*, const v1::Method##Request*, v1::Method##Response*, \
              std::function<void(grpc::Status)>) override {                            \
    ADD_FAILURE() << #Method " not expected";                                          \
  }                                                                                    \
  void Method(grpc::ClientContext*, const v1::Method##Request*, v1::Method##Response*, \
              grpc::ClientUnaryReactor*) override {                                    \
    ADD_FAILURE() << #Method " not expected";                                          \
  }
  WAKE_UNUSED_UNARY(RegisterWake)
  WAKE_UNUSED_UNARY(UnregisterWakes)
  WAKE_UNUSED_UNARY(EvaluateRunFinished)
  WAKE_UNUSED_UNARY(EvaluateChange)
  WAKE_UNUSED_UNARY(ListRegistrations)
  WAKE_UNUSED_UNARY(ExtendClaims)
  WAKE_UNUSED_UNARY(ReleaseClaim)
#undef WAKE_UNUSED_UNARY
#define WAKE_UNUSED_REACTOR(Method)                                                    \
  void Method(grpc::ClientContext*, const v1::Method##Request*, v1::Method##Response*, \
              grpc::ClientUnaryReactor*) override {                                    \
    ADD_FAILURE() << "reactor " #Method " not expected";                               \
  }
  WAKE_UNUSED_REACTOR(ClaimStreams)
  WAKE_UNUSED_REACTOR(AckWakes)
  WAKE_UNUSED_REACTOR(AckClaims)
#undef WAKE_UNUSED_REACTOR
  void ClaimWakes(grpc::ClientContext*, const v1::ClaimWakesRequest*, v1::ClaimWakesResponse*,
                  grpc::ClientUnaryReactor*) override {
    ADD_FAILURE() << "reactor ClaimWakes not expected";
  }
  void SubscribeChanges(grpc::ClientContext*, const v1::SubscribeChangesRequest*,
                        grpc::ClientReadReactor<v1::ChangeEvent>*) override {
    ADD_FAILURE() << "SubscribeChanges not expected";
  }
};

// The generated mock with a callback API, like the real stub has.
class StubWithCallbackApi : public StrictMock<v1::MockWakeRegistryStub> {
 public:
  AsyncApi* async() override { return &api; }
  FakeAsyncApi api;
};

v1::ClaimWakesRequest Request(const std::string& stream) {
  v1::ClaimWakesRequest request;
  request.set_tenant_id("acme");
  request.set_stream(stream);
  return request;
}

TEST(RegistryCallsTest, UsesTheCallbackApiWhenTheStubHasOne) {
  StubWithCallbackApi stub;  // StrictMock: any blocking call fails the test.
  common::ManualExecutor executor;
  common::SimulatedTimeSource time;
  std::optional<absl::StatusOr<v1::ClaimWakesResponse>> result;
  {
    RegistryCalls calls(stub, executor, time, absl::Seconds(5));
    calls.ClaimWakes(Request("/p"), [&result](absl::StatusOr<v1::ClaimWakesResponse> r) {
      result = std::move(r);
    });
    EXPECT_EQ(executor.queued(), 0u);  // No thread is blocked on it.
    ASSERT_TRUE(stub.api.claim.has_value());
    EXPECT_EQ(stub.api.claim->request->stream(), "/p");
    EXPECT_FALSE(result.has_value());

    // Completed from a gRPC thread.
    stub.api.claim->response->set_status(v1::NOTHING_PENDING);
    std::thread grpc_thread([&stub] { stub.api.claim->done(grpc::Status::OK); });
    grpc_thread.join();
  }
  ASSERT_TRUE(result.has_value());
  ASSERT_TRUE(result->ok());
  EXPECT_EQ((*result)->status(), v1::NOTHING_PENDING);
}

TEST(RegistryCallsTest, MapsTheCallStatus) {
  StubWithCallbackApi stub;
  common::ManualExecutor executor;
  common::SimulatedTimeSource time;
  RegistryCalls calls(stub, executor, time, absl::Seconds(5));
  std::optional<absl::StatusOr<v1::ClaimWakesResponse>> result;
  calls.ClaimWakes(Request("/p"),
                   [&result](absl::StatusOr<v1::ClaimWakesResponse> r) { result = std::move(r); });
  stub.api.claim->done(grpc::Status(grpc::StatusCode::UNAVAILABLE, "registry down"));
  EXPECT_THAT(*result, StatusIs(absl::StatusCode::kUnavailable, HasSubstr("registry down")));
}

TEST(RegistryCallsTest, FallsBackToBlockingCallsOnTheExecutor) {
  StrictMock<v1::MockWakeRegistryStub> stub;  // async() is nullptr.
  common::ManualExecutor executor;
  common::SimulatedTimeSource time;
  RegistryCalls calls(stub, executor, time, absl::Seconds(5));
  v1::ClaimWakesResponse response;
  response.set_status(v1::ALREADY_CLAIMED);
  EXPECT_CALL(stub, ClaimWakes(_, _, _))
      .WillOnce(DoAll(SetArgPointee<2>(response), Return(grpc::Status::OK)));
  std::optional<absl::StatusOr<v1::ClaimWakesResponse>> result;
  calls.ClaimWakes(Request("/p"),
                   [&result](absl::StatusOr<v1::ClaimWakesResponse> r) { result = std::move(r); });
  EXPECT_FALSE(result.has_value());  // Never inline.
  ASSERT_EQ(executor.RunAll(), 1);
  ASSERT_TRUE(result.has_value() && result->ok());
  EXPECT_EQ((*result)->status(), v1::ALREADY_CLAIMED);
}

TEST(RegistryCallsTest, QueuedBlockingCallIsDroppedOnceDestroyed) {
  StrictMock<v1::MockWakeRegistryStub> stub;  // No call may reach it.
  common::ManualExecutor executor;
  common::SimulatedTimeSource time;
  bool called = false;
  {
    RegistryCalls calls(stub, executor, time, absl::Seconds(5));
    calls.ClaimWakes(Request("/p"),
                     [&called](absl::StatusOr<v1::ClaimWakesResponse>) { called = true; });
  }
  EXPECT_EQ(executor.RunAll(), 1);
  EXPECT_FALSE(called);
}

// Collects the results of calls by name.
struct Results {
  std::map<std::string, absl::StatusOr<v1::ClaimWakesResponse>> claims;
  std::map<std::string, absl::StatusOr<v1::AckWakesResponse>> acks;
  RegistryCalls::Done<v1::ClaimWakesResponse> Claim(const std::string& name) {
    return [this, name](absl::StatusOr<v1::ClaimWakesResponse> r) {
      claims.emplace(name, std::move(r));
    };
  }
  RegistryCalls::Done<v1::AckWakesResponse> Ack(const std::string& name) {
    return
        [this, name](absl::StatusOr<v1::AckWakesResponse> r) { acks.emplace(name, std::move(r)); };
  }
};

CallBatching OneBatchInFlight() {
  CallBatching batching;
  batching.enabled = true;
  batching.max_in_flight = 1;
  return batching;
}

TEST(RegistryCallsTest, ClaimsWaitingBehindABatchGoTogetherInTheNext) {
  StubWithCallbackApi stub;
  common::ManualExecutor executor;
  common::SimulatedTimeSource time;
  Results results;
  RegistryCalls calls(stub, executor, time, absl::Seconds(5), OneBatchInFlight());
  // A lone call leaves at once, in a batch of one.
  calls.ClaimWakes(Request("/a"), results.Claim("/a"));
  ASSERT_EQ(stub.api.claim_batches.size(), 1u);
  ASSERT_EQ(stub.api.claim_batches[0].request->claims_size(), 1);
  // These wait for it.
  calls.ClaimWakes(Request("/b"), results.Claim("/b"));
  calls.ClaimWakes(Request("/c"), results.Claim("/c"));
  EXPECT_EQ(stub.api.claim_batches.size(), 1u);

  v1::ClaimOutcome* a = stub.api.claim_batches[0].response->add_claims();
  a->mutable_claim()->set_status(v1::NOTHING_PENDING);
  stub.api.claim_batches[0].done(grpc::Status::OK);
  ASSERT_TRUE(results.claims.count("/a"));
  ASSERT_TRUE(results.claims.at("/a").ok());
  EXPECT_EQ(results.claims.at("/a")->status(), v1::NOTHING_PENDING);

  // The next batch carries both waiting calls; each gets its own answer.
  ASSERT_EQ(stub.api.claim_batches.size(), 2u);
  const v1::ClaimStreamsRequest& second = *stub.api.claim_batches[1].request;
  ASSERT_EQ(second.claims_size(), 2);
  EXPECT_EQ(second.claims(0).stream(), "/b");
  EXPECT_EQ(second.claims(1).stream(), "/c");
  v1::ClaimOutcome* b = stub.api.claim_batches[1].response->add_claims();
  b->mutable_claim()->set_status(v1::CLAIMED);
  b->mutable_claim()->set_claim_token("tb");
  v1::ClaimOutcome* c = stub.api.claim_batches[1].response->add_claims();
  c->set_code(static_cast<int>(absl::StatusCode::kUnavailable));
  c->set_message("database down");
  stub.api.claim_batches[1].done(grpc::Status::OK);
  ASSERT_TRUE(results.claims.at("/b").ok());
  EXPECT_EQ(results.claims.at("/b")->claim_token(), "tb");
  EXPECT_THAT(results.claims.at("/c"),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("database down")));
  EXPECT_EQ(stub.api.claim_batches.size(), 2u);  // Nothing left to send.
}

TEST(RegistryCallsTest, AClaimThatDidNotFitInTheBatchAnswerIsSentAlone) {
  StubWithCallbackApi stub;
  common::ManualExecutor executor;
  common::SimulatedTimeSource time;
  Results results;
  RegistryCalls calls(stub, executor, time, absl::Seconds(5), OneBatchInFlight());
  calls.ClaimWakes(Request("/a"), results.Claim("/a"));
  calls.ClaimWakes(Request("/b"), results.Claim("/b"));
  stub.api.claim_batches[0].response->add_claims()->mutable_claim()->set_status(
      v1::NOTHING_PENDING);
  stub.api.claim_batches[0].done(grpc::Status::OK);
  ASSERT_EQ(stub.api.claim_batches.size(), 2u);
  v1::ClaimOutcome* full = stub.api.claim_batches[1].response->add_claims();
  full->set_code(static_cast<int>(absl::StatusCode::kResourceExhausted));
  full->set_message("claims: the answer is full");
  stub.api.claim_batches[1].done(grpc::Status::OK);
  // Not an answer: /b goes again as a ClaimWakes of its own.
  EXPECT_FALSE(results.claims.count("/b"));
  ASSERT_TRUE(stub.api.claim.has_value());
  EXPECT_EQ(stub.api.claim->request->stream(), "/b");
  stub.api.claim->response->set_status(v1::CLAIMED);
  stub.api.claim->done(grpc::Status::OK);
  ASSERT_TRUE(results.claims.at("/b").ok());
  EXPECT_EQ(results.claims.at("/b")->status(), v1::CLAIMED);
}

TEST(RegistryCallsTest, AFailedBatchFailsEachOfItsCalls) {
  StubWithCallbackApi stub;
  common::ManualExecutor executor;
  common::SimulatedTimeSource time;
  Results results;
  RegistryCalls calls(stub, executor, time, absl::Seconds(5), OneBatchInFlight());
  calls.ClaimWakes(Request("/a"), results.Claim("/a"));
  stub.api.claim_batches[0].done(grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED, "slow"));
  EXPECT_THAT(results.claims.at("/a"),
              StatusIs(absl::StatusCode::kDeadlineExceeded, HasSubstr("slow")));
  // An answer with the wrong number of entries is a broken invariant.
  calls.ClaimWakes(Request("/b"), results.Claim("/b"));
  ASSERT_EQ(stub.api.claim_batches.size(), 2u);
  stub.api.claim_batches[1].done(grpc::Status::OK);
  EXPECT_THAT(results.claims.at("/b"),
              StatusIs(absl::StatusCode::kInternal, HasSubstr("wrong number of answers")));
}

TEST(RegistryCallsTest, AcksAreBatchedAndAnsweredOneByOne) {
  StubWithCallbackApi stub;
  common::ManualExecutor executor;
  common::SimulatedTimeSource time;
  Results results;
  RegistryCalls calls(stub, executor, time, absl::Seconds(5), OneBatchInFlight());
  v1::AckWakesRequest ack;
  ack.set_stream("/a");
  ack.set_claim_token("ta");
  ack.set_claim_next(true);
  calls.AckWakes(ack, results.Ack("/a"));
  ack.set_stream("/b");
  ack.set_claim_token("tb");
  calls.AckWakes(ack, results.Ack("/b"));
  ack.set_stream("/c");
  ack.set_claim_token("tc");
  calls.AckWakes(ack, results.Ack("/c"));
  stub.api.ack_batches[0].response->add_acks()->mutable_ack()->set_acked(1);
  stub.api.ack_batches[0].done(grpc::Status::OK);
  ASSERT_EQ(stub.api.ack_batches.size(), 2u);
  const v1::AckClaimsRequest& second = *stub.api.ack_batches[1].request;
  ASSERT_EQ(second.acks_size(), 2);
  EXPECT_TRUE(second.acks(0).claim_next());
  EXPECT_EQ(second.acks(1).claim_token(), "tc");
  v1::AckOutcome* b = stub.api.ack_batches[1].response->add_acks();
  b->set_code(static_cast<int>(absl::StatusCode::kFailedPrecondition));
  b->set_message("claim_token: the claim is not live");
  v1::AckOutcome* c = stub.api.ack_batches[1].response->add_acks();
  c->mutable_ack()->set_acked(2);
  c->mutable_ack()->set_more_pending(true);
  c->mutable_ack()->mutable_next()->set_status(v1::CLAIMED);
  stub.api.ack_batches[1].done(grpc::Status::OK);
  ASSERT_TRUE(results.acks.at("/a").ok());
  EXPECT_EQ(results.acks.at("/a")->acked(), 1);
  EXPECT_THAT(results.acks.at("/b"),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("not live")));
  ASSERT_TRUE(results.acks.at("/c").ok());
  EXPECT_EQ(results.acks.at("/c")->next().status(), v1::CLAIMED);
}

TEST(RegistryCallsTest, ARegistryWithoutBatchesGetsSingleCallsFromThenOn) {
  StubWithCallbackApi stub;
  common::ManualExecutor executor;
  common::SimulatedTimeSource time;
  Results results;
  RegistryCalls calls(stub, executor, time, absl::Seconds(5), OneBatchInFlight());
  v1::AckWakesRequest ack;
  ack.set_stream("/a");
  ack.set_claim_token("ta");
  calls.AckWakes(ack, results.Ack("/a"));
  ack.set_stream("/b");
  calls.AckWakes(ack, results.Ack("/b"));  // Waits behind the first batch.
  stub.api.ack_batches[0].done(grpc::Status(grpc::StatusCode::UNIMPLEMENTED, "no AckClaims"));
  // The batch's call goes again alone, and so does the one that waited.
  ASSERT_EQ(stub.api.acks.size(), 2u);
  EXPECT_EQ(stub.api.acks[0].request->stream(), "/a");
  EXPECT_EQ(stub.api.acks[1].request->stream(), "/b");
  stub.api.acks[0].response->set_acked(1);
  stub.api.acks[0].done(grpc::Status::OK);
  ASSERT_TRUE(results.acks.at("/a").ok());
  EXPECT_EQ(results.acks.at("/a")->acked(), 1);
  // Later calls never try a batch again.
  ack.set_stream("/c");
  calls.AckWakes(ack, results.Ack("/c"));
  EXPECT_EQ(stub.api.ack_batches.size(), 1u);
  EXPECT_EQ(stub.api.acks.size(), 3u);
  stub.api.acks[1].done(grpc::Status::OK);
  stub.api.acks[2].done(grpc::Status::OK);
}

TEST(RegistryCallsTest, BatchesUseTheBlockingApiWithoutACallbackOne) {
  StrictMock<v1::MockWakeRegistryStub> stub;
  common::ManualExecutor executor;
  common::SimulatedTimeSource time;
  Results results;
  RegistryCalls calls(stub, executor, time, absl::Seconds(5), OneBatchInFlight());
  v1::ClaimStreamsResponse response;
  response.add_claims()->mutable_claim()->set_status(v1::ALREADY_CLAIMED);
  EXPECT_CALL(stub, ClaimStreams(_, _, _))
      .WillOnce(DoAll(SetArgPointee<2>(response), Return(grpc::Status::OK)));
  calls.ClaimWakes(Request("/p"), results.Claim("/p"));
  ASSERT_EQ(executor.RunAll(), 1);
  ASSERT_TRUE(results.claims.at("/p").ok());
  EXPECT_EQ(results.claims.at("/p")->status(), v1::ALREADY_CLAIMED);
}

}  // namespace
}  // namespace wake::runtime
