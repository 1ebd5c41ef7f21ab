// The runtime alone: a real runtime-service against an in-memory registry
// hosted here (wakes, claims and the change stream in memory, no database),
// so the rows show what the runtime itself costs. Latency runs from a wake
// being added (and announced on SubscribeChanges) to a runner receiving the
// claim that carries it; open-loop paced at each --rates value.
//   runtime_latency --listen=127.0.0.1:P --runtime=H:P --rates=100,1000,5000
// Start the runtime with --registry=<the --listen address>; this program
// waits until the runtime has connected.
#include <cstdio>
#include <deque>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "grpcpp/grpcpp.h"
#include "tests/bench/latency_support.h"
#include "wake/v1/registry.grpc.pb.h"
#include "wake/v1/runtime.grpc.pb.h"

namespace {

using ::wake::bench::BenchRunner;
using ::wake::bench::Clock;
using ::wake::bench::Millis;
using ::wake::bench::Tracker;

struct Options {
  std::string listen = "127.0.0.1:0";
  std::string runtime = "127.0.0.1:50052";
  std::vector<int> rates = {100, 1000, 2000, 5000};
  int seconds = 10;
  int streams = 1000;
  int runners = 2;
};

bool Parse(int argc, char** argv, Options* options) {
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    const size_t eq = arg.find('=');
    if (!absl::StartsWith(arg, "--") || eq == std::string::npos) return false;
    const std::string name = arg.substr(2, eq - 2);
    const std::string value = arg.substr(eq + 1);
    if (name == "listen") {
      options->listen = value;
    } else if (name == "runtime") {
      options->runtime = value;
    } else if (name == "rates") {
      options->rates.clear();
      for (absl::string_view part : absl::StrSplit(value, ',', absl::SkipEmpty())) {
        int rate;
        if (!absl::SimpleAtoi(part, &rate) || rate < 1) return false;
        options->rates.push_back(rate);
      }
    } else if (name == "seconds") {
      if (!absl::SimpleAtoi(value, &options->seconds) || options->seconds < 1) return false;
    } else if (name == "streams") {
      if (!absl::SimpleAtoi(value, &options->streams) || options->streams < 1) return false;
    } else if (name == "runners") {
      if (!absl::SimpleAtoi(value, &options->runners) || options->runners < 1) return false;
    } else {
      return false;
    }
  }
  return true;
}

// The registry's claim protocol in memory: pending wakes per stream, one
// claim per stream, and a change log served by SubscribeChanges.
class FakeRegistry final : public wake::v1::WakeRegistry::Service {
 public:
  // Adds a pending wake to `stream` and announces it; its id.
  int64_t AddWake(const std::string& stream) {
    absl::MutexLock lock(&mu_);
    wake::v1::Wake wake;
    wake.set_id(next_id_++);
    wake.set_tenant_id("default");
    wake.set_stream(stream);
    pending_[stream].push_back(wake);
    wake::v1::ChangeEvent event;
    event.set_offset(absl::StrCat(log_.size()));
    event.mutable_wake()->set_tenant_id("default");
    event.mutable_wake()->set_stream(stream);
    event.mutable_wake()->set_wake_id(wake.id());
    log_.push_back(std::move(event));
    return wake.id();
  }

  void Stop() {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }

