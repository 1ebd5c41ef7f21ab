// Prometheus metrics of the real binaries: both services serve /metrics on
// --metrics-listen, and the counters and gauges move as wakes go through.
#include <map>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/sync/electric/curl_http_client.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/e2e/e2e_support.h"
#include "tests/support/service_process.h"
#include "tests/support/test_database.h"

namespace wake::testing {
namespace {

using ::testing::HasSubstr;

// The /metrics address a service logged (event=metrics_listening).
std::string MetricsAddress(const ServiceProcess& service) {
  absl::StatusOr<std::string> line =
      service.process->WaitForLog("event=metrics_listening", absl::Seconds(10));
  return line.ok() ? LogValue(*line, "address") : "";
}

// Scrapes `address`: every sample line, "name{labels}" -> value.
absl::StatusOr<std::map<std::string, double>> Scrape(const std::string& address,
                                                     std::string* text = nullptr) {
  sync::CurlHttpClient http(absl::Seconds(5));
  absl::StatusOr<sync::HttpResponse> response = http.Get(
      absl::StrCat("http://", address, "/metrics"), absl::Seconds(5), [] { return false; });
  if (!response.ok()) return response.status();
  if (response->status != 200) {
    return absl::UnknownError(absl::StrCat("HTTP ", response->status));
  }
  if (text != nullptr) *text = response->body;
  std::map<std::string, double> samples;
  for (absl::string_view line : absl::StrSplit(response->body, '\n')) {
    if (line.empty() || line[0] == '#') continue;
    const size_t space = line.rfind(' ');
    double value = 0;
    if (space == absl::string_view::npos || !absl::SimpleAtod(line.substr(space + 1), &value)) {
      continue;
    }
    samples[std::string(line.substr(0, space))] = value;
  }
  return samples;
}

TEST(MetricsTest, BothServicesServeMetricsThatMoveWithTheWakes) {
  auto db = TestDatabase::Create();
  ASSERT_TRUE(db.ok()) << db.status();
  auto registry = StartRegistry((*db)->url(), {"--metrics-listen=127.0.0.1:0"});
  ASSERT_TRUE(registry.ok()) << registry.status();
  auto runtime = StartRuntime(registry->address, {"--metrics-listen=127.0.0.1:0"});
  ASSERT_TRUE(runtime.ok()) << runtime.status();
  const std::string registry_metrics = MetricsAddress(*registry);
  const std::string runtime_metrics = MetricsAddress(*runtime);
  ASSERT_FALSE(registry_metrics.empty()) << registry->process->ReadLog();
  ASSERT_FALSE(runtime_metrics.empty()) << runtime->process->ReadLog();

  Ledger ledger;
  RecordingRunnerOptions options;
  options.runner.runner_id = "runner-1";
  auto runner = RecordingRunner::Connect(Connect(runtime->address), options, ledger);
  ASSERT_TRUE(runner.ok()) << runner.status();
  RegistryClient client(registry->address);
  std::set<int64_t> ids;
  for (int i = 0; i < 5; ++i) {
    const std::string child = absl::StrCat("/child/", i);
    ASSERT_TRUE(client.RegisterRunFinished("/parent", child).ok());
    absl::StatusOr<std::vector<v1::Wake>> wakes = client.FinishRun(child, "r");
    ASSERT_TRUE(wakes.ok()) << wakes.status();
    for (int64_t id : WakeIds(*wakes)) ids.insert(id);
  }
  ASSERT_TRUE(ledger.AwaitAcked(ids, absl::Seconds(20)));

  std::string text;
  absl::StatusOr<std::map<std::string, double>> reg = Scrape(registry_metrics, &text);
  ASSERT_TRUE(reg.ok()) << reg.status();
  EXPECT_THAT(text, HasSubstr("# TYPE wake_rpc_duration_seconds histogram"));
  EXPECT_EQ((*reg)["wake_rpc_requests_total{method=\"RegisterWake\",service=\"wake.v1."
                   "WakeRegistry\"}"],
            5);
  EXPECT_EQ((*reg)["wake_rpc_requests_total{method=\"EvaluateRunFinished\",service=\"wake.v1."
                   "WakeRegistry\"}"],
            5);
  // The runtime carries its claims in ClaimStreams batches.
  EXPECT_GE((*reg)["wake_rpc_requests_total{method=\"ClaimStreams\",service=\"wake.v1."
                   "WakeRegistry\"}"],
            1);
  EXPECT_EQ((*reg)["wake_registry_registrations"], 5);
  EXPECT_EQ((*reg)["wake_registry_sync_up_to_date"], 1);
  EXPECT_EQ((*reg)["wake_registry_barriers_total{outcome=\"ok\"}"], 5);
  EXPECT_EQ((*reg)["wake_registry_barrier_duration_seconds_count"], 5);
  EXPECT_GE((*reg)["wake_registry_sync_lag_seconds_count"], 10);  // Registrations and wakes.
  EXPECT_GE((*reg)["wake_registry_group_commit_batch_size_count{kind=\"persist\"}"], 1);
  // Gauges read from PostgreSQL: present, and nothing is left.
  for (const char* gauge : {"wake_registry_stored_wakes", "wake_registry_live_claims",
                            "wake_registry_debounce_windows"}) {
    ASSERT_EQ(reg->count(gauge), 1u) << gauge << " missing from\n" << text;
    EXPECT_EQ(reg->at(gauge), 0) << gauge;
  }

  // An error is counted by its code.
  v1::EvaluateRunFinishedRequest bad;  // No source_url.
  auto stub = v1::WakeRegistry::NewStub(Connect(registry->address));
  grpc::ClientContext context;
  v1::EvaluateRunFinishedResponse ignored;
  ASSERT_EQ(stub->EvaluateRunFinished(&context, bad, &ignored).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  reg = Scrape(registry_metrics);
  ASSERT_TRUE(reg.ok());
  EXPECT_EQ((*reg)["wake_rpc_errors_total{code=\"INVALID_ARGUMENT\",method=\"EvaluateRunFinished\","
                   "service=\"wake.v1.WakeRegistry\"}"],
            1);

  absl::StatusOr<std::map<std::string, double>> rt = Scrape(runtime_metrics);
  ASSERT_TRUE(rt.ok()) << rt.status();
  EXPECT_EQ((*rt)["wake_runtime_connected_runners"], 1);
  EXPECT_EQ((*rt)["wake_runtime_registry_up_to_date"], 1);
  EXPECT_GE((*rt)["wake_runtime_claims_total{outcome=\"dispatched\"}"], 1);
  EXPECT_EQ((*rt)["wake_runtime_claims_total{outcome=\"acked\"}"],
            (*rt)["wake_runtime_claims_total{outcome=\"dispatched\"}"]);
  EXPECT_EQ((*rt)["wake_runtime_dispatch_latency_seconds_count"],
            (*rt)["wake_runtime_claims_total{outcome=\"dispatched\"}"]);
  EXPECT_GE((*rt)["wake_runtime_registry_events_total"], 5);
  ASSERT_EQ(rt->count("wake_runtime_rescan_found_total"), 1u);
  EXPECT_EQ(rt->at("wake_runtime_rescan_found_total"), 0);
  EXPECT_GE((*rt)["wake_rpc_requests_total{method=\"AckClaim\",service=\"wake.v1.WakeRuntime\"}"],
            1);
  (*runner)->Disconnect();
}

}  // namespace
}  // namespace wake::testing
