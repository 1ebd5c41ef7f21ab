// Channels from one of our services to another (the runtime to the registry):
// TLS (optionally with a client certificate) or, on loopback only, plaintext;
// the caller's bearer token on every call; the same message size limit as
// the servers.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "grpcpp/grpcpp.h"

namespace wake::common {

struct ClientConfig {
  bool plaintext = false;
  // PEM: roots to verify the server (empty = the system's), and a client
  // certificate chain and key for mutual TLS (both or neither).
  std::string ca_pem;
  std::string cert_pem;
  std::string key_pem;
  // Overrides the name checked against the server certificate.
  std::string server_name;
  // Sent as "authorization: Bearer <token>" on every call; empty = none.
  std::string token;
  int max_message_bytes = 4 << 20;
};

// A channel to `address` with `args` plus what `config` says.
std::shared_ptr<grpc::Channel> CreateClientChannel(const std::string& address,
                                                   const ClientConfig& config,
                                                   grpc::ChannelArguments args);

}  // namespace wake::common
