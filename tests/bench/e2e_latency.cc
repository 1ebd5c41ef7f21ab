// End-to-end wake latency: from EvaluateRunFinished returning to a runner
// receiving the claim that carries the wake, through a real registry and a
// real runtime (started by tests/bench/e2e_bench.sh).
//
// Rows: open-loop paced evaluations at each --rates value (each evaluation
// makes --fanout wakes, one per parent stream; --siblings children share a
// parent, so its claims can batch their wakes), then a saturation row with
// --callers evaluations always in flight, whose delivered rate is the
// maximum sustained wakes/s. Runners ack every claim as it arrives.
// With --cpu (name=pid, a trailing '+' adding the process's children) each
// row also gives the CPU microseconds per delivered wake of every named
// process and of this one ("client": evaluations and runners). Besides the
// table, each row prints one "result" line of key=value pairs for scripts.
//   e2e_latency --registry=H:P --runtime=H:P --rates=100,1000 --seconds=10
//     [--cpu=registry=PID,runtime=PID,postgres=PID+]
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "grpcpp/grpcpp.h"
#include "tests/bench/cpu_meter.h"
#include "tests/bench/latency_support.h"
#include "tests/support/bench_flags.h"
#include "wake/v1/registry.grpc.pb.h"

namespace {

using ::wake::bench::BenchRunner;
using ::wake::bench::Clock;
using ::wake::bench::CpuMeter;
using ::wake::bench::Millis;
using ::wake::bench::Tracker;

struct Options {
  std::string registry = "127.0.0.1:50051";
  std::string runtime = "127.0.0.1:50052";
  std::vector<int> rates = {100, 1000};
  int seconds = 10;
  // Children evaluated round robin; each has `fanout` parents (streams).
  // `siblings` children share each parent, so a claim can carry several
  // wakes when siblings finish close together (1: every wake its own stream).
  int children = 1000;
  int fanout = 1;
  int siblings = 1;
  int runners = 2;
  int callers = 32;    // Saturation row; 0 skips it.
  bool local = false;  // consistency = LOCAL (skip the read barrier).
  std::string prefix = "bench";
  CpuMeter cpu;
};

bool Parse(int argc, char** argv, Options* options) {
  wake::testing::BenchFlags flags(
      "e2e_latency",
      "Evaluates child runs finishing against registered parents and times each wake from "
      "EvaluateRunFinished returning to a runner holding its claim: paced rows at each rate, "
      "then a saturation row.");
  flags.String("registry", &options->registry, "registry address");
  flags.String("runtime", &options->runtime, "runtime address");
  flags.IntList("rates", &options->rates, "paced rows, wakes/s each");
  flags.Int("seconds", &options->seconds, "length of each row", /*min=*/1);
  flags.Int("children", &options->children, "children evaluated round robin", /*min=*/1);
  flags.Int("fanout", &options->fanout, "parents (streams) of each child", /*min=*/1);
  flags.Int("siblings", &options->siblings, "children sharing each parent", /*min=*/1);
  flags.Int("runners", &options->runners, "runner sessions", /*min=*/1);
  flags.Int("callers", &options->callers, "evaluations in flight in the saturation row (0: none)");
  std::string consistency = "strong";
  flags.Choice("consistency", &consistency, {"strong", "local"},
               "evaluation consistency (local skips the read barrier)");
  flags.String("prefix", &options->prefix, "prefix of the run and stream names");
  std::string cpu;
  flags.String("cpu", &cpu, "processes to meter, name=pid[+],... (+: and their children)");
  if (!flags.Parse(argc, argv)) return false;
  options->local = consistency == "local";
  if (!cpu.empty() && !options->cpu.Parse(cpu)) {
    std::fprintf(stderr, "e2e_latency: --cpu: expected name=pid[+],..., not '%s'\n", cpu.c_str());
    return false;
  }
  return true;
}

// Issues evaluations through the callback API and records when each returns.
class Evaluator {
 public:
  Evaluator(const Options& options, Tracker& tracker)
      : options_(options),
        stub_(wake::v1::WakeRegistry::NewStub(
            grpc::CreateChannel(options.registry, grpc::InsecureChannelCredentials()))),
        tracker_(tracker) {}

