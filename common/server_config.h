// What both services' gRPC servers share in their configuration: transport
// security (TLS, optionally mutual), how callers are authenticated, and the
// limits that keep hostile or oversized traffic from stalling a server.
// Plaintext and --no-auth exist for development and are refused unless the
// server listens on loopback only.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/config.h"

namespace wake::common {

struct ServerConfig {
  // TLS unless plaintext: the server's certificate chain and key (PEM), and,
  // for mutual TLS, the CA whose client certificates are required.
  bool plaintext = false;
  std::string tls_cert_pem;
  std::string tls_key_pem;
  std::string tls_client_ca_pem;
  // Bearer tokens are checked against this token file unless no_auth.
  bool no_auth = false;
  std::string auth_tokens_path;
  // Health and reflection answer without a credential (TLS servers can
  // require one for them too).
  bool public_health = true;
  // Largest message received or sent (both directions, every method).
  int max_message_bytes = 4 << 20;
  // Concurrent calls (HTTP/2 streams) on one connection.
  int max_concurrent_streams = 1000;
  // Memory gRPC may use for this server's connections and calls.
  int64_t memory_quota_bytes = int64_t{1} << 30;
};

// The flags behind ServerConfig, for a service's flag list.
std::vector<FlagSpec> ServerFlagSpecs();

// Reads them (and the PEM files they name). `listen_address` is checked
// against --plaintext and --no-auth.
absl::StatusOr<ServerConfig> ParseServerConfig(const ConfigValues& values,
                                               const std::string& listen_address);

// True for 127.0.0.0/8, [::1] and localhost listen addresses (host:port).
bool IsLoopbackAddress(const std::string& address);

// The contents of a file named by `flag` (e.g. a secret kept out of `ps`);
// one trailing newline is dropped. INVALID_ARGUMENT naming the flag.
absl::StatusOr<std::string> ReadFlagFile(const std::string& flag, const std::string& path,
                                         bool trim_newline = true);

}  // namespace wake::common
