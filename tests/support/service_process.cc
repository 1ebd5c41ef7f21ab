#include "tests/support/service_process.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "grpc/health/v1/health.grpc.pb.h"

namespace wake::testing {

namespace {

bool HasFlag(const std::vector<std::string>& args, std::initializer_list<const char*> prefixes) {
  for (const std::string& arg : args) {
    for (const char* prefix : prefixes) {
      if (absl::StartsWith(arg, prefix)) return true;
    }
  }
  return false;
}

}  // namespace

absl::StatusOr<ServiceProcess> StartService(
    const std::string& binary, std::vector<std::string> args,
    const std::map<std::string, std::optional<std::string>>& env, absl::Duration timeout) {
  if (!HasFlag(args, {"--listen"})) args.push_back("--listen=127.0.0.1:0");
  // The development setup unless the test configures TLS or tokens itself.
  if (!HasFlag(args, {"--tls-", "--plaintext"})) args.push_back("--plaintext");
  if (!HasFlag(args, {"--auth-tokens", "--no-auth"})) args.push_back("--no-auth");
  absl::StatusOr<std::unique_ptr<Subprocess>> process =
      Subprocess::Start(RunfilePath(binary), args, env);
  if (!process.ok()) return process.status();
  absl::StatusOr<std::string> line = (*process)->WaitForLog("event=serving", timeout);
  if (!line.ok()) return line.status();
  ServiceProcess service;
  service.address = LogValue(*line, "address");
  service.process = std::move(*process);
  return service;
}

absl::StatusOr<ServiceProcess> StartRegistry(const std::string& database_url,
                                             std::vector<std::string> extra_args) {
  extra_args.push_back(absl::StrCat("--database-url=", database_url));
  return StartService("registry-service/registry-service", std::move(extra_args));
}

absl::StatusOr<ServiceProcess> StartRuntime(const std::string& registry_address,
                                            std::vector<std::string> extra_args) {
  extra_args.push_back(absl::StrCat("--registry=", registry_address));
  if (!HasFlag(extra_args, {"--registry-plaintext", "--registry-ca", "--registry-cert"})) {
    extra_args.push_back("--registry-plaintext");
  }
  return StartService("runtime-service/runtime-service", std::move(extra_args));
}

std::shared_ptr<grpc::Channel> Connect(const std::string& address) {
  return grpc::CreateChannel(address, grpc::InsecureChannelCredentials());
}

absl::StatusOr<std::string> CheckHealth(const std::string& address, const std::string& service) {
  auto stub = grpc::health::v1::Health::NewStub(Connect(address));
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  grpc::health::v1::HealthCheckRequest request;
  request.set_service(service);
  grpc::health::v1::HealthCheckResponse response;
  grpc::Status status = stub->Check(&context, request, &response);
  if (!status.ok()) {
    return absl::Status(static_cast<absl::StatusCode>(status.error_code()), status.error_message());
  }
  return grpc::health::v1::HealthCheckResponse::ServingStatus_Name(response.status());
}

}  // namespace wake::testing
