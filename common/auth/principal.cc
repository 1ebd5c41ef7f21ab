#include "common/auth/principal.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace wake::common::auth {

absl::string_view RoleName(Role role) {
  switch (role) {
    case Role::kClient:
      return "client";
    case Role::kRunner:
      return "runner";
    case Role::kRuntime:
      return "runtime";
    case Role::kAdmin:
      return "admin";
  }
  return "unknown";
}

std::optional<Role> ParseRole(absl::string_view name) {
  for (Role role : {Role::kClient, Role::kRunner, Role::kRuntime, Role::kAdmin}) {
    if (RoleName(role) == name) return role;
  }
  return std::nullopt;
}

absl::Status RequireRole(const Principal& principal, std::initializer_list<Role> roles,
                         absl::string_view method) {
  for (Role role : roles) {
    if (principal.role == role) return absl::OkStatus();
  }
  std::string allowed = absl::StrJoin(
      roles, " or ", [](std::string* out, Role role) { absl::StrAppend(out, RoleName(role)); });
  return absl::PermissionDeniedError(absl::StrCat(method, " needs the role ", allowed,
                                                  "; principal \"", principal.name, "\" is a ",
                                                  RoleName(principal.role)));
}

absl::Status RequireTenant(const Principal& principal, const std::string& tenant,
                           absl::string_view field) {
  if (principal.Holds(tenant)) return absl::OkStatus();
  return absl::PermissionDeniedError(absl::StrCat(field, ": principal \"", principal.name,
                                                  "\" does not hold tenant \"", tenant, "\""));
}

}  // namespace wake::common::auth
