// Pieces shared by the latency benchmarks: pairing "wake made" with "runner
// received it" per wake id, a runner that acks at once, and the row format.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "grpcpp/grpcpp.h"
#include "wake/v1/runtime.grpc.pb.h"

namespace wake::bench {

using Clock = std::chrono::steady_clock;

inline double Millis(Clock::duration d) {
  return std::chrono::duration<double, std::milli>(d).count();
}

inline double Percentile(std::vector<double>& sorted, double p) {
  if (sorted.empty()) return 0;
  const size_t index = std::min(sorted.size() - 1, static_cast<size_t>(p * sorted.size()));
  return sorted[index];
}

// Pairs "evaluation returned" with "runner received" per wake id, in
// whichever order they happen.
class Tracker {
 public:
  void Evaluated(int64_t wake_id, Clock::time_point at) { Note(wake_id, at, true); }
  void Received(int64_t wake_id, Clock::time_point at) { Note(wake_id, at, false); }

  // Starts a row: forgets earlier samples.
  void Reset() {
    absl::MutexLock lock(&mu_);
    latencies_.clear();
    received_ = 0;
    last_received_ = Clock::time_point();
    early_ = 0;
  }

  bool AwaitComplete(int64_t wakes, absl::Duration timeout) {
    absl::MutexLock lock(&mu_);
    auto done = [this, wakes]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return static_cast<int64_t>(latencies_.size()) >= wakes;
    };
    return mu_.AwaitWithTimeout(absl::Condition(&done), timeout);
  }

  int64_t received() {
    absl::MutexLock lock(&mu_);
    return received_;
  }

  Clock::time_point last_received() {
    absl::MutexLock lock(&mu_);
    return last_received_;
  }

  // Latencies in ms (negative clamped to 0) and how many were negative.
  std::vector<double> Latencies(int64_t* early) {
    absl::MutexLock lock(&mu_);
    *early = early_;
    return latencies_;
  }

 private:
  struct Pending {
    Clock::time_point at;
    bool evaluated;
  };

  void Note(int64_t wake_id, Clock::time_point at, bool evaluated) {
    absl::MutexLock lock(&mu_);
    if (!evaluated) {
      ++received_;
      last_received_ = std::max(last_received_, at);
    }
    auto [it, inserted] = pending_.try_emplace(wake_id, Pending{at, evaluated});
    if (inserted) return;
    if (it->second.evaluated == evaluated) return;  // A redelivery: the first one counts.
    const Clock::time_point evaluated_at = evaluated ? at : it->second.at;
    const Clock::time_point received_at = evaluated ? it->second.at : at;
    double ms = Millis(received_at - evaluated_at);
    if (ms < 0) {
      ++early_;
      ms = 0;
    }
    latencies_.push_back(ms);
    pending_.erase(it);
  }

  absl::Mutex mu_;
  absl::flat_hash_map<int64_t, Pending> pending_ ABSL_GUARDED_BY(mu_);
  std::vector<double> latencies_ ABSL_GUARDED_BY(mu_);
  int64_t received_ ABSL_GUARDED_BY(mu_) = 0;
  Clock::time_point last_received_ ABSL_GUARDED_BY(mu_);
  int64_t early_ ABSL_GUARDED_BY(mu_) = 0;
};

// A runner session that acks every claim as soon as it arrives (the ack is
// asynchronous, so the next claim is read meanwhile).
class BenchRunner {
 public:
  BenchRunner(const std::string& target, int index, Tracker& tracker)
      : stub_(wake::v1::WakeRuntime::NewStub(
            grpc::CreateChannel(target, grpc::InsecureChannelCredentials()))),
        tracker_(tracker) {
    request_.set_runner_id(absl::StrCat("bench-runner-", index));
    request_.set_session_id(
        absl::StrCat("bench-session-", index, "-", absl::ToUnixNanos(absl::Now())));
    request_.set_max_in_flight(1024);
    reader_ = stub_->StreamWakeClaims(&context_, request_);
    reader_->WaitForInitialMetadata();
    thread_ = std::thread([this] { Loop(); });
  }

