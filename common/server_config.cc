#include "common/server_config.h"

#include <fstream>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace wake::common {

std::vector<FlagSpec> ServerFlagSpecs() {
  return {
      {"tls-cert", "WAKE_TLS_CERT", "", "TLS: the server's certificate chain (PEM file)"},
      {"tls-key", "WAKE_TLS_KEY", "", "TLS: the server's private key (PEM file)"},
      {"tls-client-ca", "WAKE_TLS_CLIENT_CA", "",
       "mutual TLS: require client certificates signed by this CA (PEM file)"},
      {"plaintext", "WAKE_PLAINTEXT", "false",
       "serve without TLS (development; only on a loopback --listen address)", true},
      {"auth-tokens", "WAKE_AUTH_TOKENS", "",
       "token file: SHA-256 of each bearer token with its principal, role and tenants "
       "(docs/security.md)"},
      {"no-auth", "WAKE_NO_AUTH", "false",
       "accept every call as an admin of every tenant (development; only on a loopback "
       "--listen address)",
       true},
      {"public-health", "WAKE_PUBLIC_HEALTH", "true",
       "health and reflection answer without a credential (false needs TLS)"},
      {"max-message-bytes", "WAKE_MAX_MESSAGE_BYTES", "4194304",
       "largest gRPC message received or sent"},
      {"max-concurrent-streams", "WAKE_MAX_CONCURRENT_STREAMS", "1000",
       "concurrent calls on one connection"},
      {"memory-quota-bytes", "WAKE_MEMORY_QUOTA_BYTES", "1073741824",
       "memory gRPC may use for connections and calls"},
  };
}

bool IsLoopbackAddress(const std::string& address) {
  const size_t colon = address.rfind(':');
  const std::string host = colon == std::string::npos ? address : address.substr(0, colon);
  return absl::StartsWith(host, "127.") || host == "localhost" || host == "[::1]";
}

absl::StatusOr<std::string> ReadFlagFile(const std::string& flag, const std::string& path,
                                         bool trim_newline) {
  std::ifstream in(path);
  if (!in) return absl::InvalidArgumentError(absl::StrCat("--", flag, ": cannot read ", path));
  std::stringstream text;
  text << in.rdbuf();
  std::string out = text.str();
  if (trim_newline && !out.empty() && out.back() == '\n') out.pop_back();
  if (trim_newline && !out.empty() && out.back() == '\r') out.pop_back();
  return out;
}

absl::StatusOr<ServerConfig> ParseServerConfig(const ConfigValues& values,
                                               const std::string& listen_address) {
  ServerConfig config;
  const bool loopback = IsLoopbackAddress(listen_address);
  absl::StatusOr<bool> plaintext = values.GetBool("plaintext");
  if (!plaintext.ok()) return plaintext.status();
  config.plaintext = *plaintext;
  const std::string& cert = values.GetString("tls-cert");
  const std::string& key = values.GetString("tls-key");
  const std::string& client_ca = values.GetString("tls-client-ca");
  if (config.plaintext) {
    if (!loopback) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--plaintext: only for a loopback --listen address (127.0.0.0/8, [::1]), not \"",
          listen_address, "\"; use --tls-cert and --tls-key"));
    }
    if (!cert.empty() || !key.empty() || !client_ca.empty()) {
      return absl::InvalidArgumentError("--plaintext: cannot be combined with --tls-* flags");
    }
  } else {
    if (cert.empty() || key.empty()) {
      return absl::InvalidArgumentError(
          "--tls-cert, --tls-key: required (or --plaintext for a loopback-only development "
          "server)");
    }
    absl::StatusOr<std::string> cert_pem = ReadFlagFile("tls-cert", cert, false);
    if (!cert_pem.ok()) return cert_pem.status();
    absl::StatusOr<std::string> key_pem = ReadFlagFile("tls-key", key, false);
    if (!key_pem.ok()) return key_pem.status();
    config.tls_cert_pem = *cert_pem;
    config.tls_key_pem = *key_pem;
    if (!client_ca.empty()) {
      absl::StatusOr<std::string> ca_pem = ReadFlagFile("tls-client-ca", client_ca, false);
      if (!ca_pem.ok()) return ca_pem.status();
      config.tls_client_ca_pem = *ca_pem;
    }
  }

  absl::StatusOr<bool> no_auth = values.GetBool("no-auth");
  if (!no_auth.ok()) return no_auth.status();
  config.no_auth = *no_auth;
  config.auth_tokens_path = values.GetString("auth-tokens");
  if (config.no_auth) {
    if (!loopback) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--no-auth: only for a loopback --listen address, not \"", listen_address, "\""));
    }
    if (!config.auth_tokens_path.empty()) {
      return absl::InvalidArgumentError("--no-auth: cannot be combined with --auth-tokens");
    }
  } else if (config.auth_tokens_path.empty()) {
    return absl::InvalidArgumentError(
        "--auth-tokens: required (or --no-auth for a loopback-only development server)");
  }
  absl::StatusOr<bool> public_health = values.GetBool("public-health");
  if (!public_health.ok()) return public_health.status();
  config.public_health = *public_health;
  if (!config.public_health && (config.plaintext || config.no_auth)) {
    return absl::InvalidArgumentError(
        "--public-health=false: needs TLS and --auth-tokens (plaintext or --no-auth servers "
        "cannot check credentials of health and reflection calls)");
  }

  auto bounded = [&](const std::string& name, int64_t min, int64_t max,
                     int64_t* out) -> absl::Status {
    absl::StatusOr<int64_t> value = values.GetInt(name);
    if (!value.ok()) return value.status();
    if (*value < min || *value > max) {
      return absl::InvalidArgumentError(
          absl::StrCat("--", name, ": must be between ", min, " and ", max));
    }
    *out = *value;
    return absl::OkStatus();
  };
  int64_t value = 0;
  if (auto s = bounded("max-message-bytes", 64 << 10, 1 << 30, &value); !s.ok()) return s;
  config.max_message_bytes = static_cast<int>(value);
  if (auto s = bounded("max-concurrent-streams", 1, 1 << 20, &value); !s.ok()) return s;
  config.max_concurrent_streams = static_cast<int>(value);
  if (auto s = bounded("memory-quota-bytes", 16 << 20, int64_t{1} << 40, &value); !s.ok()) {
    return s;
  }
  config.memory_quota_bytes = value;
  return config;
}

}  // namespace wake::common
