// Starts registry-service / runtime-service binaries for end-to-end tests and
// waits until they serve (health SERVING), on real ports chosen by the kernel.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "grpcpp/grpcpp.h"
#include "tests/support/subprocess.h"

namespace wake::testing {

struct ServiceProcess {
  std::unique_ptr<Subprocess> process;
  std::string address;  // host:port it listens on.
};

// Starts the binary at runfile `binary` with `args` (plus --listen=127.0.0.1:0
// unless args set --listen, and --plaintext and --no-auth unless args set
// TLS or tokens) and waits for its "event=serving" log line. StartRuntime
// adds --registry-plaintext unless args set TLS to the registry.
absl::StatusOr<ServiceProcess> StartService(
    const std::string& binary, std::vector<std::string> args,
    const std::map<std::string, std::optional<std::string>>& env = {},
    absl::Duration timeout = absl::Seconds(60));

absl::StatusOr<ServiceProcess> StartRegistry(const std::string& database_url,
                                             std::vector<std::string> extra_args = {});
absl::StatusOr<ServiceProcess> StartRuntime(const std::string& registry_address,
                                            std::vector<std::string> extra_args = {});

// grpc.health.v1.Health/Check of `service` ("" = the server): "SERVING",
// "NOT_SERVING", ... or the RPC error.
absl::StatusOr<std::string> CheckHealth(const std::string& address, const std::string& service);

std::shared_ptr<grpc::Channel> Connect(const std::string& address);

}  // namespace wake::testing
