// The runtime against a small in-memory registry that follows the proto
// contract, over real gRPC (in-process channels, no sockets): the real stub's
// callback API, the follower's stream, real time and threads. Waits are on
// notifications with generous timeouts, never sleeps.
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "common/executor.h"
#include "common/real_time_source.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "runtime-service/claim_scheduler_impl.h"
#include "runtime-service/registry_follower_impl.h"
#include "runtime-service/runtime_service.h"
#include "tests/support/test_runner.h"
#include "wake/v1/registry.grpc.pb.h"

namespace wake::runtime {
namespace {

using ::testing::ElementsAre;
using ::testing::UnorderedElementsAre;
using ::wake::testing::TestRunner;
using ::wake::testing::TestRunnerOptions;

constexpr absl::Duration kWait = absl::Seconds(20);

// Pending wakes and claims per stream, and the change log SubscribeChanges
// serves (offset = index in the log).
class FakeRegistry final : public v1::WakeRegistry::Service {
 public:
  int64_t AddWake(const std::string& stream) {
    absl::MutexLock lock(&mu_);
    v1::Wake wake;
    wake.set_id(next_id_++);
    wake.set_tenant_id("acme");
    wake.set_stream(stream);
    pending_[stream].push_back(wake);
    LogWakeLocked(wake);
    return wake.id();
  }

  grpc::Status SubscribeChanges(grpc::ServerContext* context,
                                const v1::SubscribeChangesRequest* request,
                                grpc::ServerWriter<v1::ChangeEvent>* writer) override {
    size_t next;
    std::vector<v1::ChangeEvent> snapshot;
    {
      absl::MutexLock lock(&mu_);
      ++subscriptions_;
      if (request->from_offset() == "-1") {
        next = log_.size();
        for (const auto& [stream, wakes] : pending_) {
          for (const v1::Wake& wake : wakes) {
            snapshot.push_back(WakeEvent(wake, OffsetBefore(next)));
          }
        }
      } else {
        next = std::stoul(request->from_offset()) + 1;
      }
    }
    for (const v1::ChangeEvent& event : snapshot) writer->Write(event);
    for (;;) {
      std::vector<v1::ChangeEvent> batch;
      {
        absl::MutexLock lock(&mu_);
        auto more = [this, next]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
          return log_.size() > next || closing_;
        };
        mu_.AwaitWithTimeout(absl::Condition(&more), absl::Milliseconds(50));
        if (closing_ || context->IsCancelled()) return grpc::Status::CANCELLED;
        batch.assign(log_.begin() + next, log_.end());
        next = log_.size();
      }
      for (const v1::ChangeEvent& event : batch) writer->Write(event);
      v1::ChangeEvent up_to_date;
      up_to_date.set_offset(OffsetBefore(next));
      up_to_date.set_control(v1::UP_TO_DATE);
      if (!writer->Write(up_to_date)) return grpc::Status::CANCELLED;
    }
  }

  grpc::Status ClaimWakes(grpc::ServerContext*, const v1::ClaimWakesRequest* request,
                          v1::ClaimWakesResponse* response) override {
    absl::MutexLock lock(&mu_);
    const std::string& stream = request->stream();
    if (claims_.count(stream) > 0) {
      response->set_status(v1::ALREADY_CLAIMED);
    } else if (pending_[stream].empty()) {
      response->set_status(v1::NOTHING_PENDING);
    } else {
      Claim& claim = claims_[stream];
      claim.token = absl::StrCat("tok-", next_token_++);
      claim.wakes = std::move(pending_[stream]);
      pending_[stream].clear();
      response->set_status(v1::CLAIMED);
      response->set_claim_token(claim.token);
      for (const v1::Wake& wake : claim.wakes) *response->add_wakes() = wake;
    }
    return grpc::Status::OK;
  }