  std::string Child(int c) const { return absl::StrCat("/", options_.prefix, "/child/", c); }
  std::string Parent(int c, int f) const {
    return absl::StrCat("/", options_.prefix, "/parent/", c / options_.siblings, "-", f);
  }

  bool Register() {
    for (int c = 0; c < options_.children; ++c) {
      for (int f = 0; f < options_.fanout; ++f) {
        wake::v1::RegisterWakeRequest request;
        request.set_subscriber_url(Parent(c, f));
        request.set_source_url(Child(c));
        request.mutable_condition()->mutable_run_finished();
        wake::v1::RegisterWakeResponse response;
        grpc::ClientContext context;
        context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
        grpc::Status status = stub_->RegisterWake(&context, request, &response);
        if (!status.ok()) {
          std::fprintf(stderr, "RegisterWake: %s\n", status.error_message().c_str());
          return false;
        }
      }
    }
    return true;
  }

  // Starts evaluation number `n`; `done` runs when it returned.
  void Start(int64_t n, std::function<void()> done) {
    auto call = std::make_shared<Call>();
    call->request.set_source_url(Child(static_cast<int>(n % options_.children)));
    call->request.set_run_key(absl::StrCat("run-", nonce_, "-", run_epoch_.load(), "-", n));
    call->request.set_status(wake::v1::COMPLETED);
    if (options_.local) call->request.set_consistency(wake::v1::LOCAL);
    call->context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    call->started = Clock::now();
    {
      absl::MutexLock lock(&mu_);
      ++in_flight_;
    }
    stub_->async()->EvaluateRunFinished(
        &call->context, &call->request, &call->response,
        [this, call, done = std::move(done)](grpc::Status status) {
          const Clock::time_point now = Clock::now();
          if (status.ok()) {
            for (const wake::v1::Wake& wake : call->response.wakes()) {
              tracker_.Evaluated(wake.id(), now);
            }
          }
          {
            absl::MutexLock lock(&mu_);
            if (status.ok()) {
              wakes_ += call->response.wakes_size();
              rpc_ms_.push_back(Millis(now - call->started));
            } else {
              ++errors_;
              if (last_error_.empty()) last_error_ = status.error_message();
            }
          }
          // The follow-up call (if any) starts before this one counts as
          // done, so in_flight_ never touches zero in between.
          if (done) done();
          absl::MutexLock lock(&mu_);
          --in_flight_;
        });
  }

  void AwaitIdle() {
    absl::MutexLock lock(&mu_);
    auto idle = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return in_flight_ == 0; };
    mu_.Await(absl::Condition(&idle));
  }

  struct Totals {
    int64_t wakes = 0;
    int64_t errors = 0;
    std::vector<double> rpc_ms;
    std::string last_error;
  };

  // Totals since the last call.
  Totals Take() {
    absl::MutexLock lock(&mu_);
    Totals totals{wakes_, errors_, std::move(rpc_ms_), last_error_};
    wakes_ = 0;
    errors_ = 0;
    rpc_ms_.clear();
    last_error_.clear();
    ++run_epoch_;
    return totals;
  }

 private:
  struct Call {
    grpc::ClientContext context;
    wake::v1::EvaluateRunFinishedRequest request;
    wake::v1::EvaluateRunFinishedResponse response;
    Clock::time_point started;
  };

  const Options& options_;
  std::unique_ptr<wake::v1::WakeRegistry::Stub> stub_;
  Tracker& tracker_;
  absl::Mutex mu_;
  int in_flight_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t wakes_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t errors_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<double> rpc_ms_ ABSL_GUARDED_BY(mu_);
  std::string last_error_ ABSL_GUARDED_BY(mu_);
  std::atomic<int64_t> run_epoch_{0};
  // Keeps run keys distinct from an earlier run's on the same registrations:
  // a key seen before is a replay and makes no wake.
  const int64_t nonce_ = absl::ToUnixNanos(absl::Now());
};

