#include "tests/e2e/e2e_support.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_util.h"
#include "tests/support/service_process.h"

namespace wake::testing {
namespace {

std::chrono::system_clock::time_point Deadline() {
  return std::chrono::system_clock::now() + std::chrono::seconds(30);
}

}  // namespace

RegistryClient::RegistryClient(const std::string& address)
    : stub_(v1::WakeRegistry::NewStub(Connect(address))) {}

absl::StatusOr<int64_t> RegistryClient::RegisterRunFinished(const std::string& parent,
                                                            const std::string& child) {
  v1::RegisterWakeRequest request;
  request.set_subscriber_url(parent);
  request.set_source_url(child);
  request.mutable_condition()->mutable_run_finished();
  v1::RegisterWakeResponse response;
  grpc::ClientContext context;
  context.set_deadline(Deadline());
  grpc::Status status = stub_->RegisterWake(&context, request, &response);
  if (!status.ok()) return common::FromGrpcStatus(status);
  return response.registration().id();
}

absl::StatusOr<std::vector<v1::Wake>> RegistryClient::FinishRun(const std::string& child,
                                                                const std::string& run_key) {
  v1::EvaluateRunFinishedRequest request;
  request.set_source_url(child);
  request.set_run_key(run_key);
  request.set_status(v1::COMPLETED);
  v1::EvaluateRunFinishedResponse response;
  grpc::ClientContext context;
  context.set_deadline(Deadline());
  grpc::Status status = stub_->EvaluateRunFinished(&context, request, &response);
  if (!status.ok()) return common::FromGrpcStatus(status);
  return std::vector<v1::Wake>(response.wakes().begin(), response.wakes().end());
}

absl::StatusOr<v1::GetHealthResponse> RuntimeHealth(const std::string& address) {
  auto stub = v1::WakeRuntime::NewStub(Connect(address));
  grpc::ClientContext context;
  context.set_deadline(Deadline());
  v1::GetHealthResponse response;
  grpc::Status status = stub->GetHealth(&context, v1::GetHealthRequest(), &response);
  if (!status.ok()) return common::FromGrpcStatus(status);
  return response;
}

// ---------------------------------------------------------------------------
// Ledger
// ---------------------------------------------------------------------------

size_t Ledger::Received(const std::string& runner_id, const v1::WakeClaim& claim) {
  Delivery delivery;
  delivery.runner_id = runner_id;
  delivery.claim = claim;
  delivery.received = absl::Now();
  absl::MutexLock lock(&mu_);
  for (const v1::Wake& wake : claim.wakes()) {
    if (acked_.count(wake.id()) > 0) {
      redelivered_after_ack_.push_back(absl::StrCat("wake ", wake.id(), " of ", claim.stream(),
                                                    " again to ", runner_id, " in claim ",
                                                    claim.claim_token()));
    }
  }
  deliveries_.push_back(std::move(delivery));
  return deliveries_.size() - 1;
}

void Ledger::Acked(size_t index, absl::Time sent, const absl::Status& status) {
  absl::MutexLock lock(&mu_);
  Delivery& delivery = deliveries_.at(index);
  delivery.ack_attempted = true;
  delivery.ack_sent = sent;
  delivery.ack_status = status;
  if (!status.ok()) return;
  for (const v1::Wake& wake : delivery.claim.wakes()) ++acked_[wake.id()];
}

bool Ledger::AllAckedLocked(const std::set<int64_t>& ids) {
  return std::all_of(ids.begin(), ids.end(), [this](int64_t id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return acked_.count(id) > 0;
  });
}

bool Ledger::AwaitAcked(const std::set<int64_t>& ids, absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  auto done = [this, &ids]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return AllAckedLocked(ids); };
  return mu_.AwaitWithTimeout(absl::Condition(&done), timeout);
}

bool Ledger::AwaitDeliveries(size_t count, absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  auto done = [this, count]()
                  ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return deliveries_.size() >= count; };
  return mu_.AwaitWithTimeout(absl::Condition(&done), timeout);
}

bool Ledger::AwaitReceivedBy(const std::string& runner_id, const std::set<int64_t>& ids,
                             absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  auto done = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    std::set<int64_t> seen;
    for (const Delivery& delivery : deliveries_) {
      if (delivery.runner_id != runner_id) continue;
      for (const v1::Wake& wake : delivery.claim.wakes()) seen.insert(wake.id());
    }
    return std::includes(seen.begin(), seen.end(), ids.begin(), ids.end());
  };
  return mu_.AwaitWithTimeout(absl::Condition(&done), timeout);
}

