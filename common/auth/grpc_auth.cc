#include "common/auth/grpc_auth.h"

namespace wake::common::auth {

std::optional<absl::string_view> AuthorizationOf(const grpc::ServerContextBase& context) {
  const auto& metadata = context.client_metadata();
  auto it = metadata.find("authorization");
  if (it == metadata.end()) return std::nullopt;
  return absl::string_view(it->second.data(), it->second.size());
}

absl::StatusOr<PrincipalPtr> AuthenticateCall(Authenticator& authenticator,
                                              const grpc::ServerContextBase& context) {
  return authenticator.Authenticate(AuthorizationOf(context));
}

}  // namespace wake::common::auth