  // Lets the acks in flight land first: closing the stream releases what
  // the session still holds, and those acks would then fail.
  ~BenchRunner() {
    {
      absl::MutexLock lock(&mu_);
      auto idle = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return acks_in_flight_ == 0; };
      mu_.AwaitWithTimeout(absl::Condition(&idle), absl::Seconds(30));
    }
    context_.TryCancel();
    thread_.join();
    absl::MutexLock lock(&mu_);
    auto idle = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return acks_in_flight_ == 0; };
    mu_.Await(absl::Condition(&idle));
  }

  int64_t ack_errors() { return ack_errors_.load(); }
  std::string first_ack_error() {
    absl::MutexLock lock(&mu_);
    return first_ack_error_;
  }

 private:
  struct Ack {
    grpc::ClientContext context;
    wake::v1::AckClaimRequest request;
    wake::v1::AckClaimResponse response;
  };

  void Loop() {
    wake::v1::WakeClaim claim;
    while (reader_->Read(&claim)) {
      const Clock::time_point now = Clock::now();
      for (const wake::v1::Wake& wake : claim.wakes()) tracker_.Received(wake.id(), now);
      auto ack = std::make_shared<Ack>();
      ack->request.set_runner_id(request_.runner_id());
      ack->request.set_session_id(request_.session_id());
      ack->request.set_tenant_id(claim.tenant_id());
      ack->request.set_stream(claim.stream());
      ack->request.set_claim_token(claim.claim_token());
      ack->context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
      {
        absl::MutexLock lock(&mu_);
        ++acks_in_flight_;
      }
      stub_->async()->AckClaim(
          &ack->context, &ack->request, &ack->response, [this, ack](grpc::Status status) {
            absl::MutexLock lock(&mu_);
            if (!status.ok()) {
              ++ack_errors_;
              if (first_ack_error_.empty()) {
                first_ack_error_ = absl::StrCat(status.error_code(), " ", status.error_message());
              }
            }
            --acks_in_flight_;
          });
    }
    reader_->Finish();
  }

  std::unique_ptr<wake::v1::WakeRuntime::Stub> stub_;
  Tracker& tracker_;
  wake::v1::StreamWakeClaimsRequest request_;
  grpc::ClientContext context_;
  std::unique_ptr<grpc::ClientReader<wake::v1::WakeClaim>> reader_;
  std::thread thread_;
  std::atomic<int64_t> ack_errors_{0};
  absl::Mutex mu_;
  int acks_in_flight_ ABSL_GUARDED_BY(mu_) = 0;
  std::string first_ack_error_ ABSL_GUARDED_BY(mu_);
};

// Issues evaluations through the callback API and records when each returns.

inline void PrintHeader() {
  std::printf("%-16s %10s %12s %8s %8s %8s %8s %8s %9s %9s %6s\n", "row", "offered/s",
              "delivered/s", "wakes", "p50_ms", "p90_ms", "p99_ms", "max_ms", "make_p50",
              "make_p99", "lost");
}

// What one row measured.
struct RowStats {
  double delivered_per_s = 0;
  double p50_ms = 0;
  double p90_ms = 0;
  double p99_ms = 0;
  double max_ms = 0;
  int64_t lost = 0;
};

// One row. `latencies` and `make_ms` (how long making a wake took: the
// evaluation RPC, or nothing) are sorted by the call.
inline RowStats PrintRow(const std::string& name, double offered, double seconds, int64_t wakes,
                         std::vector<double> latencies, int64_t early,
                         std::vector<double> make_ms) {
  std::sort(latencies.begin(), latencies.end());
  std::sort(make_ms.begin(), make_ms.end());
  RowStats stats;
  stats.lost = wakes - static_cast<int64_t>(latencies.size());
  stats.delivered_per_s = latencies.size() / seconds;
  stats.p50_ms = Percentile(latencies, 0.50);
  stats.p90_ms = Percentile(latencies, 0.90);
  stats.p99_ms = Percentile(latencies, 0.99);
  stats.max_ms = latencies.empty() ? 0.0 : latencies.back();
  std::printf("%-16s %10.0f %12.0f %8lld %8.2f %8.2f %8.2f %8.2f %9.2f %9.2f %6lld\n", name.c_str(),
              offered, stats.delivered_per_s, static_cast<long long>(wakes), stats.p50_ms,
              stats.p90_ms, stats.p99_ms, stats.max_ms, Percentile(make_ms, 0.50),
              Percentile(make_ms, 0.99), static_cast<long long>(stats.lost));
  if (early > 0) {
    std::printf("  (%lld wakes reached the runner before their evaluation returned: counted 0)\n",
                static_cast<long long>(early));
  }
  return stats;
}

}  // namespace wake::bench