std::vector<Delivery> Ledger::Deliveries() {
  absl::MutexLock lock(&mu_);
  return deliveries_;
}

std::map<int64_t, int> Ledger::DeliveryCounts() {
  absl::MutexLock lock(&mu_);
  std::map<int64_t, int> counts;
  for (const Delivery& delivery : deliveries_) {
    for (const v1::Wake& wake : delivery.claim.wakes()) ++counts[wake.id()];
  }
  return counts;
}

std::map<int64_t, int> Ledger::AckCounts() {
  absl::MutexLock lock(&mu_);
  return acked_;
}

std::vector<std::string> Ledger::RedeliveredAfterAck() {
  absl::MutexLock lock(&mu_);
  return redelivered_after_ack_;
}

std::vector<std::string> Ledger::OverlappingWindows() {
  std::map<std::pair<std::string, std::string>, std::vector<const Delivery*>> by_stream;
  absl::MutexLock lock(&mu_);
  for (const Delivery& delivery : deliveries_) {
    by_stream[{delivery.claim.tenant_id(), delivery.claim.stream()}].push_back(&delivery);
  }
  std::vector<std::string> overlaps;
  for (auto& [key, windows] : by_stream) {
    std::sort(windows.begin(), windows.end(),
              [](const Delivery* a, const Delivery* b) { return a->received < b->received; });
    // Disjoint windows sorted by start each end before the next one starts.
    for (size_t i = 1; i < windows.size(); ++i) {
      const Delivery& before = *windows[i - 1];
      const Delivery& after = *windows[i];
      if (before.ack_sent > after.received) {
        overlaps.push_back(absl::StrCat(key.second, ": claim ", before.claim.claim_token(), " (",
                                        before.runner_id, ") held until ",
                                        absl::FormatTime(before.ack_sent), " but claim ",
                                        after.claim.claim_token(), " (", after.runner_id,
                                        ") arrived at ", absl::FormatTime(after.received)));
      }
    }
  }
  return overlaps;
}

// ---------------------------------------------------------------------------
// RecordingRunner
// ---------------------------------------------------------------------------

absl::StatusOr<std::unique_ptr<RecordingRunner>> RecordingRunner::Connect(
    std::shared_ptr<grpc::Channel> channel, RecordingRunnerOptions options, Ledger& ledger) {
  std::unique_ptr<RecordingRunner> runner(new RecordingRunner(std::move(options), ledger));
  runner->options_.runner.auto_ack = false;
  absl::StatusOr<std::unique_ptr<TestRunner>> connected =
      TestRunner::Connect(std::move(channel), runner->options_.runner);
  if (!connected.ok()) return connected.status();
  runner->runner_ = std::move(*connected);
  runner->thread_ = std::thread([r = runner.get()] { r->Loop(); });
  return runner;
}

RecordingRunner::~RecordingRunner() { Disconnect(); }

void RecordingRunner::Disconnect() {
  stopping_.store(true);
  runner_->Disconnect();
  if (thread_.joinable()) thread_.join();
}

void RecordingRunner::Loop() {
  for (;;) {
    // Returns once a claim came or the stream ended (then with an error).
    absl::StatusOr<v1::WakeClaim> claim = runner_->NextClaim(absl::InfiniteDuration());
    if (!claim.ok() || stopping_.load()) return;
    const size_t index = ledger_.Received(runner_id(), *claim);
    if (!options_.ack) continue;
    // Simulated work, not synchronisation: keeps the claim open a while.
    if (options_.hold > absl::ZeroDuration()) absl::SleepFor(options_.hold);
    const absl::Time sent = absl::Now();
    absl::StatusOr<v1::AckClaimResponse> acked = runner_->Ack(*claim);
    ledger_.Acked(index, sent, acked.status());
  }
}

std::set<int64_t> WakeIds(const std::vector<v1::Wake>& wakes) {
  std::set<int64_t> ids;
  for (const v1::Wake& wake : wakes) ids.insert(wake.id());
  return ids;
}

void ParallelFor(int count, int threads, const std::function<void(int)>& fn) {
  std::atomic<int> next{0};
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&] {
      for (int i = next.fetch_add(1); i < count; i = next.fetch_add(1)) fn(i);
    });
  }
  for (std::thread& thread : pool) thread.join();
}

}  // namespace wake::testing
