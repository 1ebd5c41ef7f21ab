// registry-service: wires the real database, sync source and gRPC server
// together. Everything else lives in libraries that tests exercise directly.
#include <cstdio>
#include <string>
#include <vector>

#include <pqxx/pqxx>

#include "common/grpc_server.h"
#include "common/logging.h"
#include "common/postgres.h"
#include "common/real_time_source.h"
#include "common/shutdown.h"
#include "wake/v1/registry.grpc.pb.h"
#include "registry-service/migrations.h"
#include "registry-service/registry_config.h"

namespace wake::registry {
namespace {

const std::vector<std::string> kHealthNames = {"wake.v1.WakeRegistry"};

int Fail(const char* what, const absl::Status& status) {
  common::LogError(what, {{"error", std::string(status.message())}});
  return 1;
}

int Run(int argc, char** argv) {
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
  wake::v1::WakeRegistry::Service registry_service;  // RPCs arrive with their issues.
  absl::StatusOr<common::StartedServer> server =
      common::StartGrpcServer(config->listen_address, {&registry_service}, kHealthNames);
  if (!server.ok()) return Fail("listen_failed", server.status());
  common::LogInfo("listening", {{"address", server->address}});

  absl::StatusOr<std::unique_ptr<pqxx::connection>> connection = common::ConnectWithRetry(
      config->database_url, time, config->startup_timeout, [&] { return shutdown.Requested(); });
  if (!connection.ok()) {
    server->server->Shutdown();
    return Fail("startup_failed", connection.status());
  }
  absl::StatusOr<int> applied = ApplyMigrations(**connection);
  if (!applied.ok()) {
    server->server->Shutdown();
    return Fail("migrations_failed", applied.status());
  }
  common::LogInfo("migrations_done", {{"applied", *applied}});

  common::SetServing(*server->server, kHealthNames, true);
  common::LogInfo("serving", {{"address", server->address}});

  shutdown.Wait();
  common::LogInfo("shutting_down", {{"signal", shutdown.signal()}});
  common::SetServing(*server->server, kHealthNames, false);
  server->server->Shutdown(std::chrono::system_clock::now() +
                           absl::ToChronoMilliseconds(config->shutdown_grace));
  common::LogInfo("stopped");
  return 0;
}

}  // namespace
}  // namespace wake::registry

int main(int argc, char** argv) { return wake::registry::Run(argc, argv); }
