// Starts a gRPC server the way both services need it: the given services plus
// the standard health service and server reflection (so grpcurl and ghz work
// without proto files).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/auth/authenticator.h"
#include "common/server_config.h"
#include "grpcpp/grpcpp.h"
#include "grpcpp/support/server_interceptor.h"

namespace wake::common {

struct StartedServer {
  std::unique_ptr<grpc::Server> server;
  // The bound address, with the real port when the flag asked for port 0.
  std::string address;
};

using InterceptorFactories =
    std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>>;

// Binds `listen_address` (host:port) with TLS or plaintext as `config` says,
// applies its limits, and starts serving. Health starts NOT_SERVING for ""
// and every name in `health_names`. The services authenticate their own
// calls; with config.public_health false, `authenticator` (which must outlive
// the server) also guards health and reflection. Every call passes through
// `interceptors` (e.g. RpcMetricsInterceptor), in order, after it.
absl::StatusOr<StartedServer> StartGrpcServer(const std::string& listen_address,
                                              const std::vector<grpc::Service*>& services,
                                              const std::vector<std::string>& health_names,
                                              const ServerConfig& config,
                                              auth::Authenticator* authenticator,
                                              InterceptorFactories interceptors = {});

// Sets the health status of "" and every name in `health_names`.
void SetServing(grpc::Server& server, const std::vector<std::string>& health_names, bool serving);

}  // namespace wake::common
