// Per-RPC metrics of a gRPC server, kept by a server interceptor so that no
// handler has to remember them:
//   wake_rpc_requests_total{service,method}        calls received
//   wake_rpc_errors_total{service,method,code}     calls answered with a non-OK status
//   wake_rpc_duration_seconds{service,method}      unary calls, arrival to status
// (streams are counted, not timed: their length is the client's choice).
#pragma once

#include <memory>

#include "common/metrics.h"
#include "grpcpp/support/server_interceptor.h"

namespace wake::common {

// `metrics` must outlive the server.
std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface> RpcMetricsInterceptor(
    Metrics& metrics);

}  // namespace wake::common
