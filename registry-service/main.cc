// registry-service: wires the real database, sync source and gRPC server
// together. Everything else lives in libraries that tests exercise directly.
#include <atomic>
#include <cstdio>
#include <pqxx/pqxx>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "common/auth/authenticator.h"
#include "common/auth/token_file_authenticator.h"
#include "common/executor.h"
#include "common/grpc_server.h"
#include "common/logging.h"
#include "common/metrics.h"
#include "common/postgres.h"
#include "common/real_time_source.h"
#include "common/rpc_metrics.h"
#include "common/shutdown.h"
#include "common/sync/registration_collection.h"
#include "common/sync/sync_health.h"
#include "common/sync/sync_lag.h"
#include "prometheus/counter.h"
#include "prometheus/histogram.h"
#include "registry-service/change_feed.h"
#include "registry-service/evaluator.h"
#include "registry-service/migrations.h"
#include "registry-service/postgres_wake_store.h"
#include "registry-service/registry_config.h"
#include "registry-service/registry_core.h"
#include "registry-service/registry_service.h"
#include "registry-service/store_gauges.h"
#include "registry-service/sync_factory.h"

namespace wake::registry {
namespace {

const std::vector<std::string> kHealthNames = {"wake.v1.WakeRegistry"};

// Threads that run the blocking part of RPCs (database round trips, barrier
// waits); more than the pool's connections so waits on the barrier do not
// hold up database work.
constexpr int kRpcThreads = 64;

int Fail(const char* what, const absl::Status& status) {
  common::LogError(what, {{"error", std::string(status.message())}});
  return 1;
}

int Run(int argc, char** argv) {
  // Debian's Abseil is built with deadlock detection on: a graph update on
  // every lock of every mutex (a few percent of CPU under load). The tests
  // (and TSan) keep checking lock order; the service does not pay for it.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  common::ShutdownSignal shutdown;  // First: the signal mask must reach every thread.
  absl::StatusOr<RegistryConfig> config =
      ParseRegistryConfig(std::vector<std::string>(argv + 1, argv + argc), common::ProcessEnv());
  if (!config.ok()) {
    std::fprintf(stderr, "registry-service: %s\n", std::string(config.status().message()).c_str());
    return 2;
  }
  if (config->help_requested) {
    std::fputs(RegistryUsage().c_str(), stdout);
    return 0;
  }
  common::SetLogService("registry");
  common::SetLogLevel(config->log_level);

  common::RealTimeSource time;
  // Metrics are served only with --metrics-listen; recording them costs
  // next to nothing either way.
  common::Metrics metrics;
  common::InterceptorFactories interceptors;
  if (!config->metrics_listen.empty()) {
    if (absl::Status s = metrics.Serve(config->metrics_listen); !s.ok()) {
      return Fail("metrics_failed", s);
    }
    interceptors.push_back(common::RpcMetricsInterceptor(metrics));
    common::LogInfo("metrics_listening", {{"address", metrics.address()}});
  }
  common::auth::AuthenticatorPtr authenticator;
  if (config->server.no_auth) {
    authenticator = std::make_unique<common::auth::OpenAuthenticator>();
    common::LogWarn("authentication_off", {{"note", "--no-auth: every caller is an admin"}});
  } else {
    auto tokens =
        common::auth::TokenFileAuthenticator::Create(config->server.auth_tokens_path, time);
    if (!tokens.ok()) return Fail("startup_failed", tokens.status());
    authenticator = *std::move(tokens);
  }
  if (config->server.plaintext) {
    common::LogWarn("tls_off", {{"note", "--plaintext: loopback development only"}});
  }
  // Calls wait for a worker in a bounded queue; past it they are refused
  // (RESOURCE_EXHAUSTED) rather than queued without end.
  auto rpc_executor = std::make_unique<common::ThreadPoolExecutor>(
      kRpcThreads, static_cast<size_t>(config->max_queued_calls));
  RegistryService service(*rpc_executor, *authenticator);
  absl::StatusOr<common::StartedServer> server =
      common::StartGrpcServer(config->listen_address, {&service}, kHealthNames, config->server,
                              authenticator.get(), std::move(interceptors));
  if (!server.ok()) return Fail("listen_failed", server.status());
  common::LogLifecycle("listening", {{"address", server->address}});
  auto stop_server = [&] {
    server->server->Shutdown(std::chrono::system_clock::now() +
                             absl::ToChronoMilliseconds(config->shutdown_grace));
  };

  {
    absl::StatusOr<std::unique_ptr<pqxx::connection>> connection = common::ConnectWithRetry(
        config->database_url, time, config->startup_timeout, [&] { return shutdown.Requested(); });
    if (!connection.ok()) {
      stop_server();
      return Fail("startup_failed", connection.status());
    }
    absl::StatusOr<int> applied = ApplyMigrations(**connection);
    if (!applied.ok()) {
      stop_server();
      return Fail("migrations_failed", applied.status());
    }
    common::LogInfo("migrations_done", {{"applied", *applied}});
  }

  StoreLimits limits;
  limits.max_wake_bytes = config->max_wake_bytes;
  limits.max_claim_bytes = config->max_claim_bytes;
  limits.max_claim_wakes = config->max_claim_wakes;
  limits.debounce_max_changes = config->debounce_max_changes;
  limits.debounce_max_bytes = config->debounce_max_bytes;
  PostgresWakeStore store(config->database_url, config->db_pool_size, *rpc_executor, limits);
  auto& batch_sizes = prometheus::BuildHistogram()
                          .Name("wake_registry_group_commit_batch_size")
                          .Help("Calls carried by each group-commit statement, by kind of write.")
                          .Register(metrics.registry());
  store.SetBatchObserver([&batch_sizes](const char* kind, size_t calls) {
    batch_sizes.Add({{"kind", kind}}, common::BatchSizeBuckets()).Observe(calls);
  });
  sync::RegistrationCollection collection(time, rpc_executor.get());
  ChangeFeed feed(collection);
  absl::StatusOr<sync::SyncSourcePtr> source = MakeSyncSource(*config, time);
  if (!source.ok()) {
    stop_server();
    return Fail("startup_failed", source.status());
  }
  // Health follows the source: NOT_SERVING while it cannot follow (its
  // upstream rejects this replica, or it stopped on a row it cannot decode),
  // SERVING again once it is up to date. Only between "serving" and SIGTERM.
  std::atomic<bool> health_follows_sync{false};
  prometheus::Histogram& sync_lag =
      prometheus::BuildHistogram()
          .Name("wake_registry_sync_lag_seconds")
          .Help(
              "Commit of a transaction to its changes reaching the synced collection "
              "(--sync=postgres only: Electric's messages carry no commit time).")
          .Register(metrics.registry())
          .Add({}, common::LatencyBuckets());
  sync::SyncLagObserver sync_lag_observer(collection, time, [&sync_lag](absl::Duration lag) {
    sync_lag.Observe(absl::ToDoubleSeconds(lag));
  });
  sync::SyncHealthObserver sync_health(
      sync_lag_observer, [&](bool healthy, const absl::Status& why) {
        if (healthy) {
          common::LogInfo("sync_recovered");
        } else {
          common::LogError("sync_failed", {{"error", why}, {"health", "NOT_SERVING"}});
        }
        if (health_follows_sync.load()) common::SetServing(*server->server, kHealthNames, healthy);
      });
  if (absl::Status started = (*source)->Start(sync_health, config->startup_timeout);
      !started.ok()) {
    stop_server();
    return Fail("sync_failed", started);
  }
  common::LogInfo("sync_up_to_date",
                  {{"registrations", collection.size()},
                   {"sync", config->sync == SyncSourceKind::kPostgres ? "postgres" : "electric"}});

  auto deferred_executor = std::make_unique<common::ThreadPoolExecutor>(2);
  auto evaluator = std::make_unique<Evaluator>(collection, store, time, *deferred_executor);
  RegistryOptions options;
  options.write_confirm_timeout = config->write_confirm_timeout;
  options.key_retention.events = config->event_key_retention;
  options.key_retention.offsets = config->offset_key_retention;
  if (!config->tenant.empty()) options.tenant = config->tenant;
  prometheus::Histogram& barrier_time =
      prometheus::BuildHistogram()
          .Name("wake_registry_barrier_duration_seconds")
          .Help("Time read barriers (STRONG reads and evaluations) waited for the sync.")
          .Register(metrics.registry())
          .Add({}, common::LatencyBuckets());
  auto& barrier_outcomes = prometheus::BuildCounter()
                               .Name("wake_registry_barriers_total")
                               .Help("Read barriers, by outcome (ok, or failed: UNAVAILABLE).")
                               .Register(metrics.registry());
  prometheus::Counter& barriers_ok = barrier_outcomes.Add({{"outcome", "ok"}});
  prometheus::Counter& barriers_failed = barrier_outcomes.Add({{"outcome", "failed"}});
  options.on_barrier = [&](absl::Duration took, bool ok) {
    barrier_time.Observe(absl::ToDoubleSeconds(took));
    (ok ? barriers_ok : barriers_failed).Increment();
  };
  options.max_wake_bytes = config->max_wake_bytes;
  // Room for the framing of the answer around its wakes or registrations.
  options.max_response_bytes = config->server.max_message_bytes - (64 << 10);
  auto core = std::make_unique<RegistryCore>(collection, **source, store, *evaluator, time,
                                             *deferred_executor, options);
  service.Attach(core.get(), &feed, &collection);

  metrics.AddSampledGauge("wake_registry_registrations",
                          "Registrations in this replica's synced collection.",
                          [&collection] { return collection.size(); });
  metrics.AddSampledGauge("wake_registry_synced_pending_wakes",
                          "Wakes this replica's sync stream has shown pending (not claimed).",
                          [&collection] { return collection.PendingWakeCount(); });
  metrics.AddSampledGauge("wake_registry_sync_up_to_date",
                          "1 while the synced collection is up to date, else 0.",
                          [&collection] { return collection.up_to_date() ? 1 : 0; });
  metrics.AddSampledGauge("wake_registry_armed_timeouts",
                          "Registration timeouts this replica's timer watches.",
                          [&evaluator] { return evaluator->ArmedTimeouts(); });
  StoreGauges store_gauges(config->database_url, time);
  metrics.AddSampledGauge("wake_registry_debounce_windows",
                          "Open debounce windows (all replicas; read from PostgreSQL).",
                          [&store_gauges] { return store_gauges.Read().debounce_windows; });
  metrics.AddSampledGauge("wake_registry_live_claims",
                          "Stream claims whose lease has not run out (read from PostgreSQL).",
                          [&store_gauges] { return store_gauges.Read().live_claims; });
  metrics.AddSampledGauge("wake_registry_stored_wakes",
                          "Wakes stored, pending or claimed (read from PostgreSQL).",
                          [&store_gauges] { return store_gauges.Read().wakes; });

  health_follows_sync.store(true);
  common::SetServing(*server->server, kHealthNames, sync_health.failure().ok());
  common::LogLifecycle("serving", {{"address", server->address}});

  shutdown.Wait();
  common::LogLifecycle("shutting_down", {{"signal", shutdown.signal()}});
  metrics.StopServing();  // Its samples read what is torn down below.
  health_follows_sync.store(false);
  common::SetServing(*server->server, kHealthNames, false);
  stop_server();
  // The sync source first: until it stops, it may hand confirmed writes to
  // the RPC executor, which then finishes the calls already handed to it.
  (*source)->Stop();
  rpc_executor.reset();
  core.reset();
  evaluator.reset();
  deferred_executor.reset();
  common::LogLifecycle("stopped");
  return 0;
}

}  // namespace
}  // namespace wake::registry

int main(int argc, char** argv) { return wake::registry::Run(argc, argv); }
