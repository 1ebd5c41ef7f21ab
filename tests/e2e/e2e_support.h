// Shared pieces of the end-to-end tests: a registry client for registering
// run_finished wakes and finishing child runs, and runners that record every
// claim they receive (with the claim windows seen from the runner) in one
// Ledger, so a test can wait for "every wake acked" and then check delivery
// counts and per-stream claim windows.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "grpcpp/grpcpp.h"
#include "tests/support/test_runner.h"
#include "wake/v1/registry.grpc.pb.h"
#include "wake/v1/runtime.grpc.pb.h"

namespace wake::testing {

// Thin blocking client of wake.v1.WakeRegistry.
class RegistryClient {
 public:
  explicit RegistryClient(const std::string& address);

  // Registers `parent` for run_finished of `child`; the registration id.
  absl::StatusOr<int64_t> RegisterRunFinished(const std::string& parent, const std::string& child);
  // Reports run `run_key` of `child` COMPLETED; the wakes it produced.
  absl::StatusOr<std::vector<v1::Wake>> FinishRun(const std::string& child,
                                                  const std::string& run_key);

 private:
  std::unique_ptr<v1::WakeRegistry::Stub> stub_;
};

// Runtime diagnostics (GetHealth) of the runtime at `address`.
absl::StatusOr<v1::GetHealthResponse> RuntimeHealth(const std::string& address);

// One claim as a runner saw it. The window [received, ack_sent] lies inside
// the claim's real life (taken before it was received, ended no earlier than
// the ack was sent), so windows of one stream that overlap prove two live
// claims at once.
struct Delivery {
  std::string runner_id;
  v1::WakeClaim claim;
  absl::Time received;
  bool ack_attempted = false;
  absl::Time ack_sent = absl::InfiniteFuture();
  absl::Status ack_status = absl::UnknownError("not acked");
};

class Ledger {
 public:
  // Records a received claim; its index for Acked().
  size_t Received(const std::string& runner_id, const v1::WakeClaim& claim);
  void Acked(size_t index, absl::Time sent, const absl::Status& status);

  // Waits until every id in `ids` was part of a claim whose ack succeeded.
  bool AwaitAcked(const std::set<int64_t>& ids, absl::Duration timeout);
  // Waits until at least `count` claims were received (by any runner).
  bool AwaitDeliveries(size_t count, absl::Duration timeout);
  // Waits until every id in `ids` was received by runner `runner_id`.
  bool AwaitReceivedBy(const std::string& runner_id, const std::set<int64_t>& ids,
                       absl::Duration timeout);

  std::vector<Delivery> Deliveries();
  // Wake id -> how many claims carried it.
  std::map<int64_t, int> DeliveryCounts();
  // Wake id -> how many successful acks covered it.
  std::map<int64_t, int> AckCounts();
  // Wakes received again after a successful ack had covered them.
  std::vector<std::string> RedeliveredAfterAck();
  // Pairs of claims of one stream whose runner-side windows overlap.
  std::vector<std::string> OverlappingWindows();

 private:
  bool AllAckedLocked(const std::set<int64_t>& ids) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  absl::Mutex mu_;
  std::vector<Delivery> deliveries_ ABSL_GUARDED_BY(mu_);
  std::map<int64_t, int> acked_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> redelivered_after_ack_ ABSL_GUARDED_BY(mu_);
};

struct RecordingRunnerOptions {
  TestRunnerOptions runner;
  // Ack each claim (all its wakes) after holding it for `hold`.
  bool ack = true;
  absl::Duration hold = absl::ZeroDuration();
};

// A TestRunner with a thread that takes each claim, records it in the ledger
// and (optionally) acks it.
class RecordingRunner {
 public:
  static absl::StatusOr<std::unique_ptr<RecordingRunner>> Connect(
      std::shared_ptr<grpc::Channel> channel, RecordingRunnerOptions options, Ledger& ledger);
  // Disconnects and joins.
  ~RecordingRunner();

  TestRunner& runner() { return *runner_; }
  const std::string& runner_id() const { return options_.runner.runner_id; }
  // Closes the stream without acking what it holds (runner gone) and joins.
  void Disconnect();

 private:
  RecordingRunner(RecordingRunnerOptions options, Ledger& ledger)
      : options_(std::move(options)), ledger_(ledger) {}
  void Loop();

  RecordingRunnerOptions options_;
  Ledger& ledger_;
  std::unique_ptr<TestRunner> runner_;
  std::atomic<bool> stopping_{false};
  std::thread thread_;
};

// Ids of `wakes`.
std::set<int64_t> WakeIds(const std::vector<v1::Wake>& wakes);

// Runs fn(0) .. fn(count - 1) on `threads` threads, each taking the next
// index as it becomes free, and returns when all are done.
void ParallelFor(int count, int threads, const std::function<void(int)>& fn);

}  // namespace wake::testing
