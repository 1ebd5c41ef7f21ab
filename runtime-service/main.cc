// runtime-service: wires the registry client, claim scheduler and runner API
// together. Everything else lives in libraries that tests exercise directly.
#include <atomic>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "common/auth/authenticator.h"
#include "common/auth/token_file_authenticator.h"
#include "common/executor.h"
#include "common/grpc_client.h"
#include "common/grpc_server.h"
#include "common/logging.h"
#include "common/metrics.h"
#include "common/real_time_source.h"
#include "common/rpc_metrics.h"
#include "common/shutdown.h"
#include "grpcpp/grpcpp.h"
#include "prometheus/histogram.h"
#include "runtime-service/claim_scheduler_impl.h"
#include "runtime-service/registry_follower_impl.h"
#include "runtime-service/rescanner_impl.h"
#include "runtime-service/runtime_config.h"
#include "runtime-service/runtime_service.h"
#include "wake/v1/registry.grpc.pb.h"

namespace wake::runtime {
namespace {

const std::vector<std::string> kHealthNames = {"wake.v1.WakeRuntime"};

// Threads for blocking registry calls; the real stub uses the callback API,
// so these only matter for stubs without one.
constexpr int kExecutorThreads = 4;

std::shared_ptr<grpc::Channel> RegistryChannel(const RuntimeConfig& config) {
  grpc::ChannelArguments args;
  // Notice a dead registry on the long-lived change stream, and come back
  // quickly once it is up again (gRPC's default reconnect backoff reaches 2m).
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 10000);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 5000);
  args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS,
              static_cast<int>(absl::ToInt64Milliseconds(config.retry_initial)));
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS,
              static_cast<int>(absl::ToInt64Milliseconds(config.retry_initial)));
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 5000);
  return common::CreateClientChannel(config.registry_address, config.registry, args);
}

// The runtime's state, read at each scrape from what the scheduler, the
// change-stream follower and the rescanner already count.
void AddRuntimeMetrics(common::Metrics& metrics, ClaimScheduler& scheduler,
                       RegistryFollower& follower, Rescanner& rescanner) {
  metrics.AddSampledGauge("wake_runtime_connected_runners", "Runner sessions connected.",
                          [&scheduler] { return scheduler.Health().connected_runners; });
  metrics.AddSampledGauge("wake_runtime_active_claims",
                          "Claims this runtime holds (with a runner or waiting for one).",
                          [&scheduler] { return scheduler.Health().active_claims; });
  metrics.AddSampledGauge("wake_runtime_queued_streams",
                          "Streams with a trigger waiting for a claim.",
                          [&scheduler] { return scheduler.Health().queued_streams; });
  metrics.AddSampledGauge("wake_runtime_waiting_for_runner_streams",
                          "Streams parked: no connected runner may take them.",
                          [&scheduler] { return scheduler.Health().waiting_for_runner; });
  const std::pair<const char*, int64_t SchedulerCounters::*> outcomes[] = {
      {"succeeded", &SchedulerCounters::claims_succeeded},
      {"skipped", &SchedulerCounters::claims_skipped},
      {"failed", &SchedulerCounters::claims_failed},
      {"dispatched", &SchedulerCounters::claims_dispatched},
      {"acked", &SchedulerCounters::claims_acked},
      {"released", &SchedulerCounters::claims_released},
  };
  for (const auto& [outcome, field] : outcomes) {
    metrics.AddSampledCounter(
        "wake_runtime_claims_total",
        "Claims by outcome: ClaimWakes that took a claim (succeeded), found nothing or the "
        "stream claimed elsewhere (skipped), or failed; claims sent to runners "
        "(dispatched), acked, and released for redelivery.",
        [&scheduler, field = field] { return scheduler.Health().counters.*field; },
        {{"outcome", outcome}});
  }
  metrics.AddSampledCounter("wake_runtime_registry_reconnects_total",
                            "Reconnects of the registry change stream.",
                            [&follower] { return follower.Status().reconnects; });
  metrics.AddSampledCounter("wake_runtime_registry_events_total",
                            "Change events received from the registry.",
                            [&follower] { return follower.Status().events_received; });
  metrics.AddSampledGauge("wake_runtime_registry_up_to_date",
                          "1 while the registry change stream is connected and up to date.",
                          [&follower] { return follower.Status().up_to_date ? 1 : 0; });
  metrics.AddSampledCounter("wake_runtime_rescans_total",
                            "Rescans of the registry's pending wakes.",
                            [&rescanner] { return rescanner.Status().rescans; });
  metrics.AddSampledCounter("wake_runtime_rescan_found_total",
                            "Streams a rescan found pending that the runtime had never been "
                            "told of (should stay 0).",
                            [&rescanner] { return rescanner.Status().found; });
}

