#include "common/rpc_metrics.h"

#include <chrono>
#include <string>

#include "absl/strings/str_split.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"

namespace wake::common {
namespace {

using Families =
    std::tuple<prometheus::Family<prometheus::Counter>*, prometheus::Family<prometheus::Counter>*,
               prometheus::Family<prometheus::Histogram>*>;

class Interceptor final : public grpc::experimental::Interceptor {
 public:
  Interceptor(const Families& families, grpc::experimental::ServerRpcInfo* info)
      : families_(families),
        unary_(info->type() == grpc::experimental::ServerRpcInfo::Type::UNARY) {
    // "/wake.v1.WakeRegistry/RegisterWake" -> service, method.
    std::vector<std::string> parts = absl::StrSplit(info->method(), '/', absl::SkipEmpty());
    service_ = parts.size() == 2 ? parts[0] : "";
    method_ = parts.empty() ? info->method() : parts.back();
  }

  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    using Point = grpc::experimental::InterceptionHookPoints;
    if (methods->QueryInterceptionHookPoint(Point::POST_RECV_INITIAL_METADATA)) {
      started_ = std::chrono::steady_clock::now();
      std::get<0>(families_)->Add({{"service", service_}, {"method", method_}}).Increment();
    }
    if (methods->QueryInterceptionHookPoint(Point::PRE_SEND_STATUS)) {
      const grpc::Status status = methods->GetSendStatus();
      if (!status.ok()) {
        std::get<1>(families_)
            ->Add({{"service", service_}, {"method", method_}, {"code", CodeName(status)}})
            .Increment();
      }
      if (unary_) {
        const std::chrono::duration<double> took = std::chrono::steady_clock::now() - started_;
        std::get<2>(families_)
            ->Add({{"service", service_}, {"method", method_}}, LatencyBuckets())
            .Observe(took.count());
      }
    }
    methods->Proceed();
  }

 private:
  static std::string CodeName(const grpc::Status& status) {
    switch (status.error_code()) {
      case grpc::StatusCode::CANCELLED:
        return "CANCELLED";
      case grpc::StatusCode::UNKNOWN:
        return "UNKNOWN";
      case grpc::StatusCode::INVALID_ARGUMENT:
        return "INVALID_ARGUMENT";
      case grpc::StatusCode::DEADLINE_EXCEEDED:
        return "DEADLINE_EXCEEDED";
      case grpc::StatusCode::NOT_FOUND:
        return "NOT_FOUND";
      case grpc::StatusCode::ALREADY_EXISTS:
        return "ALREADY_EXISTS";
      case grpc::StatusCode::PERMISSION_DENIED:
        return "PERMISSION_DENIED";
      case grpc::StatusCode::RESOURCE_EXHAUSTED:
        return "RESOURCE_EXHAUSTED";
      case grpc::StatusCode::FAILED_PRECONDITION:
        return "FAILED_PRECONDITION";
      case grpc::StatusCode::ABORTED:
        return "ABORTED";
      case grpc::StatusCode::OUT_OF_RANGE:
        return "OUT_OF_RANGE";
      case grpc::StatusCode::UNIMPLEMENTED:
        return "UNIMPLEMENTED";
      case grpc::StatusCode::INTERNAL:
        return "INTERNAL";
      case grpc::StatusCode::UNAVAILABLE:
        return "UNAVAILABLE";
      case grpc::StatusCode::DATA_LOSS:
        return "DATA_LOSS";
      case grpc::StatusCode::UNAUTHENTICATED:
        return "UNAUTHENTICATED";
      default:
        return "OK";
    }
  }

  const Families families_;
  const bool unary_;
  std::string service_;
  std::string method_;
  std::chrono::steady_clock::time_point started_ = std::chrono::steady_clock::now();
};

class Factory final : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  explicit Factory(Metrics& metrics)
      : families_(&prometheus::BuildCounter()
                       .Name("wake_rpc_requests_total")
                       .Help("gRPC calls received, by service and method.")
                       .Register(metrics.registry()),
                  &prometheus::BuildCounter()
                       .Name("wake_rpc_errors_total")
                       .Help("gRPC calls answered with a non-OK status, by status code.")
                       .Register(metrics.registry()),
                  &prometheus::BuildHistogram()
                       .Name("wake_rpc_duration_seconds")
                       .Help("Time from a unary call's arrival to its status.")
                       .Register(metrics.registry())) {}

  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override {
    return new Interceptor(families_, info);
  }

 private:
  const Families families_;
};

}  // namespace

std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface> RpcMetricsInterceptor(
    Metrics& metrics) {
  return std::make_unique<Factory>(metrics);
}

}  // namespace wake::common
