#include "common/grpc_client.h"

#include <vector>

#include "grpcpp/support/client_interceptor.h"

namespace wake::common {
namespace {

// Adds the bearer token to every call's initial metadata. An interceptor
// rather than call credentials: gRPC sends call credentials only over TLS,
// and a loopback plaintext channel still needs the token.
class BearerInterceptor final : public grpc::experimental::Interceptor {
 public:
  explicit BearerInterceptor(const std::string* header) : header_(header) {}

  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(
            grpc::experimental::InterceptionHookPoints::PRE_SEND_INITIAL_METADATA)) {
      methods->GetSendInitialMetadata()->insert({"authorization", *header_});
    }
    methods->Proceed();
  }

 private:
  const std::string* header_;
};

class BearerInterceptorFactory final
    : public grpc::experimental::ClientInterceptorFactoryInterface {
 public:
  explicit BearerInterceptorFactory(std::string token) : header_("Bearer " + std::move(token)) {}

  grpc::experimental::Interceptor* CreateClientInterceptor(
      grpc::experimental::ClientRpcInfo* /*info*/) override {
    return new BearerInterceptor(&header_);
  }

 private:
  const std::string header_;  // Lives as long as the channel.
};

}  // namespace

std::shared_ptr<grpc::Channel> CreateClientChannel(const std::string& address,
                                                   const ClientConfig& config,
                                                   grpc::ChannelArguments args) {
  std::shared_ptr<grpc::ChannelCredentials> credentials;
  if (config.plaintext) {
    credentials = grpc::InsecureChannelCredentials();
  } else {
    grpc::SslCredentialsOptions tls;
    tls.pem_root_certs = config.ca_pem;
    tls.pem_private_key = config.key_pem;
    tls.pem_cert_chain = config.cert_pem;
    credentials = grpc::SslCredentials(tls);
    if (!config.server_name.empty()) {
      args.SetSslTargetNameOverride(config.server_name);
    }
  }
  args.SetMaxReceiveMessageSize(config.max_message_bytes);
  args.SetMaxSendMessageSize(config.max_message_bytes);
  std::vector<std::unique_ptr<grpc::experimental::ClientInterceptorFactoryInterface>> interceptors;
  if (!config.token.empty()) {
    interceptors.push_back(std::make_unique<BearerInterceptorFactory>(config.token));
  }
  return grpc::experimental::CreateCustomChannelWithInterceptors(address, credentials, args,
                                                                 std::move(interceptors));
}

}  // namespace wake::common
