#include "common/auth/authenticator.h"

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"

namespace wake::common::auth {

OpenAuthenticator::OpenAuthenticator()
    : anonymous_(std::make_shared<const Principal>(Principal{
          "anonymous", Role::kAdmin, /*all_tenants=*/true, {}, absl::InfiniteFuture()})) {}

absl::StatusOr<PrincipalPtr> OpenAuthenticator::Authenticate(
    const std::optional<absl::string_view>& /*authorization*/) {
  return anonymous_;
}

absl::StatusOr<absl::string_view> BearerToken(
    const std::optional<absl::string_view>& authorization) {
  if (!authorization.has_value() || authorization->empty()) {
    return absl::UnauthenticatedError(
        "missing credential: send metadata \"authorization: Bearer <token>\"");
  }
  constexpr absl::string_view kScheme = "bearer ";
  if (authorization->size() <= kScheme.size() ||
      !absl::StartsWithIgnoreCase(*authorization, kScheme)) {
    return absl::UnauthenticatedError(
        "malformed credential: the authorization metadata must be \"Bearer <token>\"");
  }
  absl::string_view token = absl::StripAsciiWhitespace(authorization->substr(kScheme.size()));
  if (token.empty()) return absl::UnauthenticatedError("malformed credential: empty token");
  return token;
}

}  // namespace wake::common::auth
