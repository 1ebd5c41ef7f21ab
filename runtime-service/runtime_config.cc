#include "runtime-service/runtime_config.h"

#include <unistd.h>

#include "absl/strings/str_cat.h"

namespace wake::runtime {
namespace {

std::string DefaultRuntimeId() {
  char host[256] = {0};
  if (gethostname(host, sizeof(host) - 1) != 0) host[0] = '\0';
  return absl::StrCat(host[0] != '\0' ? host : "runtime", "-", getpid());
}

common::ConfigParser Parser() {
  return common::ConfigParser(
      "runtime-service",
      {
          {"listen", "WAKE_RUNTIME_LISTEN", "127.0.0.1:50052", "gRPC listen address host:port"},
          {"registry", "WAKE_REGISTRY_ADDR", "127.0.0.1:50051",
           "registry-service address host:port"},
          {"runtime-id", "WAKE_RUNTIME_ID", "", "identity of this replica (default host-pid)"},
          {"lease", "WAKE_LEASE", "30s", "claim lease; runners heartbeat to extend it"},
          {"hold-timeout", "WAKE_HOLD_TIMEOUT", "1s",
           "how long a claim no connected runner can take waits for one before it is "
           "released (shorter than --lease)"},
          {"rescan-interval", "WAKE_RESCAN_INTERVAL", "30s",
           "how often the registry's pending wakes are read to find any the change stream "
           "never announced (0 = off)"},
          {"retry-initial", "WAKE_RETRY_INITIAL", "100ms",
           "first delay before retrying a failed claim or registry reconnect"},
          {"shutdown-grace", "WAKE_SHUTDOWN_GRACE", "10s",
           "how long in-flight calls may finish after SIGTERM"},
          {"metrics-listen", "WAKE_METRICS_LISTEN", "",
           "serve Prometheus metrics on /metrics at this host:port (default: off)"},
          {"log-level", "WAKE_LOG_LEVEL", "info", "debug, info, warn or error (lifecycle lines always print)"},
      });
}

}  // namespace

std::string RuntimeUsage() { return Parser().Usage(); }

absl::StatusOr<RuntimeConfig> ParseRuntimeConfig(const std::vector<std::string>& args,
                                                 const common::EnvLookup& env) {
  absl::StatusOr<common::ConfigValues> values = Parser().Parse(args, env);
  if (!values.ok()) return values.status();
  RuntimeConfig config;
  config.help_requested = values->help_requested();
  if (config.help_requested) return config;

  config.listen_address = values->GetString("listen");
  if (auto s = common::ValidateListenAddress("listen", config.listen_address); !s.ok()) return s;
  config.registry_address = values->GetString("registry");
  if (auto s = common::ValidateListenAddress("registry", config.registry_address); !s.ok()) {
    return s;
  }
  config.runtime_id = values->GetString("runtime-id");
  if (config.runtime_id.empty()) config.runtime_id = DefaultRuntimeId();
  if (config.runtime_id.size() > 256) {
    return absl::InvalidArgumentError("--runtime-id: at most 256 bytes");
  }

  absl::StatusOr<absl::Duration> lease = values->GetDuration("lease");
  if (!lease.ok()) return lease.status();
  if (*lease < absl::Seconds(1) || *lease > absl::Hours(1)) {
    return absl::InvalidArgumentError("--lease: must be between 1s and 1h");
  }
  config.lease = *lease;
  absl::StatusOr<absl::Duration> hold = values->GetDuration("hold-timeout");
  if (!hold.ok()) return hold.status();
  if (*hold < absl::Milliseconds(1) || *hold >= config.lease) {
    return absl::InvalidArgumentError(
        absl::StrCat("--hold-timeout: must be at least 1ms and shorter than --lease (",
                     absl::FormatDuration(config.lease), "), got ", absl::FormatDuration(*hold)));
  }
  config.hold_timeout = *hold;
  absl::StatusOr<absl::Duration> rescan = values->GetDuration("rescan-interval");
  if (!rescan.ok()) return rescan.status();
  if (*rescan != absl::ZeroDuration() && (*rescan < absl::Milliseconds(100) ||
                                          *rescan > absl::Hours(24))) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--rescan-interval: must be 0 (off) or between 100ms and 24h, got ",
        absl::FormatDuration(*rescan)));
  }
  config.rescan_interval = *rescan;
  absl::StatusOr<absl::Duration> retry = values->GetDuration("retry-initial");
  if (!retry.ok()) return retry.status();
  if (*retry < absl::Milliseconds(1) || *retry > absl::Minutes(1)) {
    return absl::InvalidArgumentError("--retry-initial: must be between 1ms and 1m");
  }
  config.retry_initial = *retry;
  absl::StatusOr<absl::Duration> grace = values->GetDuration("shutdown-grace");
  if (!grace.ok()) return grace.status();
  config.shutdown_grace = *grace;
  config.metrics_listen = values->GetString("metrics-listen");
  if (!config.metrics_listen.empty()) {
    if (absl::Status s = common::ValidateListenAddress("metrics-listen", config.metrics_listen);
        !s.ok()) {
      return s;
    }
  }
  if (!common::ParseLogLevel(values->GetString("log-level"), &config.log_level)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--log-level: \"", values->GetString("log-level"), "\" is not debug, info, warn or error"));
  }
  return config;
}

}  // namespace wake::runtime
