// chaos_runner: one runner (agent host) of the chaos run, as its own process
// so the driver can SIGKILL it. It connects to one runtime, takes every
// claim, acks each after a random delay, heartbeats its session, and
// reconnects with a new session whenever the stream ends. Every claim and
// every ack attempt and result goes to its record file (tests/chaos/record.h)
// before anything else happens, so the driver's books survive a SIGKILL.
//
//   chaos_runner --runtime=127.0.0.1:P --runner-id=runner-a1 --record=FILE
//       [--seed=N] [--ack-delay-max-ms=50] [--heartbeat-ms=1000]
//       [--max-in-flight=16] [--never-ack-fraction=0]
//
// --never-ack-fraction is sabotage for checking the harness: that fraction
// of claims is recorded as held and never acked (the session keeps
// heartbeating, so their leases never run out while it lives).
#include <unistd.h>

#include <cstdio>
#include <memory>
#include <random>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "grpcpp/grpcpp.h"
#include "tests/chaos/delay_queue.h"
#include "tests/chaos/record.h"
#include "tests/support/test_runner.h"

namespace wake::chaos {
namespace {

struct Options {
  std::string runtime;
  std::string runner_id;
  std::string record;
  uint64_t seed = 1;
  int ack_delay_max_ms = 50;
  int heartbeat_ms = 1000;
  int max_in_flight = 16;
  double never_ack_fraction = 0;
};

bool Parse(int argc, char** argv, Options* o) {
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    const size_t eq = arg.find('=');
    if (!absl::StartsWith(arg, "--") || eq == std::string::npos) return false;
    const std::string name = arg.substr(2, eq - 2);
    const std::string value = arg.substr(eq + 1);
    bool ok = true;
    if (name == "runtime") {
      o->runtime = value;
    } else if (name == "runner-id") {
      o->runner_id = value;
    } else if (name == "record") {
      o->record = value;
    } else if (name == "seed") {
      ok = absl::SimpleAtoi(value, &o->seed);
    } else if (name == "ack-delay-max-ms") {
      ok = absl::SimpleAtoi(value, &o->ack_delay_max_ms) && o->ack_delay_max_ms >= 0;
    } else if (name == "heartbeat-ms") {
      ok = absl::SimpleAtoi(value, &o->heartbeat_ms) && o->heartbeat_ms > 0;
    } else if (name == "max-in-flight") {
      ok = absl::SimpleAtoi(value, &o->max_in_flight) && o->max_in_flight > 0;
    } else if (name == "never-ack-fraction") {
      ok = absl::SimpleAtod(value, &o->never_ack_fraction) && o->never_ack_fraction >= 0 &&
           o->never_ack_fraction <= 1;
    } else {
      ok = false;
    }
    if (!ok) return false;
  }
  return !o->runtime.empty() && !o->runner_id.empty() && !o->record.empty();
}

void Log(const std::string& event, const std::string& fields = "") {
  std::fprintf(stderr, "ts=%s svc=chaos_runner event=%s%s%s\n",
               absl::FormatTime("%Y-%m-%dT%H:%M:%E3S", absl::Now(), absl::LocalTimeZone()).c_str(),
               event.c_str(), fields.empty() ? "" : " ", fields.c_str());
}

// Codes after which an ack may or may not have landed, and trying again is
// what a runner does.
bool RetryableAck(absl::StatusCode code) {
  return code == absl::StatusCode::kUnavailable || code == absl::StatusCode::kDeadlineExceeded ||
         code == absl::StatusCode::kCancelled || code == absl::StatusCode::kUnknown ||
         code == absl::StatusCode::kResourceExhausted;
}

constexpr int kMaxAckAttempts = 5;

class Runner {
 public:
  Runner(Options options, std::unique_ptr<RecordWriter> record)
      : options_(std::move(options)),
        record_(std::move(record)),
        rng_(options_.seed ^ (static_cast<uint64_t>(getpid()) << 20)),
        acks_(4) {
    grpc::ChannelArguments args;
    // Reconnect quickly once a killed runtime is back.
    args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 100);
    args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 500);
    args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
    channel_ =
        grpc::CreateCustomChannel(options_.runtime, grpc::InsecureChannelCredentials(), args);
  }

  [[noreturn]] void Run() {
    std::thread heartbeat([this] { HeartbeatLoop(); });
    heartbeat.detach();  // Lives as long as the process.
    absl::Duration backoff = absl::Milliseconds(100);
    absl::Time last_refusal_log = absl::InfinitePast();
    for (int n = 0;; ++n) {
      testing::TestRunnerOptions runner_options;
      runner_options.runner_id = options_.runner_id;
      runner_options.session_id = absl::StrCat(options_.runner_id, "-", getpid(), "-", n);
      runner_options.max_in_flight = options_.max_in_flight;
      absl::StatusOr<std::unique_ptr<testing::TestRunner>> connected =
          testing::TestRunner::Connect(channel_, runner_options);
      if (!connected.ok()) {
        if (absl::Now() - last_refusal_log > absl::Seconds(2)) {
          Log("connect_failed", absl::StrCat("error=\"", connected.status().message(), "\""));
          last_refusal_log = absl::Now();
        }
        absl::SleepFor(backoff);  // Reconnect backoff, not synchronisation.
        backoff = std::min(backoff * 2, absl::Seconds(1));
        continue;
      }
      backoff = absl::Milliseconds(100);
      std::shared_ptr<testing::TestRunner> runner = std::move(*connected);
      const std::string session = runner_options.session_id;
      record_->SessionOpen(session);
      Log("connected", absl::StrCat("session=", session));
      {
        absl::MutexLock lock(&mu_);
        current_ = runner;
      }
      Serve(runner, session);
      {
        absl::MutexLock lock(&mu_);
        current_.reset();
      }
    }
  }

 private:
  void Serve(const std::shared_ptr<testing::TestRunner>& runner, const std::string& session) {
    for (;;) {
      absl::StatusOr<v1::WakeClaim> claim = runner->NextClaim(absl::InfiniteDuration());
      if (!claim.ok()) {
        record_->SessionClosed(session, static_cast<int>(claim.status().code()));
        Log("disconnected",
            absl::StrCat("session=", session, " error=\"", claim.status().message(), "\""));
        return;
      }
      record_->Claim(session, *claim);
      absl::Duration delay;
      bool hold;
      {
        absl::MutexLock lock(&mu_);
        hold = std::uniform_real_distribution<double>(0, 1)(rng_) < options_.never_ack_fraction;
        delay = absl::Milliseconds(
            std::uniform_int_distribution<int>(0, options_.ack_delay_max_ms)(rng_));
      }
      if (hold) {
        record_->Hold(session, claim->claim_token());
        continue;
      }
      Schedule(runner, session, *claim, 1, absl::Now() + delay);
    }
  }

  void Schedule(std::shared_ptr<testing::TestRunner> runner, std::string session,
                v1::WakeClaim claim, int attempt, absl::Time due) {
    acks_.Post(due, [this, runner = std::move(runner), session = std::move(session),
                     claim = std::move(claim), attempt]() mutable {
      record_->AckSent(session, claim.claim_token(), attempt);
      absl::StatusOr<v1::AckClaimResponse> acked = runner->Ack(claim);
      record_->Ack(session, claim.claim_token(), attempt, static_cast<int>(acked.status().code()),
                   acked.ok() ? acked->acked() : 0);
      if (acked.ok() || !RetryableAck(acked.status().code()) || attempt >= kMaxAckAttempts) {
        if (!acked.ok()) {
          Log("ack_failed",
              absl::StrCat("session=", session, " stream=", claim.stream(), " attempt=", attempt,
                           " error=\"", acked.status().ToString(), "\""));
        }
        return;
      }
      const absl::Time due = absl::Now() + absl::Milliseconds(200) * (1 << (attempt - 1));
      Schedule(std::move(runner), std::move(session), std::move(claim), attempt + 1, due);
    });
  }

  void HeartbeatLoop() {
    for (;;) {
      absl::SleepFor(absl::Milliseconds(options_.heartbeat_ms));  // The heartbeat period.
      std::shared_ptr<testing::TestRunner> runner;
      {
        absl::MutexLock lock(&mu_);
        runner = current_;
      }
      if (runner == nullptr) continue;
      absl::StatusOr<v1::HeartbeatResponse> beat = runner->Heartbeat();
      if (!beat.ok() && !absl::IsFailedPrecondition(beat.status()) &&
          !absl::IsUnavailable(beat.status())) {
        Log("heartbeat_failed", absl::StrCat("error=\"", beat.status().ToString(), "\""));
      }
    }
  }

  const Options options_;
  const std::unique_ptr<RecordWriter> record_;
  std::shared_ptr<grpc::Channel> channel_;
  absl::Mutex mu_;
  std::mt19937_64 rng_ ABSL_GUARDED_BY(mu_);
  std::shared_ptr<testing::TestRunner> current_ ABSL_GUARDED_BY(mu_);
  DelayQueue acks_;
};

}  // namespace
}  // namespace wake::chaos

int main(int argc, char** argv) {
  wake::chaos::Options options;
  if (!wake::chaos::Parse(argc, argv, &options)) {
    std::fprintf(stderr,
                 "usage: chaos_runner --runtime=HOST:PORT --runner-id=ID --record=FILE [--seed=N] "
                 "[--ack-delay-max-ms=50] [--heartbeat-ms=1000] [--max-in-flight=16] "
                 "[--never-ack-fraction=0]\n");
    return 2;
  }
  absl::StatusOr<std::unique_ptr<wake::chaos::RecordWriter>> record =
      wake::chaos::RecordWriter::Open(options.record);
  if (!record.ok()) {
    std::fprintf(stderr, "chaos_runner: %s\n", std::string(record.status().message()).c_str());
    return 2;
  }
  (*record)->Start(options.runner_id, getpid());
  wake::chaos::Log("started", absl::StrCat("runner_id=", options.runner_id,
                                           " runtime=", options.runtime, " pid=", getpid()));
  wake::chaos::Runner runner(options, std::move(*record));
  runner.Run();
}
