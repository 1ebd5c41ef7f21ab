#include "common/metrics.h"

#include "common/rpc_metrics.h"
#include "gmock/gmock.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpcpp/grpcpp.h"
#include "grpcpp/health_check_service_interface.h"
#include "gtest/gtest.h"
#include "prometheus/counter.h"

namespace wake::common {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

TEST(MetricsTest, SampledValuesAreReadAtEachRender) {
  Metrics metrics;
  double runners = 2;
  metrics.AddSampledGauge("wake_runtime_connected_runners", "Runner sessions.",
                          [&] { return runners; });
  metrics.AddSampledCounter("wake_runtime_claims_total", "Claims by outcome.", [] { return 7; },
                            {{"outcome", "acked"}});
  metrics.AddSampledCounter("wake_runtime_claims_total", "ignored", [] { return 3; },
                            {{"outcome", "released"}});
  std::string text = metrics.Render();
  EXPECT_THAT(text, HasSubstr("# TYPE wake_runtime_connected_runners gauge\n"
                              "wake_runtime_connected_runners 2\n"));
  EXPECT_THAT(text, HasSubstr("# HELP wake_runtime_claims_total Claims by outcome.\n"
                              "# TYPE wake_runtime_claims_total counter\n"
                              "wake_runtime_claims_total{outcome=\"acked\"} 7\n"
                              "wake_runtime_claims_total{outcome=\"released\"} 3\n"));
  runners = 5;
  EXPECT_THAT(metrics.Render(), HasSubstr("wake_runtime_connected_runners 5\n"));
}

TEST(MetricsTest, RegistryMetricsRenderToo) {
  Metrics metrics;
  prometheus::BuildCounter()
      .Name("wake_registry_barriers_total")
      .Help("Read barriers.")
      .Register(metrics.registry())
      .Add({{"outcome", "ok"}})
      .Increment(3);
  EXPECT_THAT(metrics.Render(), HasSubstr("wake_registry_barriers_total{outcome=\"ok\"} 3\n"));
}

TEST(MetricsTest, ServeRejectsAMalformedAddress) {
  Metrics metrics;
  absl::Status status = metrics.Serve("nowhere");
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("--metrics-listen"));
  EXPECT_TRUE(metrics.address().empty());
}

TEST(RpcMetricsTest, CountsCallsErrorsByCodeAndTimesUnaryCalls) {
  Metrics metrics;
  grpc::EnableDefaultHealthCheckService(true);
  grpc::ServerBuilder builder;
  std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> creators;
  creators.push_back(RpcMetricsInterceptor(metrics));
  builder.experimental().SetInterceptorCreators(std::move(creators));
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  ASSERT_NE(server, nullptr);
  server->GetHealthCheckService()->SetServingStatus("known", true);
  auto stub = grpc::health::v1::Health::NewStub(server->InProcessChannel(grpc::ChannelArguments()));
  for (const char* service : {"known", "known", "unknown"}) {
    grpc::ClientContext context;
    grpc::health::v1::HealthCheckRequest request;
    request.set_service(service);
    grpc::health::v1::HealthCheckResponse response;
    (void)stub->Check(&context, request, &response);
  }
  const std::string text = metrics.Render();
  EXPECT_THAT(text, HasSubstr("wake_rpc_requests_total{method=\"Check\",service=\"grpc.health.v1."
                              "Health\"} 3\n"));
  EXPECT_THAT(text, HasSubstr("wake_rpc_errors_total{code=\"NOT_FOUND\",method=\"Check\","
                              "service=\"grpc.health.v1.Health\"} 1\n"));
  EXPECT_THAT(text, Not(HasSubstr("code=\"OK\"")));
  EXPECT_THAT(text, HasSubstr("wake_rpc_duration_seconds_count{method=\"Check\",service=\"grpc."
                              "health.v1.Health\"} 3\n"));
  server->Shutdown();
}

}  // namespace
}  // namespace wake::common
