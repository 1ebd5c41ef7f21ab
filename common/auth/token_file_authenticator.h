// Bearer tokens checked against a token file of SHA-256 hashes (docs/security.md).
//
// Each line: `<sha256 of the token, hex> <principal> <role> <tenants> [<expiry>]`
// where tenants is a comma-separated list or "*" (every tenant) and expiry is
// RFC 3339 (e.g. 2026-01-01T00:00:00Z). Blank lines and lines starting with
// '#' are ignored. The file holds no usable secret: tokens are 256-bit random
// strings, so a fast hash suffices, and reading the file reveals no token.
// The file is read again when its modification time or size changes (looked
// at no more than once per reload_check); a file that no longer parses keeps
// the previous table and is logged.
#pragma once

#include <sys/stat.h>

#include <memory>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "common/auth/authenticator.h"
#include "common/time_source.h"

namespace wake::common::auth {

// Principals by the hex SHA-256 of their token.
using TokenTable = absl::flat_hash_map<std::string, PrincipalPtr>;

// Parses token file text; INVALID_ARGUMENT naming the line of the first error.
absl::StatusOr<TokenTable> ParseTokenFile(const std::string& text);

// Lower-case hex SHA-256 of `token` (OpenSSL).
std::string TokenHash(absl::string_view token);

class TokenFileAuthenticator final : public Authenticator {
 public:
  // Reads `path`; fails (INVALID_ARGUMENT, NOT_FOUND) when it cannot be used.
  static absl::StatusOr<std::unique_ptr<TokenFileAuthenticator>> Create(
      std::string path, TimeSource& time, absl::Duration reload_check = absl::Seconds(1));

  absl::StatusOr<PrincipalPtr> Authenticate(
      const std::optional<absl::string_view>& authorization) override;

 private:
  TokenFileAuthenticator(std::string path, TimeSource& time, absl::Duration reload_check);
  absl::Status Load();
  void MaybeReload();

  const std::string path_;
  TimeSource& time_;
  const absl::Duration reload_check_;
  absl::Mutex mu_;
  std::shared_ptr<const TokenTable> table_ ABSL_GUARDED_BY(mu_);
  MonotonicTime checked_at_ ABSL_GUARDED_BY(mu_);
  struct timespec mtime_ ABSL_GUARDED_BY(mu_) = {};
  off_t size_ ABSL_GUARDED_BY(mu_) = -1;
};

}  // namespace wake::common::auth
