// Who is calling: the principal a credential names, its role, and the
// tenants it may act for. A request's tenant_id selects among these; it never
// grants one (docs/security.md, "Authorization: roles and tenants").
#pragma once

#include <memory>
#include <optional>
#include <string>

#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace wake::common::auth {

enum class Role {
  kClient,   // Registers, unregisters, evaluates, lists, follows its tenants.
  kRunner,   // Streams, acks and heartbeats claims of its tenants (runtime).
  kRuntime,  // The runtime service: claim RPCs and the change stream of the registry.
  kAdmin,    // Everything, within its tenants.
};

// "client", "runner", "runtime", "admin".
absl::string_view RoleName(Role role);
std::optional<Role> ParseRole(absl::string_view name);

struct Principal {
  std::string name;
  Role role = Role::kClient;
  // Every tenant ("*" in a token file).
  bool all_tenants = false;
  absl::flat_hash_set<std::string> tenants;
  // When the credential stops being valid (InfiniteFuture when it does not).
  absl::Time expires_at = absl::InfiniteFuture();

  bool Holds(const std::string& tenant) const { return all_tenants || tenants.contains(tenant); }
};

using PrincipalPtr = std::shared_ptr<const Principal>;

// PERMISSION_DENIED unless the principal's role is one of `roles`;
// `method` names the call in the message.
absl::Status RequireRole(const Principal& principal, std::initializer_list<Role> roles,
                         absl::string_view method);

// PERMISSION_DENIED naming `field` unless the principal holds `tenant`.
absl::Status RequireTenant(const Principal& principal, const std::string& tenant,
                           absl::string_view field = "tenant_id");

}  // namespace wake::common::auth
