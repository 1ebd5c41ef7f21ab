#include "tests/support/test_runner.h"

#include <atomic>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_util.h"
#include "runtime-service/runtime_service.h"

namespace wake::testing {
namespace {

std::string FreshSessionId() {
  static std::atomic<int64_t> counter{0};
  return absl::StrCat("session-", absl::ToUnixMicros(absl::Now()), "-", counter.fetch_add(1));
}

}  // namespace

TestRunner::TestRunner(std::shared_ptr<grpc::Channel> channel, TestRunnerOptions options)
    : channel_(std::move(channel)),
      stub_(v1::WakeRuntime::NewStub(channel_)),
      options_(std::move(options)) {}

absl::StatusOr<std::unique_ptr<TestRunner>> TestRunner::Connect(
    std::shared_ptr<grpc::Channel> channel, TestRunnerOptions options) {
  if (options.session_id.empty()) options.session_id = FreshSessionId();
  std::unique_ptr<TestRunner> runner(new TestRunner(std::move(channel), std::move(options)));
  v1::StreamWakeClaimsRequest request;
  request.set_runner_id(runner->options_.runner_id);
  request.set_session_id(runner->options_.session_id);
  request.set_tenant_id(runner->options_.tenant_id);
  for (const std::string& prefix : runner->options_.stream_prefixes) {
    request.add_stream_prefixes(prefix);
  }
  request.set_max_in_flight(runner->options_.max_in_flight);

  runner->reader_ = runner->stub_->StreamWakeClaims(&runner->context_, request);
  runner->reader_->WaitForInitialMetadata();
  if (runner->context_.GetServerInitialMetadata().count(runtime::kSessionMetadataKey) == 0) {
    return common::FromGrpcStatus(runner->reader_->Finish());
  }
  runner->reader_thread_ = std::thread([r = runner.get()] { r->ReadLoop(); });
  return runner;
}

TestRunner::~TestRunner() {
  Disconnect();
  if (reader_thread_.joinable()) reader_thread_.join();
}

void TestRunner::ReadLoop() {
  v1::WakeClaim claim;
  while (reader_->Read(&claim)) {
    {
      absl::MutexLock lock(&mu_);
      received_.push_back(claim);
      if (!options_.auto_ack) unread_.push_back(claim);
    }
    if (options_.auto_ack) Ack(claim).IgnoreError();
  }
  const absl::Status status = common::FromGrpcStatus(reader_->Finish());
  absl::MutexLock lock(&mu_);
  closed_ = status;
}

absl::StatusOr<v1::WakeClaim> TestRunner::NextClaim(absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return !unread_.empty() || closed_.has_value();
  };
  if (!mu_.AwaitWithTimeout(absl::Condition(&ready), timeout)) {
    return absl::DeadlineExceededError(
        absl::StrCat("no claim within ", absl::FormatDuration(timeout)));
  }
  if (unread_.empty()) {
    return closed_->ok() ? absl::UnavailableError("stream closed") : *closed_;
  }
  v1::WakeClaim claim = std::move(unread_.front());
  unread_.pop_front();
  return claim;
}

std::vector<v1::WakeClaim> TestRunner::Received() {
  absl::MutexLock lock(&mu_);
  return received_;
}

absl::StatusOr<v1::AckClaimResponse> TestRunner::Ack(const v1::WakeClaim& claim,
                                                     const std::vector<int64_t>& wake_ids) {
  v1::AckClaimRequest request;
  request.set_runner_id(options_.runner_id);
  request.set_session_id(options_.session_id);
  request.set_tenant_id(claim.tenant_id());
  request.set_stream(claim.stream());
  request.set_claim_token(claim.claim_token());
  for (int64_t id : wake_ids) request.add_wake_ids(id);
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(30)));
  v1::AckClaimResponse response;
  grpc::Status status = stub_->AckClaim(&context, request, &response);
  if (!status.ok()) return common::FromGrpcStatus(status);
  return response;
}

absl::StatusOr<v1::HeartbeatResponse> TestRunner::Heartbeat() {
  return HeartbeatAs(options_.session_id);
}

absl::StatusOr<v1::HeartbeatResponse> TestRunner::HeartbeatAs(const std::string& session_id) {
  v1::HeartbeatRequest request;
  request.set_runner_id(options_.runner_id);
  request.set_session_id(session_id);
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(30)));
  v1::HeartbeatResponse response;
  grpc::Status status = stub_->Heartbeat(&context, request, &response);
  if (!status.ok()) return common::FromGrpcStatus(status);
  return response;
}

void TestRunner::Disconnect() { context_.TryCancel(); }

absl::Status TestRunner::WaitClosed(absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  auto closed = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return closed_.has_value(); };
  if (!mu_.AwaitWithTimeout(absl::Condition(&closed), timeout)) {
    return absl::DeadlineExceededError("stream still open");
  }
  return *closed_;
}

}  // namespace wake::testing
