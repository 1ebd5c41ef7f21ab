// Turns the credential a call presents into a Principal. The gRPC adapters
// pass the call's `authorization` metadata ("Bearer <token>"); nothing else
// of the request is trusted for identity.
#pragma once

#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/auth/principal.h"

namespace wake::common::auth {

class Authenticator {
 public:
  virtual ~Authenticator() = default;
  // `authorization` is the metadata value, or nullopt when the call sent
  // none. UNAUTHENTICATED when it is missing, malformed, unknown or expired.
  virtual absl::StatusOr<PrincipalPtr> Authenticate(
      const std::optional<absl::string_view>& authorization) = 0;
};

using AuthenticatorPtr = std::unique_ptr<Authenticator>;

// For --no-auth (loopback development only): every call, with or without a
// credential, is the admin principal "anonymous" holding every tenant.
class OpenAuthenticator final : public Authenticator {
 public:
  OpenAuthenticator();
  absl::StatusOr<PrincipalPtr> Authenticate(
      const std::optional<absl::string_view>& authorization) override;

 private:
  const PrincipalPtr anonymous_;
};

// The token of "Bearer <token>" (scheme case-insensitive), or
// UNAUTHENTICATED.
absl::StatusOr<absl::string_view> BearerToken(
    const std::optional<absl::string_view>& authorization);

}  // namespace wake::common::auth