  grpc::Status SubscribeChanges(grpc::ServerContext* context,
                                const wake::v1::SubscribeChangesRequest* /*request*/,
                                grpc::ServerWriter<wake::v1::ChangeEvent>* writer) override {
    // Every subscription starts at the current end (the benchmark adds wakes
    // only once the runtime is connected) and is told it is up to date.
    size_t next;
    {
      absl::MutexLock lock(&mu_);
      next = log_.size();
    }
    if (!writer->Write(UpToDate(next))) return grpc::Status::CANCELLED;
    for (;;) {
      std::vector<wake::v1::ChangeEvent> batch;
      {
        absl::MutexLock lock(&mu_);
        auto more = [this, next]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
          return log_.size() > next || stopping_;
        };
        mu_.AwaitWithTimeout(absl::Condition(&more), absl::Milliseconds(100));
        if (stopping_ || context->IsCancelled()) return grpc::Status::CANCELLED;
        batch.assign(log_.begin() + next, log_.end());
        next = log_.size();
      }
      for (const wake::v1::ChangeEvent& event : batch) {
        if (!writer->Write(event)) return grpc::Status::CANCELLED;
      }
      // As the real registry does whenever it has caught up.
      if (!batch.empty() && !writer->Write(UpToDate(next))) return grpc::Status::CANCELLED;
    }
  }

  grpc::Status ClaimWakes(grpc::ServerContext*, const wake::v1::ClaimWakesRequest* request,
                          wake::v1::ClaimWakesResponse* response) override {
    absl::MutexLock lock(&mu_);
    const std::string& stream = request->stream();
    auto pending = pending_.find(stream);
    if (claims_.count(stream) > 0) {
      response->set_status(wake::v1::ALREADY_CLAIMED);
    } else if (pending == pending_.end() || pending->second.empty()) {
      response->set_status(wake::v1::NOTHING_PENDING);
    } else {
      Claim& claim = claims_[stream];
      claim.token = absl::StrCat("tok-", next_token_++);
      claim.wakes = std::move(pending->second);
      pending_.erase(pending);
      response->set_status(wake::v1::CLAIMED);
      response->set_claim_token(claim.token);
      for (const wake::v1::Wake& wake : claim.wakes) *response->add_wakes() = wake;
      response->mutable_lease_expires_at()->set_seconds(absl::ToUnixSeconds(absl::Now()) + 30);
    }
    return grpc::Status::OK;
  }

  grpc::Status AckWakes(grpc::ServerContext*, const wake::v1::AckWakesRequest* request,
                        wake::v1::AckWakesResponse* response) override {
    absl::MutexLock lock(&mu_);
    auto claim = claims_.find(request->stream());
    if (claim == claims_.end() || claim->second.token != request->claim_token()) {
      return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, "claim_token: not live");
    }
    response->set_acked(static_cast<int64_t>(claim->second.wakes.size()));
    claims_.erase(claim);
    auto pending = pending_.find(request->stream());
    response->set_more_pending(pending != pending_.end() && !pending->second.empty());
    return grpc::Status::OK;
  }

  grpc::Status ExtendClaims(grpc::ServerContext*, const wake::v1::ExtendClaimsRequest* request,
                            wake::v1::ExtendClaimsResponse* response) override {
    absl::MutexLock lock(&mu_);
    for (const wake::v1::ClaimRef& ref : request->claims()) {
      wake::v1::ExtendedClaim* out = response->add_claims();
      *out->mutable_claim() = ref;
      auto claim = claims_.find(ref.stream());
      out->set_extended(claim != claims_.end() && claim->second.token == ref.claim_token());
      out->mutable_lease_expires_at()->set_seconds(absl::ToUnixSeconds(absl::Now()) + 30);
    }
    return grpc::Status::OK;
  }

  grpc::Status ReleaseClaim(grpc::ServerContext*, const wake::v1::ReleaseClaimRequest* request,
                            wake::v1::ReleaseClaimResponse* response) override {
    absl::MutexLock lock(&mu_);
    auto claim = claims_.find(request->stream());
    if (claim == claims_.end() || claim->second.token != request->claim_token()) {
      return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, "claim_token: not live");
    }
    std::vector<wake::v1::Wake>& pending = pending_[request->stream()];
    pending.insert(pending.begin(), claim->second.wakes.begin(), claim->second.wakes.end());
    response->set_released(static_cast<int64_t>(claim->second.wakes.size()));
    claims_.erase(claim);
    return grpc::Status::OK;
  }

 private:
  struct Claim {
    std::string token;
    std::vector<wake::v1::Wake> wakes;
  };

  static wake::v1::ChangeEvent UpToDate(size_t offset) {
    wake::v1::ChangeEvent event;
    event.set_offset(absl::StrCat(offset));
    event.set_control(wake::v1::UP_TO_DATE);
    return event;
  }

  absl::Mutex mu_;
  std::map<std::string, std::vector<wake::v1::Wake>> pending_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, Claim> claims_ ABSL_GUARDED_BY(mu_);
  std::deque<wake::v1::ChangeEvent> log_ ABSL_GUARDED_BY(mu_);
  int64_t next_id_ ABSL_GUARDED_BY(mu_) = 1;
  int64_t next_token_ ABSL_GUARDED_BY(mu_) = 1;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
};

