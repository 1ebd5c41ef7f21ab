// The gRPC side of authentication: reads a call's credential and asks the
// Authenticator who is calling.
#pragma once

#include "common/auth/authenticator.h"
#include "grpcpp/grpcpp.h"

namespace wake::common::auth {

// The call's `authorization` metadata, or nullopt.
std::optional<absl::string_view> AuthorizationOf(const grpc::ServerContextBase& context);

// Authenticate(AuthorizationOf(context)).
absl::StatusOr<PrincipalPtr> AuthenticateCall(Authenticator& authenticator,
                                              const grpc::ServerContextBase& context);

}  // namespace wake::common::auth
