// runtime-service: wires the registry client, claim scheduler and runner API
// together. Everything else lives in libraries that tests exercise directly.
#include <cstdio>
#include <string>
#include <vector>

#include "common/grpc_server.h"
#include "common/logging.h"
#include "common/shutdown.h"
#include "runtime-service/runtime_config.h"
#include "wake/v1/runtime.grpc.pb.h"

namespace wake::runtime {
namespace {

const std::vector<std::string> kHealthNames = {"wake.v1.WakeRuntime"};

int Run(int argc, char** argv) {
  common::ShutdownSignal shutdown;  // First: the signal mask must reach every thread.
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

  wake::v1::WakeRuntime::Service runtime_service;  // RPCs arrive with their issue.
  absl::StatusOr<common::StartedServer> server =
      common::StartGrpcServer(config->listen_address, {&runtime_service}, kHealthNames);
  if (!server.ok()) {
    common::LogError("listen_failed", {{"error", std::string(server.status().message())}});
    return 1;
  }
  common::LogInfo("listening", {{"address", server->address},
                                {"registry", config->registry_address},
                                {"runtime_id", config->runtime_id}});
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
}  // namespace wake::runtime

int main(int argc, char** argv) { return wake::runtime::Run(argc, argv); }