  grpc::Status AckWakes(grpc::ServerContext*, const v1::AckWakesRequest* request,
                        v1::AckWakesResponse* response) override {
    absl::MutexLock lock(&mu_);
    auto it = claims_.find(request->stream());
    if (it == claims_.end() || it->second.token != request->claim_token()) {
      return grpc::Status(grpc::StatusCode::NOT_FOUND, "claim_token: no such claim");
    }
    response->set_acked(static_cast<int64_t>(it->second.wakes.size()));
    for (const v1::Wake& wake : it->second.wakes) acked_.push_back(wake.id());
    claims_.erase(it);
    response->set_more_pending(!pending_[request->stream()].empty());
    return grpc::Status::OK;
  }

  grpc::Status ReleaseClaim(grpc::ServerContext*, const v1::ReleaseClaimRequest* request,
                            v1::ReleaseClaimResponse* response) override {
    absl::MutexLock lock(&mu_);
    auto it = claims_.find(request->stream());
    if (it == claims_.end() || it->second.token != request->claim_token()) {
      return grpc::Status(grpc::StatusCode::NOT_FOUND, "claim_token: no such claim");
    }
    response->set_released(static_cast<int64_t>(it->second.wakes.size()));
    std::vector<v1::Wake>& pending = pending_[request->stream()];
    pending.insert(pending.begin(), it->second.wakes.begin(), it->second.wakes.end());
    for (const v1::Wake& wake : it->second.wakes) LogWakeLocked(wake);
    claims_.erase(it);
    return grpc::Status::OK;
  }

  grpc::Status ExtendClaims(grpc::ServerContext*, const v1::ExtendClaimsRequest* request,
                            v1::ExtendClaimsResponse* response) override {
    absl::MutexLock lock(&mu_);
    for (const v1::ClaimRef& ref : request->claims()) {
      v1::ExtendedClaim* out = response->add_claims();
      *out->mutable_claim() = ref;
      auto it = claims_.find(ref.stream());
      out->set_extended(it != claims_.end() && it->second.token == ref.claim_token());
    }
    return grpc::Status::OK;
  }

  void Close() {
    absl::MutexLock lock(&mu_);
    closing_ = true;
  }

  std::vector<int64_t> Acked() {
    absl::MutexLock lock(&mu_);
    return acked_;
  }

 private:
  struct Claim {
    std::string token;
    std::vector<v1::Wake> wakes;
  };

  // The offset that resumes at log index `next`.
  static std::string OffsetBefore(size_t next) { return next == 0 ? "-1" : absl::StrCat(next - 1); }

  static v1::ChangeEvent WakeEvent(const v1::Wake& wake, const std::string& offset) {
    v1::ChangeEvent event;
    event.set_offset(offset);
    event.mutable_wake()->set_tenant_id(wake.tenant_id());
    event.mutable_wake()->set_stream(wake.stream());
    event.mutable_wake()->set_wake_id(wake.id());
    return event;
  }

  void LogWakeLocked(const v1::Wake& wake) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    log_.push_back(WakeEvent(wake, absl::StrCat(log_.size())));
  }

  absl::Mutex mu_;
  int64_t next_id_ ABSL_GUARDED_BY(mu_) = 1;
  int next_token_ ABSL_GUARDED_BY(mu_) = 1;
  int subscriptions_ ABSL_GUARDED_BY(mu_) = 0;
  bool closing_ ABSL_GUARDED_BY(mu_) = false;
  std::map<std::string, std::vector<v1::Wake>> pending_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, Claim> claims_ ABSL_GUARDED_BY(mu_);
  std::vector<v1::ChangeEvent> log_ ABSL_GUARDED_BY(mu_);
  std::vector<int64_t> acked_ ABSL_GUARDED_BY(mu_);
};

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
    service_ = std::make_unique<WakeRuntimeService>(*scheduler_, *follower_, authenticator_);
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
  std::unique_ptr<WakeRuntimeService> service_;
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
