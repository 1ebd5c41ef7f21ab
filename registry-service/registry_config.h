// Configuration of registry-service: flags with environment fallbacks.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/config.h"
#include "common/logging.h"
#include "common/server_config.h"

namespace wake::registry {

enum class SyncSourceKind { kPostgres, kElectric };

struct RegistryConfig {
  std::string listen_address;
  std::string database_url;
  SyncSourceKind sync = SyncSourceKind::kPostgres;
  std::string electric_url;
  std::string electric_secret;
  // Empty = every tenant; otherwise the registry (and its Electric shape)
  // only serves this tenant.
  std::string tenant;
  absl::Duration startup_timeout;
  absl::Duration write_confirm_timeout;
  absl::Duration shutdown_grace;
  // How long event keys (without an offset, and offsets) are remembered for
  // idempotency after their wake.
  absl::Duration event_key_retention;
  absl::Duration offset_key_retention;
  int db_pool_size = 16;
  // host:port of the Prometheus /metrics endpoint; empty = no metrics.
  std::string metrics_listen;
  // TLS, authentication and gRPC limits (common/server_config.h).
  common::ServerConfig server;
  // Largest wake (its serialized message): an evaluation whose change would
  // make a bigger one is INVALID_ARGUMENT; a debounce window larger than this
  // closes into several wakes.
  int64_t max_wake_bytes = 2 << 20;
  // Largest ClaimWakes answer: a claim takes pending wakes in id order until
  // the next would pass this (always at least one); the rest stay pending.
  int64_t max_claim_bytes = (4 << 20) - (256 << 10);
  // A debounce window closes early (its deadline becomes now) once it holds
  // this many changes or bytes of changes.
  int debounce_max_changes = 1000;
  int64_t debounce_max_bytes = 1 << 20;
  // Calls waiting for a worker thread; past it, RESOURCE_EXHAUSTED.
  int max_queued_calls = 4096;
  // Wakes one claim takes at most.
  int max_claim_wakes = 1000;
  common::LogLevel log_level = common::LogLevel::kInfo;
  bool help_requested = false;
};

// Parses args (without the program name). Errors name the flag.
absl::StatusOr<RegistryConfig> ParseRegistryConfig(const std::vector<std::string>& args,
                                                   const common::EnvLookup& env);

std::string RegistryUsage();

}  // namespace wake::registry
