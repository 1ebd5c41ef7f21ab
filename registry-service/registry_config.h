// Configuration of registry-service: flags with environment fallbacks.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/config.h"
#include "common/logging.h"

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
  common::LogLevel log_level = common::LogLevel::kInfo;
  bool help_requested = false;
};

// Parses args (without the program name). Errors name the flag.
absl::StatusOr<RegistryConfig> ParseRegistryConfig(const std::vector<std::string>& args,
                                                   const common::EnvLookup& env);

std::string RegistryUsage();

}  // namespace wake::registry
