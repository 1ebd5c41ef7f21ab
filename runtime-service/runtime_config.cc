#include "runtime-service/runtime_config.h"

#include <unistd.h>

#include <tuple>

#include "absl/strings/str_cat.h"

namespace wake::runtime {
namespace {

std::string DefaultRuntimeId() {
  char host[256] = {0};
  if (gethostname(host, sizeof(host) - 1) != 0) host[0] = '\0';
  return absl::StrCat(host[0] != '\0' ? host : "runtime", "-", getpid());
}

std::vector<common::FlagSpec> Flags() {
  std::vector<common::FlagSpec> flags = {
      {"listen", "WAKE_RUNTIME_LISTEN", "127.0.0.1:50052", "gRPC listen address host:port"},
      {"registry", "WAKE_REGISTRY_ADDR", "127.0.0.1:50051", "registry-service address host:port"},
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
      {"log-level", "WAKE_LOG_LEVEL", "info",
       "debug, info, warn or error (lifecycle lines always print)"},
      {"registry-ca", "WAKE_REGISTRY_CA", "",
       "TLS to the registry: verify it with this CA (PEM file; default: the system's roots)"},
      {"registry-cert", "WAKE_REGISTRY_CERT", "",
       "mutual TLS to the registry: this runtime's certificate chain (PEM file)"},
      {"registry-key", "WAKE_REGISTRY_KEY", "",
       "mutual TLS to the registry: this runtime's private key (PEM file)"},
      {"registry-server-name", "WAKE_REGISTRY_SERVER_NAME", "",
       "name to check the registry's certificate against (default: the --registry host)"},
      {"registry-plaintext", "WAKE_REGISTRY_PLAINTEXT", "false",
       "reach the registry without TLS (development; only a loopback --registry)", true},
      {"registry-token-file", "WAKE_REGISTRY_TOKEN_FILE", "",
       "file holding this runtime's bearer token for the registry (role runtime)"},
  };
  for (common::FlagSpec& flag : common::ServerFlagSpecs()) flags.push_back(std::move(flag));
  return flags;
}

common::ConfigParser Parser() { return common::ConfigParser("runtime-service", Flags()); }

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
  if (*rescan != absl::ZeroDuration() &&
      (*rescan < absl::Milliseconds(100) || *rescan > absl::Hours(24))) {
    return absl::InvalidArgumentError(
        absl::StrCat("--rescan-interval: must be 0 (off) or between 100ms and 24h, got ",
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
  absl::StatusOr<common::ServerConfig> server =
      common::ParseServerConfig(*values, config.listen_address);
  if (!server.ok()) return server.status();
  config.server = *std::move(server);

  common::ClientConfig& registry = config.registry;
  registry.max_message_bytes = config.server.max_message_bytes;
  absl::StatusOr<bool> registry_plaintext = values->GetBool("registry-plaintext");
  if (!registry_plaintext.ok()) return registry_plaintext.status();
  registry.plaintext = *registry_plaintext;
  const std::string& ca = values->GetString("registry-ca");
  const std::string& cert = values->GetString("registry-cert");
  const std::string& key = values->GetString("registry-key");
  if (registry.plaintext) {
    if (!common::IsLoopbackAddress(config.registry_address)) {
      return absl::InvalidArgumentError(
          absl::StrCat("--registry-plaintext: only for a loopback --registry address, not \"",
                       config.registry_address, "\""));
    }
    if (!ca.empty() || !cert.empty() || !key.empty()) {
      return absl::InvalidArgumentError(
          "--registry-plaintext: cannot be combined with --registry-ca/-cert/-key");
    }
  } else {
    if (cert.empty() != key.empty()) {
      return absl::InvalidArgumentError("--registry-cert, --registry-key: give both or neither");
    }
    for (const auto& [flag, path, out] :
         {std::make_tuple("registry-ca", ca, &registry.ca_pem),
          std::make_tuple("registry-cert", cert, &registry.cert_pem),
          std::make_tuple("registry-key", key, &registry.key_pem)}) {
      if (path.empty()) continue;
      absl::StatusOr<std::string> pem = common::ReadFlagFile(flag, path, false);
      if (!pem.ok()) return pem.status();
      *out = *pem;
    }
    registry.server_name = values->GetString("registry-server-name");
  }
  if (const std::string& file = values->GetString("registry-token-file"); !file.empty()) {
    absl::StatusOr<std::string> token = common::ReadFlagFile("registry-token-file", file);
    if (!token.ok()) return token.status();
    if (token->empty()) {
      return absl::InvalidArgumentError(absl::StrCat("--registry-token-file: ", file, " is empty"));
    }
    registry.token = *token;
  }
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
