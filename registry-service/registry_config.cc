#include "registry-service/registry_config.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/postgres.h"

namespace wake::registry {
namespace {

std::vector<common::FlagSpec> Flags() {
  std::vector<common::FlagSpec> flags = {
      {"listen", "WAKE_REGISTRY_LISTEN", "127.0.0.1:50051", "gRPC listen address host:port"},
      {"database-url", "DATABASE_URL", "", "PostgreSQL connection string (required)"},
      {"sync", "WAKE_SYNC", "postgres",
       "sync source of the registration collection: postgres (logical replication) or "
       "electric (Electric shape API)"},
      {"electric-url", "ELECTRIC_URL", "", "Electric base URL, required with --sync=electric"},
      {"electric-secret", "ELECTRIC_SECRET", "", "Electric API secret (optional)"},
      {"tenant", "WAKE_TENANT", "", "serve only this tenant (default: all tenants)"},
      {"startup-timeout", "WAKE_STARTUP_TIMEOUT", "60s",
       "give up starting if the database or sync is not ready by then"},
      {"write-confirm-timeout", "WAKE_WRITE_CONFIRM_TIMEOUT", "2s",
       "how long a write waits for the sync stream to show its txid"},
      {"shutdown-grace", "WAKE_SHUTDOWN_GRACE", "10s",
       "how long in-flight calls may finish after SIGTERM"},
      {"db-pool-size", "WAKE_DB_POOL_SIZE", "16", "PostgreSQL connections for requests"},
      {"event-key-retention", "WAKE_EVENT_KEY_RETENTION", "24h",
       "how long the key of an event without an offset (\"<op>:<key>\") is remembered "
       "after it made a wake: a replay within it makes no second wake"},
      {"offset-key-retention", "WAKE_OFFSET_KEY_RETENTION", "1h",
       "how long an event's offset is remembered before it joins its registration's "
       "high-water mark (replays at or below the mark never wake again); an older offset "
       "that arrives after a newer one within it still wakes"},
      {"metrics-listen", "WAKE_METRICS_LISTEN", "",
       "serve Prometheus metrics on /metrics at this host:port (default: off)"},
      {"log-level", "WAKE_LOG_LEVEL", "info",
       "debug, info, warn or error (lifecycle lines always print)"},
      {"database-url-file", "DATABASE_URL_FILE", "",
       "read the connection string from this file (keeps a password out of ps)"},
      {"electric-secret-file", "ELECTRIC_SECRET_FILE", "",
       "read the Electric API secret from this file"},
      {"max-wake-bytes", "WAKE_MAX_WAKE_BYTES", "2097152",
       "largest wake message: an evaluation making a bigger one is INVALID_ARGUMENT, a "
       "bigger debounce window closes into several wakes"},
      {"max-claim-bytes", "WAKE_MAX_CLAIM_BYTES", "3932160",
       "largest ClaimWakes answer; the wakes beyond it stay pending for the next claim "
       "(between --max-wake-bytes and --max-message-bytes less 64 KiB)"},
      {"max-claim-wakes", "WAKE_MAX_CLAIM_WAKES", "1000",
       "wakes one claim takes at most; the rest stay pending for the next claim"},
      {"debounce-max-changes", "WAKE_DEBOUNCE_MAX_CHANGES", "1000",
       "a debounce window closes early once it holds this many changes"},
      {"debounce-max-bytes", "WAKE_DEBOUNCE_MAX_BYTES", "1048576",
       "a debounce window closes early once its changes take this many bytes"},
      {"max-queued-calls", "WAKE_MAX_QUEUED_CALLS", "4096",
       "calls waiting for a worker thread; more are refused with RESOURCE_EXHAUSTED"},
  };
  for (common::FlagSpec& flag : common::ServerFlagSpecs()) flags.push_back(std::move(flag));
  return flags;
}

common::ConfigParser Parser() { return common::ConfigParser("registry-service", Flags()); }

}  // namespace

std::string RegistryUsage() { return Parser().Usage(); }

absl::StatusOr<RegistryConfig> ParseRegistryConfig(const std::vector<std::string>& args,
                                                   const common::EnvLookup& env) {
  absl::StatusOr<common::ConfigValues> values = Parser().Parse(args, env);
  if (!values.ok()) return values.status();
  RegistryConfig config;
  config.help_requested = values->help_requested();
  if (config.help_requested) return config;

  config.listen_address = values->GetString("listen");
  if (absl::Status s = common::ValidateListenAddress("listen", config.listen_address); !s.ok()) {
    return s;
  }
  config.database_url = values->GetString("database-url");
  if (const std::string& file = values->GetString("database-url-file"); !file.empty()) {
    if (!config.database_url.empty() && values->SourceOf("database-url") != "default") {
      return absl::InvalidArgumentError(
          "--database-url-file: give either it or --database-url (DATABASE_URL), not both");
    }
    absl::StatusOr<std::string> url = common::ReadFlagFile("database-url-file", file);
    if (!url.ok()) return url.status();
    config.database_url = *url;
  }
  if (absl::Status s = common::ValidateConnectionString("database-url", config.database_url);
      !s.ok()) {
    return s;
  }
  const std::string& sync = values->GetString("sync");
  if (sync == "postgres") {
    config.sync = SyncSourceKind::kPostgres;
  } else if (sync == "electric") {
    config.sync = SyncSourceKind::kElectric;
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("--sync: \"", sync, "\" is not a sync source (postgres or electric)"));
  }
  config.electric_url = values->GetString("electric-url");
  config.electric_secret = values->GetString("electric-secret");
  if (const std::string& file = values->GetString("electric-secret-file"); !file.empty()) {
    if (!config.electric_secret.empty()) {
      return absl::InvalidArgumentError(
          "--electric-secret-file: give either it or --electric-secret (ELECTRIC_SECRET)");
    }
    absl::StatusOr<std::string> secret = common::ReadFlagFile("electric-secret-file", file);
    if (!secret.ok()) return secret.status();
    config.electric_secret = *secret;
  }
  if (config.sync == SyncSourceKind::kElectric) {
    if (config.electric_url.empty()) {
      return absl::InvalidArgumentError(
          "--electric-url: required with --sync=electric (e.g. http://127.0.0.1:3000)");
    }
    if (!absl::StartsWith(config.electric_url, "http://") &&
        !absl::StartsWith(config.electric_url, "https://")) {
      return absl::InvalidArgumentError(
          absl::StrCat("--electric-url: \"", config.electric_url, "\" must start with http(s)://"));
    }
  }
  config.tenant = values->GetString("tenant");