// Prints one row from what the tracker and evaluator collected; delivered/s
// counts from the row's start to the last wake received. `kind` and `cpu`
// (the sample taken when the row started) go into the row's result line.
bool PrintRow(const std::string& name, const std::string& kind, double offered,
              Clock::time_point t0, const Options& options, const CpuMeter::Sample& cpu,
              Tracker& tracker, Evaluator& evaluator) {
  Evaluator::Totals totals = evaluator.Take();
  const bool complete = tracker.AwaitComplete(totals.wakes, absl::Seconds(30));
  const CpuMeter::Sample cpu_after = options.cpu.Take();
  const double seconds = std::max(1e-3, Millis(tracker.last_received() - t0) / 1000);
  int64_t early = 0;
  std::vector<double> latencies = tracker.Latencies(&early);
  const int64_t delivered = static_cast<int64_t>(latencies.size());
  const wake::bench::RowStats stats = wake::bench::PrintRow(
      name, offered, seconds, totals.wakes, std::move(latencies), early, std::move(totals.rpc_ms));
  std::printf(
      "result kind=%s siblings=%d offered=%.0f delivered=%.0f wakes=%lld p50_ms=%.3f "
      "p90_ms=%.3f p99_ms=%.3f max_ms=%.3f lost=%lld errors=%lld cpu_us_per_wake %s\n",
      kind.c_str(), options.siblings, offered, stats.delivered_per_s,
      static_cast<long long>(totals.wakes), stats.p50_ms, stats.p90_ms, stats.p99_ms, stats.max_ms,
      static_cast<long long>(stats.lost), static_cast<long long>(totals.errors),
      CpuMeter::PerWake(cpu, cpu_after, delivered).c_str());
  if (totals.errors > 0) {
    std::printf("  (%lld evaluation errors, last: %s)\n", static_cast<long long>(totals.errors),
                totals.last_error.c_str());
  }
  std::fflush(stdout);
  return complete && totals.errors == 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options options;
  if (!Parse(argc, argv, &options)) return 2;
  Tracker tracker;
  Evaluator evaluator(options, tracker);
  if (!evaluator.Register()) return 1;
  std::vector<std::unique_ptr<BenchRunner>> runners;
  for (int r = 0; r < options.runners; ++r) {
    runners.push_back(std::make_unique<BenchRunner>(options.runtime, r, tracker));
  }
  bool ok = true;

  // Warm-up: connections, caches, first claims.
  for (int64_t n = 0; n < 200; ++n) evaluator.Start(n, nullptr);
  evaluator.AwaitIdle();
  evaluator.Take();
  tracker.AwaitComplete(200 * options.fanout, absl::Seconds(30));
  tracker.Reset();

  wake::bench::PrintHeader();
  for (int rate : options.rates) {
    // Open loop: evaluation n starts at t0 + n / rate whatever the others do.
    const int64_t total = static_cast<int64_t>(rate) * options.seconds;
    const CpuMeter::Sample cpu = options.cpu.Take();
    const Clock::time_point t0 = Clock::now();
    for (int64_t n = 0; n < total; ++n) {
      std::this_thread::sleep_until(t0 + std::chrono::nanoseconds(n * 1000000000LL / rate));
      evaluator.Start(n, nullptr);
    }
    evaluator.AwaitIdle();
    ok &=
        PrintRow(absl::StrCat("open ", rate * options.fanout, "/s"), "paced",
                 static_cast<double>(rate) * options.fanout, t0, options, cpu, tracker, evaluator);
    tracker.Reset();
  }

  if (options.callers > 0) {
    // Closed loop: `callers` evaluations always in flight for the duration.
    const Clock::time_point end = Clock::now() + std::chrono::seconds(options.seconds);
    std::atomic<int64_t> next{0};
    const CpuMeter::Sample cpu = options.cpu.Take();
    std::function<void()> again = [&] {
      if (Clock::now() < end) evaluator.Start(next.fetch_add(1), again);
    };
    const Clock::time_point t0 = Clock::now();
    for (int c = 0; c < options.callers; ++c) evaluator.Start(next.fetch_add(1), again);
    evaluator.AwaitIdle();
    ok &= PrintRow(absl::StrCat("saturate c=", options.callers), "saturation", 0, t0, options, cpu,
                   tracker, evaluator);
  }

  int64_t ack_errors = 0;
  std::string first_ack_error;
  for (auto& runner : runners) {
    ack_errors += runner->ack_errors();
    if (first_ack_error.empty()) first_ack_error = runner->first_ack_error();
  }
  runners.clear();
  if (ack_errors > 0) {
    std::printf("  (%lld acks failed, first: %s)\n", static_cast<long long>(ack_errors),
                first_ack_error.c_str());
    ok = false;
  }
  return ok ? 0 : 1;
}
