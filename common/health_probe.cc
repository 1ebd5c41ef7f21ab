// wake-health-probe: asks a gRPC server's standard health service whether a
// service is SERVING. It is the health check of the container images (no
// grpcurl or shell tools in them): exit 0 when SERVING, 1 otherwise (not
// serving, unknown service, unreachable), 2 for a bad command line.
//
//   wake-health-probe [--timeout=3s] [--tls-ca=FILE [--tls-server-name=NAME]]
//                     HOST:PORT [SERVICE]
// Without the flags, WAKE_PROBE_TLS_CA and WAKE_PROBE_SERVER_NAME give them
// (so an image's HEALTHCHECK line needs no per-deployment arguments).
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/time/time.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpcpp/grpcpp.h"

namespace {

constexpr char kUsage[] =
    "usage: wake-health-probe [--timeout=3s] [--tls-ca=FILE [--tls-server-name=NAME]] "
    "HOST:PORT [SERVICE]\n";

int Usage(const std::string& why) {
  std::fprintf(stderr, "wake-health-probe: %s\n%s", why.c_str(), kUsage);
  return 2;
}

int Run(const std::vector<std::string>& args) {
  absl::Duration timeout = absl::Seconds(3);
  auto env = [](const char* name) {
    const char* value = std::getenv(name);
    return std::string(value == nullptr ? "" : value);
  };
  std::string ca_file = env("WAKE_PROBE_TLS_CA");
  std::string server_name = env("WAKE_PROBE_SERVER_NAME");
  std::vector<std::string> positional;
  for (const std::string& arg : args) {
    if (absl::StartsWith(arg, "--timeout=")) {
      if (!absl::ParseDuration(arg.substr(10), &timeout) || timeout <= absl::ZeroDuration()) {
        return Usage("--timeout: not a positive duration");
      }
    } else if (absl::StartsWith(arg, "--tls-ca=")) {
      ca_file = arg.substr(9);
    } else if (absl::StartsWith(arg, "--tls-server-name=")) {
      server_name = arg.substr(18);
    } else if (arg == "--help" || arg == "-h") {
      std::fputs(kUsage, stdout);
      return 0;
    } else if (absl::StartsWith(arg, "--")) {
      return Usage("unknown flag " + arg);
    } else {
      positional.push_back(arg);
    }
  }
  if (positional.empty() || positional.size() > 2) return Usage("HOST:PORT is required");
  const std::string& address = positional[0];
  const std::string service = positional.size() > 1 ? positional[1] : "";

  std::shared_ptr<grpc::ChannelCredentials> credentials = grpc::InsecureChannelCredentials();
  grpc::ChannelArguments channel_args;
  if (!ca_file.empty()) {
    std::ifstream in(ca_file);
    if (!in) return Usage("--tls-ca: cannot read " + ca_file);
    std::stringstream pem;
    pem << in.rdbuf();
    grpc::SslCredentialsOptions options;
    options.pem_root_certs = pem.str();
    credentials = grpc::SslCredentials(options);
    if (!server_name.empty()) channel_args.SetSslTargetNameOverride(server_name);
  }
  auto stub = grpc::health::v1::Health::NewStub(
      grpc::CreateCustomChannel(address, credentials, channel_args));
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + absl::ToChronoMilliseconds(timeout));
  grpc::health::v1::HealthCheckRequest request;
  request.set_service(service);
  grpc::health::v1::HealthCheckResponse response;
  const grpc::Status status = stub->Check(&context, request, &response);
  if (!status.ok()) {
    std::printf("%s: %s\n", address.c_str(), status.error_message().c_str());
    return 1;
  }
  std::printf("%s\n",
              grpc::health::v1::HealthCheckResponse::ServingStatus_Name(response.status()).c_str());
  return response.status() == grpc::health::v1::HealthCheckResponse::SERVING ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) { return Run(std::vector<std::string>(argv + 1, argv + argc)); }
