// The runtime against a small in-memory registry that follows the proto
// contract (tests/support/fake_registry.h), over real gRPC (in-process
// channels, no sockets): the real stub's callback API, the follower's stream,
// real time and threads. Waits are on notifications with generous timeouts,
// never sleeps.
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/synchronization/notification.h"
#include "common/executor.h"
#include "common/real_time_source.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "runtime-service/claim_scheduler_impl.h"
#include "runtime-service/registry_follower_impl.h"
#include "runtime-service/runtime_service.h"
#include "tests/support/fake_registry.h"
#include "tests/support/test_runner.h"
#include "wake/v1/registry.grpc.pb.h"

namespace wake::runtime {
namespace {

using ::testing::ElementsAre;
using ::testing::UnorderedElementsAre;
using ::wake::testing::FakeRegistry;
using ::wake::testing::TestRunner;
using ::wake::testing::TestRunnerOptions;

constexpr absl::Duration kWait = absl::Seconds(20);

std::vector<int64_t> WakeIds(const v1::WakeClaim& claim) {
  std::vector<int64_t> ids;
  for (const v1::Wake& wake : claim.wakes()) ids.push_back(wake.id());
  return ids;
}

class RuntimeFakeRegistryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    grpc::ServerBuilder registry_builder;
    registry_builder.RegisterService(&registry_);
    registry_server_ = registry_builder.BuildAndStart();
    stub_ = v1::WakeRegistry::NewStub(registry_server_->InProcessChannel(grpc::ChannelArguments()));
  }

  void StartRuntime() {
    SchedulerOptions options;
    options.runtime_id = "rt-1";
    scheduler_ = std::make_unique<ClaimSchedulerImpl>(*stub_, time_, executor_, options);
    FollowerOptions follower_options;
    follower_options.on_up_to_date_changed = [this](bool up) {
      if (up && !up_to_date_.HasBeenNotified()) up_to_date_.Notify();
    };
    follower_ =
        std::make_unique<RegistryFollowerImpl>(*stub_, *scheduler_, time_, follower_options);
    service_ = std::make_unique<RuntimeService>(*scheduler_, *follower_, authenticator_);
    grpc::ServerBuilder builder;
    builder.RegisterService(service_.get());
    runtime_server_ = builder.BuildAndStart();
    follower_thread_ = std::thread([this] { follower_->Run(); });
  }

  void TearDown() override {
    if (follower_) {
      follower_->Stop();
      follower_thread_.join();
      runtime_server_->Shutdown();
      scheduler_->BeginShutdown();
      scheduler_->ReleaseAll();
      EXPECT_TRUE(scheduler_->AwaitSettled(kWait));
    }
    registry_.Close();
    registry_server_->Shutdown();
  }

  std::unique_ptr<TestRunner> Runner(const std::string& runner_id) {
    TestRunnerOptions options;
    options.runner_id = runner_id;
    options.tenant_id = "acme";
    auto runner =
        TestRunner::Connect(runtime_server_->InProcessChannel(grpc::ChannelArguments()), options);
    EXPECT_TRUE(runner.ok()) << runner.status();
    return runner.ok() ? std::move(*runner) : nullptr;
  }

  FakeRegistry registry_;
  std::unique_ptr<grpc::Server> registry_server_;
  std::unique_ptr<v1::WakeRegistry::Stub> stub_;
  common::RealTimeSource time_;
  common::ThreadPoolExecutor executor_{2};
  absl::Notification up_to_date_;
  std::unique_ptr<ClaimSchedulerImpl> scheduler_;
  std::unique_ptr<RegistryFollowerImpl> follower_;
  common::auth::OpenAuthenticator authenticator_;
  std::unique_ptr<RuntimeService> service_;
  std::unique_ptr<grpc::Server> runtime_server_;
  std::thread follower_thread_;
};

TEST_F(RuntimeFakeRegistryTest, PendingWakesAreDeliveredAsOneBatchPerStream) {
  // Pending before the runtime starts: found by the snapshot from "-1".
  registry_.AddWake("/parent/1");
  registry_.AddWake("/parent/1");
  registry_.AddWake("/parent/2");
  StartRuntime();
  ASSERT_TRUE(up_to_date_.WaitForNotificationWithTimeout(kWait));
  auto runner = Runner("runner-a");
  ASSERT_NE(runner, nullptr);

  std::map<std::string, std::vector<int64_t>> batches;
  for (int i = 0; i < 2; ++i) {
    absl::StatusOr<v1::WakeClaim> claim = runner->NextClaim(kWait);
    ASSERT_TRUE(claim.ok()) << claim.status();
    batches[claim->stream()] = WakeIds(*claim);
    ASSERT_TRUE(runner->Ack(*claim).ok());
  }
  EXPECT_THAT(batches["/parent/1"], ElementsAre(1, 2));
  EXPECT_THAT(batches["/parent/2"], ElementsAre(3));
  EXPECT_THAT(registry_.Acked(), UnorderedElementsAre(1, 2, 3));
}

TEST_F(RuntimeFakeRegistryTest, WakesArrivingDuringAClaimFollowInOneMoreBatch) {
  StartRuntime();
  ASSERT_TRUE(up_to_date_.WaitForNotificationWithTimeout(kWait));
  auto runner = Runner("runner-a");
  ASSERT_NE(runner, nullptr);
  registry_.AddWake("/parent/1");
  absl::StatusOr<v1::WakeClaim> first = runner->NextClaim(kWait);
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_THAT(WakeIds(*first), ElementsAre(1));

  // Three children finish while the parent's claim is held.
  registry_.AddWake("/parent/1");
  registry_.AddWake("/parent/1");
  registry_.AddWake("/parent/1");
  EXPECT_EQ(runner->NextClaim(absl::Milliseconds(200)).status().code(),
            absl::StatusCode::kDeadlineExceeded);  // One active claim per stream.
  ASSERT_TRUE(runner->Ack(*first).ok());
  absl::StatusOr<v1::WakeClaim> second = runner->NextClaim(kWait);
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_THAT(WakeIds(*second), ElementsAre(2, 3, 4));
  ASSERT_TRUE(runner->Ack(*second).ok());
  EXPECT_THAT(registry_.Acked(), ElementsAre(1, 2, 3, 4));
}

TEST_F(RuntimeFakeRegistryTest, ClaimsOfARunnerThatLeavesGoToAnotherRunner) {
  StartRuntime();
  ASSERT_TRUE(up_to_date_.WaitForNotificationWithTimeout(kWait));
  auto leaving = Runner("runner-a");
  ASSERT_NE(leaving, nullptr);
  registry_.AddWake("/parent/1");
  ASSERT_TRUE(leaving->NextClaim(kWait).ok());

  auto staying = Runner("runner-b");
  ASSERT_NE(staying, nullptr);
  leaving->Disconnect();
  absl::StatusOr<v1::WakeClaim> redelivered = staying->NextClaim(kWait);
  ASSERT_TRUE(redelivered.ok()) << redelivered.status();
  EXPECT_THAT(WakeIds(*redelivered), ElementsAre(1));
  ASSERT_TRUE(staying->Ack(*redelivered).ok());
  EXPECT_THAT(registry_.Acked(), ElementsAre(1));
}

}  // namespace
}  // namespace wake::runtime
