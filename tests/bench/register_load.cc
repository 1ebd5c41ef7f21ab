// Load client for the registry benchmark: N concurrent callers issue
// RegisterWake (distinct rows) or EvaluateRunFinished for a fixed time over
// real gRPC, then print rate and latency percentiles as one line.
//   register_load --target=127.0.0.1:50051 --rpc=register --callers=32 --seconds=10
// With --source=URL, evaluations name that source (e.g. one with a matching
// registration, so each call persists a wake); by default each names a
// source of its own (no match).
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "grpcpp/grpcpp.h"
#include "tests/support/bench_flags.h"
#include "wake/v1/registry.grpc.pb.h"

namespace {

struct Options {
  std::string target = "127.0.0.1:50051";
  std::string rpc = "register";  // register | evaluate | evaluate-local
  int callers = 1;
  int seconds = 10;
  std::string prefix = "bench";
  std::string source;  // Fixed source for evaluations (empty: one per call).
};

}  // namespace

int main(int argc, char** argv) {
  Options options;
  wake::testing::BenchFlags flags("register_load",
                                  "Concurrent callers of one registry RPC; rate and latency.");
  flags.String("target", &options.target, "the registry");
  flags.Choice("rpc", &options.rpc, {"register", "evaluate", "evaluate-local"}, "the RPC");
  flags.Int("callers", &options.callers, "concurrent callers", 1);
  flags.Int("seconds", &options.seconds, "how long to call", 1);
  flags.String("prefix", &options.prefix, "prefix of the URLs made");
  flags.String("source", &options.source, "fixed source for evaluations (empty: one per call)");
  if (!flags.Parse(argc, argv)) return 2;
  const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(options.seconds);
  std::atomic<long> errors{0};
  std::vector<std::vector<double>> latencies(options.callers);
  std::vector<std::thread> threads;
  const auto started = std::chrono::steady_clock::now();
  for (int c = 0; c < options.callers; ++c) {
    threads.emplace_back([&, c] {
      // One channel per caller, as independent clients would have.
      grpc::ChannelArguments args;
      args.SetInt("grpc.channel_id", c);
      auto stub = wake::v1::WakeRegistry::NewStub(
          grpc::CreateCustomChannel(options.target, grpc::InsecureChannelCredentials(), args));
      for (long i = 0; std::chrono::steady_clock::now() < end; ++i) {
        grpc::ClientContext context;
        context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
        const auto t0 = std::chrono::steady_clock::now();
        grpc::Status status;
        if (options.rpc == "register") {
          wake::v1::RegisterWakeRequest request;
          request.set_subscriber_url(absl::StrCat("/", options.prefix, "/parent-", c, "-", i));
          request.set_source_url(absl::StrCat("/", options.prefix, "/child-", c, "-", i));
          request.mutable_condition()->mutable_run_finished();
          wake::v1::RegisterWakeResponse response;
          status = stub->RegisterWake(&context, request, &response);
        } else {
          wake::v1::EvaluateRunFinishedRequest request;
          if (options.source.empty()) {
            request.set_source_url(absl::StrCat("/", options.prefix, "/child-", c, "-", i));
            request.set_run_key("run");
          } else {
            request.set_source_url(options.source);
            request.set_run_key(absl::StrCat(options.prefix, "-", c, "-", i));
          }
          request.set_status(wake::v1::COMPLETED);
          if (options.rpc == "evaluate-local") request.set_consistency(wake::v1::LOCAL);
          wake::v1::EvaluateRunFinishedResponse response;
          status = stub->EvaluateRunFinished(&context, request, &response);
        }
        const std::chrono::duration<double, std::milli> took =
            std::chrono::steady_clock::now() - t0;
        if (!status.ok()) {
          if (errors++ == 0) {
            std::fprintf(stderr, "first error: %d %s\n", status.error_code(),
                         status.error_message().c_str());
          }
          continue;
        }
        latencies[c].push_back(took.count());
      }
    });
  }
  for (std::thread& t : threads) t.join();
  const std::chrono::duration<double> elapsed = std::chrono::steady_clock::now() - started;
  std::vector<double> all;
  for (const auto& l : latencies) all.insert(all.end(), l.begin(), l.end());
  std::sort(all.begin(), all.end());
  auto pct = [&](double p) {
    return all.empty() ? 0.0 : all[std::min(all.size() - 1, static_cast<size_t>(p * all.size()))];
  };
  std::printf("rpc=%s callers=%d ok=%zu errors=%ld rate=%.0f/s p50=%.2fms p99=%.2fms\n",
              options.rpc.c_str(), options.callers, all.size(), errors.load(),
              all.size() / elapsed.count(), pct(0.50), pct(0.99));
  return errors.load() == 0 ? 0 : 1;
}
