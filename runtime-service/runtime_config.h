// Configuration of runtime-service: flags with environment fallbacks.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/config.h"
#include "common/grpc_client.h"
#include "common/logging.h"
#include "common/server_config.h"

namespace wake::runtime {

struct RuntimeConfig {
  std::string listen_address;
  // host:port of registry-service.
  std::string registry_address;
  // Identity of this runtime replica (recorded with its claims).
  std::string runtime_id;
  // Lease of a claim; runners heartbeat to extend it.
  absl::Duration lease;
  // How long a claim no connected runner can take is held before release.
  absl::Duration hold_timeout;
  // Period of the rescan backstop; zero = off.
  absl::Duration rescan_interval;
  // How long to wait before retrying a failed claim or reconnect (initial).
  absl::Duration retry_initial;
  absl::Duration shutdown_grace;
  // host:port of the Prometheus /metrics endpoint; empty = no metrics.
  std::string metrics_listen;
  // TLS, authentication and gRPC limits of the runner API.
  common::ServerConfig server;
  // How the runtime reaches the registry: TLS (or loopback plaintext), its
  // own bearer token, and the same message size limit.
  common::ClientConfig registry;
  common::LogLevel log_level = common::LogLevel::kInfo;
  bool help_requested = false;
};

absl::StatusOr<RuntimeConfig> ParseRuntimeConfig(const std::vector<std::string>& args,
                                                 const common::EnvLookup& env);

std::string RuntimeUsage();

}  // namespace wake::runtime
