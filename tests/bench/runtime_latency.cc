// The runtime alone: a real runtime-service against an in-memory registry
// hosted here (tests/support/fake_registry.h: wakes, claims and the change
// stream in memory, no database), so the rows show what the runtime itself
// costs. Latency runs from a wake being added (and announced on
// SubscribeChanges) to a runner receiving the claim that carries it;
// open-loop paced at each --rates value.
//   runtime_latency --listen=127.0.0.1:P --runtime=H:P --rates=100,1000,5000
// Start the runtime with --registry=<the --listen address>; this program
// waits until the runtime has connected.
#include <cstdio>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "grpcpp/grpcpp.h"
#include "tests/bench/latency_support.h"
#include "tests/support/bench_flags.h"
#include "tests/support/fake_registry.h"
#include "tests/support/wait_until.h"
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

// Waits until the runtime reports its registry stream connected.
bool AwaitRuntimeConnected(const std::string& runtime, absl::Duration timeout) {
  auto stub = wake::v1::WakeRuntime::NewStub(
      grpc::CreateChannel(runtime, grpc::InsecureChannelCredentials()));
  return wake::testing::WaitUntil(
      [&] {
        grpc::ClientContext context;
        context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(2));
        context.set_wait_for_ready(true);
        wake::v1::GetHealthResponse health;
        return stub->GetHealth(&context, wake::v1::GetHealthRequest(), &health).ok() &&
               health.registry_connected();
      },
      absl::Now() + timeout);
}

}  // namespace

int main(int argc, char** argv) {
  Options options;
  wake::testing::BenchFlags flags(
      "runtime_latency",
      "A runtime-service against an in-memory registry served here: wake to claim latency.");
  flags.String("listen", &options.listen, "where the in-memory registry listens");
  flags.String("runtime", &options.runtime, "the runtime (started with --registry=<listen>)");
  flags.IntList("rates", &options.rates, "offered wakes per second, one row each");
  flags.Int("seconds", &options.seconds, "length of each row", 1);
  flags.Int("streams", &options.streams, "streams the wakes are spread over", 1);
  flags.Int("runners", &options.runners, "runners connected to the runtime", 1);
  if (!flags.Parse(argc, argv)) return 2;
  wake::testing::FakeRegistryOptions registry_options;
  registry_options.tenant_id = "default";
  wake::testing::FakeRegistry registry(registry_options);
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
  registry.Close();
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
  if (ack_errors > 0) {
    std::printf("  (%lld acks failed, first: %s)\n", static_cast<long long>(ack_errors),
                first_ack_error.c_str());
    ok = false;
  }
  return ok ? 0 : 1;
}