int Run(int argc, char** argv) {
  common::ShutdownSignal shutdown;  // First: the signal mask must reach every thread.
  // Debian's abseil is built with mutex deadlock detection on, which keeps a
  // lock graph for every absl::Mutex (gRPC's included): several % of CPU.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  absl::StatusOr<RuntimeConfig> config =
      ParseRuntimeConfig(std::vector<std::string>(argv + 1, argv + argc), common::ProcessEnv());
  if (!config.ok()) {
    std::fprintf(stderr, "runtime-service: %s\n", std::string(config.status().message()).c_str());
    return 2;
  }
  if (config->help_requested) {
    std::fputs(RuntimeUsage().c_str(), stdout);
    return 0;
  }
  common::SetLogService("runtime");
  common::SetLogLevel(config->log_level);

  common::RealTimeSource time;
  // Metrics are served only with --metrics-listen; recording them costs
  // next to nothing either way.
  common::Metrics metrics;
  common::InterceptorFactories interceptors;
  if (!config->metrics_listen.empty()) {
    if (absl::Status s = metrics.Serve(config->metrics_listen); !s.ok()) {
      common::LogError("metrics_failed", {{"error", std::string(s.message())}});
      return 1;
    }
    interceptors.push_back(common::RpcMetricsInterceptor(metrics));
    common::LogInfo("metrics_listening", {{"address", metrics.address()}});
  }
  common::ThreadPoolExecutor executor(kExecutorThreads);
  std::unique_ptr<v1::WakeRegistry::Stub> registry =
      v1::WakeRegistry::NewStub(RegistryChannel(*config));

  SchedulerOptions scheduler_options;
  scheduler_options.runtime_id = config->runtime_id;
  scheduler_options.batch_registry_calls = true;
  scheduler_options.lease = config->lease;
  scheduler_options.hold_timeout = config->hold_timeout;
  scheduler_options.retry_initial = config->retry_initial;
  prometheus::Histogram& dispatch_latency =
      prometheus::BuildHistogram()
          .Name("wake_runtime_dispatch_latency_seconds")
          .Help(
              "From a stream's trigger (a wake announced by the registry, more pending, a "
              "redelivery) to its claim being sent to a runner.")
          .Register(metrics.registry())
          .Add({}, common::LatencyBuckets());
  scheduler_options.on_dispatch = [&dispatch_latency](absl::Duration latency) {
    dispatch_latency.Observe(absl::ToDoubleSeconds(latency));
  };
  ClaimSchedulerImpl scheduler(*registry, time, executor, scheduler_options);

  // Health follows the change stream: SERVING only while it is up to date.
  std::atomic<grpc::Server*> server_for_health{nullptr};
  std::string address;
  FollowerOptions follower_options;
  follower_options.retry_initial = config->retry_initial;
  follower_options.on_up_to_date_changed = [&server_for_health, &address](bool up_to_date) {
    grpc::Server* server = server_for_health.load();
    if (server == nullptr) return;
    common::SetServing(*server, kHealthNames, up_to_date);
    common::LogLifecycle(up_to_date ? "serving" : "not_serving", {{"address", address}});
  };
  RegistryFollowerImpl follower(*registry, scheduler, time, follower_options);

  RescanOptions rescan_options;
  rescan_options.interval = config->rescan_interval;
  RescannerImpl rescanner(*registry, follower, scheduler, scheduler, time, executor,
                          rescan_options);

  common::auth::AuthenticatorPtr authenticator;
  if (config->server.no_auth) {
    authenticator = std::make_unique<common::auth::OpenAuthenticator>();
    common::LogWarn("authentication_off", {{"note", "--no-auth: every caller is an admin"}});
  } else {
    auto tokens =
        common::auth::TokenFileAuthenticator::Create(config->server.auth_tokens_path, time);
    if (!tokens.ok()) {
      common::LogError("startup_failed", {{"error", std::string(tokens.status().message())}});
      return 1;
    }
    authenticator = *std::move(tokens);
  }
  if (config->server.plaintext) {
    common::LogWarn("tls_off", {{"note", "--plaintext: loopback development only"}});
  }
  RuntimeService runtime_service(scheduler, follower, *authenticator, &rescanner);
  AddRuntimeMetrics(metrics, scheduler, follower, rescanner);
  absl::StatusOr<common::StartedServer> server =
      common::StartGrpcServer(config->listen_address, {&runtime_service}, kHealthNames,
                              config->server, authenticator.get(), std::move(interceptors));
  if (!server.ok()) {
    common::LogError("listen_failed", {{"error", std::string(server.status().message())}});
    return 1;
  }
  address = server->address;
  server_for_health.store(server->server.get());
  common::LogLifecycle("listening", {{"address", server->address},
                                     {"registry", config->registry_address},
                                     {"runtime_id", config->runtime_id}});
  std::thread follower_thread([&follower] { follower.Run(); });
  rescanner.Start();

  shutdown.Wait();
  common::LogLifecycle("shutting_down", {{"signal", shutdown.signal()}});
  metrics.StopServing();  // Its samples read what is torn down below.
  server_for_health.store(nullptr);
  common::SetServing(*server->server, kHealthNames, false);
  rescanner.Stop();
  follower.Stop();
  follower_thread.join();

  // Finish or release: no new claims or runners; claims no runner holds go
  // back now; runners get half the grace to ack theirs; the rest go back.
  scheduler.BeginShutdown();
  const absl::Duration grace = config->shutdown_grace;
  if (!scheduler.AwaitRunnersDone(grace / 2)) {
    common::LogWarn("releasing_unacked_claims");
  }
  scheduler.ReleaseAll();
  if (!scheduler.AwaitSettled(grace / 2)) {
    common::LogWarn("claims_not_released", {{"note", "their leases will expire"}});
  }
  server->server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
  common::LogLifecycle("stopped");
  return 0;
}

}  // namespace
}  // namespace wake::runtime

int main(int argc, char** argv) { return wake::runtime::Run(argc, argv); }
