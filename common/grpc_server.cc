#include "common/grpc_server.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "grpc/health/v1/health.pb.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/health_check_service_interface.h"

namespace wake::common {
namespace {

// Checks the credential of calls to services other than wake.v1's (health,
// reflection), which have no handler of ours to do it. The wake services'
// handlers check their own calls (they need the principal).
class OtherServicesAuth final : public grpc::AuthMetadataProcessor {
 public:
  explicit OtherServicesAuth(auth::Authenticator& authenticator) : authenticator_(authenticator) {}

  bool IsBlocking() const override { return false; }

  grpc::Status Process(const InputMetadata& metadata, grpc::AuthContext* /*context*/,
                       OutputMetadata* /*consumed*/, OutputMetadata* /*response*/) override {
    auto path = metadata.find(":path");
    if (path != metadata.end() &&
        absl::StartsWith(absl::string_view(path->second.data(), path->second.size()),
                         "/wake.v1.")) {
      return grpc::Status::OK;
    }
    std::optional<absl::string_view> authorization;
    if (auto it = metadata.find("authorization"); it != metadata.end()) {
      authorization = absl::string_view(it->second.data(), it->second.size());
    }
    absl::StatusOr<auth::PrincipalPtr> principal = authenticator_.Authenticate(authorization);
    if (!principal.ok()) {
      return grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                          std::string(principal.status().message()));
    }
    return grpc::Status::OK;
  }

 private:
  auth::Authenticator& authenticator_;
};

}  // namespace

absl::StatusOr<StartedServer> StartGrpcServer(const std::string& listen_address,
                                              const std::vector<grpc::Service*>& services,
                                              const std::vector<std::string>& health_names,
                                              const ServerConfig& config,
                                              auth::Authenticator* authenticator,
                                              InterceptorFactories interceptors) {
  grpc::EnableDefaultHealthCheckService(true);
  // The built-in health service carries no protobuf descriptor; touching ours
  // keeps it linked and in the generated pool, where reflection finds it.
  (void)grpc::health::v1::HealthCheckRequest::descriptor();
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  int port = 0;
  std::shared_ptr<grpc::ServerCredentials> credentials;
  if (config.plaintext) {
    credentials = grpc::InsecureServerCredentials();
  } else {
    grpc::SslServerCredentialsOptions tls;
    tls.pem_key_cert_pairs.push_back({config.tls_key_pem, config.tls_cert_pem});
    if (!config.tls_client_ca_pem.empty()) {
      tls.pem_root_certs = config.tls_client_ca_pem;
      tls.client_certificate_request = GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY;
    }
    credentials = grpc::SslServerCredentials(tls);
    if (!config.public_health && authenticator != nullptr) {
      credentials->SetAuthMetadataProcessor(std::make_shared<OtherServicesAuth>(*authenticator));
    }
  }
  builder.AddListeningPort(listen_address, credentials, &port);
  for (grpc::Service* service : services) builder.RegisterService(service);
  // Limits: no message larger than both sides accept (the runtime's channel
  // to the registry uses the same size), a bounded number of calls per
  // connection, and bounded memory for all connections together.
  builder.SetMaxReceiveMessageSize(config.max_message_bytes);
  builder.SetMaxSendMessageSize(config.max_message_bytes);
  builder.AddChannelArgument(GRPC_ARG_MAX_CONCURRENT_STREAMS, config.max_concurrent_streams);
  grpc::ResourceQuota quota("wake-server");
  quota.Resize(static_cast<size_t>(config.memory_quota_bytes));
  builder.SetResourceQuota(quota);
  if (!interceptors.empty()) builder.experimental().SetInterceptorCreators(std::move(interceptors));
  // Keep long-lived streams healthy across idle NATs and detect dead peers.
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS, 30000);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 10000);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  // Keepalive enforcement: a client pinging more often than every 5 s
  // without data gets GOAWAY after two strikes (gRPC's default).
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 5000);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MAX_PING_STRIKES, 2);
  StartedServer started;
  started.server = builder.BuildAndStart();
  if (started.server == nullptr || port == 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot listen on ", listen_address, " (address in use or not local?)"));
  }
  started.address = absl::StrCat(listen_address.substr(0, listen_address.rfind(':')), ":", port);
  SetServing(*started.server, health_names, false);
  return started;
}

void SetServing(grpc::Server& server, const std::vector<std::string>& health_names, bool serving) {
  grpc::HealthCheckServiceInterface* health = server.GetHealthCheckService();
  if (health == nullptr) return;
  health->SetServingStatus(serving);
  for (const std::string& name : health_names) health->SetServingStatus(name, serving);
}

}  // namespace wake::common