// Waits until the runtime reports its registry stream connected.
bool AwaitRuntimeConnected(const std::string& runtime, absl::Duration timeout) {
  auto stub = wake::v1::WakeRuntime::NewStub(
      grpc::CreateChannel(runtime, grpc::InsecureChannelCredentials()));
  const absl::Time deadline = absl::Now() + timeout;
  while (absl::Now() < deadline) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(2));
    context.set_wait_for_ready(true);
    wake::v1::GetHealthResponse health;
    if (stub->GetHealth(&context, wake::v1::GetHealthRequest(), &health).ok() &&
        health.registry_connected()) {
      return true;
    }
    absl::SleepFor(absl::Milliseconds(50));  // Polling a remote status.
  }
  return false;
}

}  // namespace

int main(int argc, char** argv) {
  Options options;
  if (!Parse(argc, argv, &options)) {
    std::fprintf(stderr,
                 "usage: runtime_latency --listen=H:P --runtime=H:P [--rates=100,1000,2000,5000] "
                 "[--seconds=10] [--streams=1000] [--runners=2]\n");
    return 2;
  }
  FakeRegistry registry;
  grpc::ServerBuilder builder;
  builder.AddListeningPort(options.listen, grpc::InsecureServerCredentials());
  builder.RegisterService(&registry);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr) {
    std::fprintf(stderr, "cannot listen on %s\n", options.listen.c_str());
    return 1;
  }
  if (!AwaitRuntimeConnected(options.runtime, absl::Seconds(60))) {
    std::fprintf(stderr, "the runtime at %s did not connect\n", options.runtime.c_str());
    return 1;
  }

  Tracker tracker;
  std::vector<std::unique_ptr<BenchRunner>> runners;
  for (int r = 0; r < options.runners; ++r) {
    runners.push_back(std::make_unique<BenchRunner>(options.runtime, r, tracker));
  }
  auto stream = [&options](int64_t n) {
    return absl::StrCat("/bench/stream-", n % options.streams);
  };
  // The clock is read before the wake exists, so no runner can be earlier.
  auto add = [&](int64_t n) {
    const Clock::time_point now = Clock::now();
    tracker.Evaluated(registry.AddWake(stream(n)), now);
  };
  for (int64_t n = 0; n < 200; ++n) add(n);
  tracker.AwaitComplete(200, absl::Seconds(30));
  tracker.Reset();

  bool ok = true;
  wake::bench::PrintHeader();
  for (int rate : options.rates) {
    const int64_t total = static_cast<int64_t>(rate) * options.seconds;
    const Clock::time_point t0 = Clock::now();
    for (int64_t n = 0; n < total; ++n) {
      std::this_thread::sleep_until(t0 + std::chrono::nanoseconds(n * 1000000000LL / rate));
      add(n);
    }
    const bool complete = tracker.AwaitComplete(total, absl::Seconds(30));
    const double seconds = std::max(1e-3, Millis(tracker.last_received() - t0) / 1000);
    int64_t early = 0;
    std::vector<double> latencies = tracker.Latencies(&early);
    wake::bench::PrintRow(absl::StrCat("runtime ", rate, "/s"), rate, seconds, total,
                          std::move(latencies), early, {});
    std::fflush(stdout);
    ok &= complete;
    tracker.Reset();
  }

  int64_t ack_errors = 0;
  std::string first_ack_error;
  for (auto& runner : runners) {
    ack_errors += runner->ack_errors();
    if (first_ack_error.empty()) first_ack_error = runner->first_ack_error();
  }
  runners.clear();
  registry.Stop();
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
  if (ack_errors > 0) {
    std::printf("  (%lld acks failed, first: %s)\n", static_cast<long long>(ack_errors),
                first_ack_error.c_str());
    ok = false;
  }
  return ok ? 0 : 1;
}
