#include "runtime-service/registry_calls.h"

#include <functional>
#include <memory>
#include <optional>
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

  void ClaimWakes(grpc::ClientContext*, const v1::ClaimWakesRequest* request,
                  v1::ClaimWakesResponse* response,
                  std::function<void(grpc::Status)> done) override {
    claim = Pending{request, response, std::move(done)};
  }

#define WAKE_UNUSED_UNARY(Method)                                                           \
  void Method(grpc::ClientContext*, const v1::Method##Request*, v1::Method##Response*,     \
              std::function<void(grpc::Status)>) override {                                 \
    ADD_FAILURE() << #Method " not expected";                                               \
  }                                                                                         \
  void Method(grpc::ClientContext*, const v1::Method##Request*, v1::Method##Response*,     \
              grpc::ClientUnaryReactor*) override {                                         \
    ADD_FAILURE() << #Method " not expected";                                               \
  }
  WAKE_UNUSED_UNARY(RegisterWake)
  WAKE_UNUSED_UNARY(UnregisterWakes)
  WAKE_UNUSED_UNARY(EvaluateRunFinished)
  WAKE_UNUSED_UNARY(EvaluateChange)
  WAKE_UNUSED_UNARY(ListRegistrations)
  WAKE_UNUSED_UNARY(AckWakes)
  WAKE_UNUSED_UNARY(ExtendClaims)
  WAKE_UNUSED_UNARY(ReleaseClaim)
  WAKE_UNUSED_UNARY(ClaimStreams)
  WAKE_UNUSED_UNARY(AckClaims)
#undef WAKE_UNUSED_UNARY
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
  calls.ClaimWakes(Request("/p"), [&result](absl::StatusOr<v1::ClaimWakesResponse> r) {
    result = std::move(r);
  });
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
  calls.ClaimWakes(Request("/p"), [&result](absl::StatusOr<v1::ClaimWakesResponse> r) {
    result = std::move(r);
  });
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
    calls.ClaimWakes(Request("/p"), [&called](absl::StatusOr<v1::ClaimWakesResponse>) {
      called = true;
    });
  }
  EXPECT_EQ(executor.RunAll(), 1);
  EXPECT_FALSE(called);
}

}  // namespace
}  // namespace wake::runtime