  auto duration = [&](const std::string& name, absl::Duration min, absl::Duration max,
                      absl::Duration* out) -> absl::Status {
    absl::StatusOr<absl::Duration> d = values->GetDuration(name);
    if (!d.ok()) return d.status();
    if (*d < min || *d > max) {
      return absl::InvalidArgumentError(absl::StrCat("--", name, ": must be between ",
                                                     absl::FormatDuration(min), " and ",
                                                     absl::FormatDuration(max)));
    }
    *out = *d;
    return absl::OkStatus();
  };
  if (auto s =
          duration("startup-timeout", absl::Seconds(1), absl::Hours(1), &config.startup_timeout);
      !s.ok()) {
    return s;
  }
  if (auto s = duration("write-confirm-timeout", absl::Milliseconds(10), absl::Minutes(1),
                        &config.write_confirm_timeout);
      !s.ok()) {
    return s;
  }
  if (auto s = duration("shutdown-grace", absl::ZeroDuration(), absl::Minutes(10),
                        &config.shutdown_grace);
      !s.ok()) {
    return s;
  }
  if (auto s = duration("event-key-retention", absl::Minutes(1), absl::Hours(24 * 365),
                        &config.event_key_retention);
      !s.ok()) {
    return s;
  }
  if (auto s = duration("offset-key-retention", absl::Minutes(1), absl::Hours(24 * 365),
                        &config.offset_key_retention);
      !s.ok()) {
    return s;
  }
  config.metrics_listen = values->GetString("metrics-listen");
  if (!config.metrics_listen.empty()) {
    if (absl::Status s = common::ValidateListenAddress("metrics-listen", config.metrics_listen);
        !s.ok()) {
      return s;
    }
  }
  absl::StatusOr<int64_t> pool = values->GetInt("db-pool-size");
  if (!pool.ok()) return pool.status();
  if (*pool < 1 || *pool > 512) {
    return absl::InvalidArgumentError("--db-pool-size: must be between 1 and 512");
  }
  config.db_pool_size = static_cast<int>(*pool);
  absl::StatusOr<common::ServerConfig> server =
      common::ParseServerConfig(*values, config.listen_address);
  if (!server.ok()) return server.status();
  config.server = *std::move(server);
  auto bounded = [&](const std::string& name, int64_t min, int64_t max) -> absl::StatusOr<int64_t> {
    absl::StatusOr<int64_t> value = values->GetInt(name);
    if (!value.ok()) return value.status();
    if (*value < min || *value > max) {
      return absl::InvalidArgumentError(
          absl::StrCat("--", name, ": must be between ", min, " and ", max));
    }
    return *value;
  };
  const int64_t message = config.server.max_message_bytes;
  absl::StatusOr<int64_t> max_claim = bounded("max-claim-bytes", 32 << 10, message - (64 << 10));
  if (!max_claim.ok()) return max_claim.status();
  config.max_claim_bytes = *max_claim;
  absl::StatusOr<int64_t> max_wake = bounded("max-wake-bytes", 16 << 10, config.max_claim_bytes);
  if (!max_wake.ok()) return max_wake.status();
  config.max_wake_bytes = *max_wake;
  absl::StatusOr<int64_t> claim_wakes = bounded("max-claim-wakes", 1, 100000);
  if (!claim_wakes.ok()) return claim_wakes.status();
  config.max_claim_wakes = static_cast<int>(*claim_wakes);
  absl::StatusOr<int64_t> window_changes = bounded("debounce-max-changes", 1, 1000000);
  if (!window_changes.ok()) return window_changes.status();
  config.debounce_max_changes = static_cast<int>(*window_changes);
  absl::StatusOr<int64_t> window_bytes = bounded("debounce-max-bytes", 1024, int64_t{1} << 32);
  if (!window_bytes.ok()) return window_bytes.status();
  config.debounce_max_bytes = *window_bytes;
  absl::StatusOr<int64_t> queued = bounded("max-queued-calls", 1, 1 << 20);
  if (!queued.ok()) return queued.status();
  config.max_queued_calls = static_cast<int>(*queued);
  if (!common::ParseLogLevel(values->GetString("log-level"), &config.log_level)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--log-level: \"", values->GetString("log-level"), "\" is not debug, info, warn or error"));
  }
  return config;
}

}  // namespace wake::registry
