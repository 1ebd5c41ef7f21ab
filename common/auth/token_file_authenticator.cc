#include "common/auth/token_file_authenticator.h"

#include <openssl/evp.h>

#include <fstream>
#include <sstream>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/logging.h"
#include "common/text_check.h"

namespace wake::common::auth {
namespace {

constexpr size_t kMaxTokenBytes = 4096;

bool IsHexSha256(absl::string_view text) {
  if (text.size() != 64) return false;
  for (char c : text) {
    if (!absl::ascii_isxdigit(c) || absl::ascii_isupper(c)) return false;
  }
  return true;
}

}  // namespace

std::string TokenHash(absl::string_view token) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  if (EVP_Digest(token.data(), token.size(), digest, &length, EVP_sha256(), nullptr) != 1) {
    return "";  // Matches no line: a hash is 64 hex digits.
  }
  return absl::BytesToHexString(absl::string_view(reinterpret_cast<const char*>(digest), length));
}

absl::StatusOr<TokenTable> ParseTokenFile(const std::string& text) {
  TokenTable table;
  int line_number = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++line_number;
    line = absl::StripAsciiWhitespace(line);
    if (line.empty() || line.front() == '#') continue;
    const std::vector<absl::string_view> fields =
        absl::StrSplit(line, absl::ByAnyChar(" \t"), absl::SkipEmpty());
    auto bad = [&](absl::string_view problem) {
      return absl::InvalidArgumentError(absl::StrCat("line ", line_number, ": ", problem));
    };
    if (fields.size() != 4 && fields.size() != 5) {
      return bad("expected <sha256-hex> <principal> <role> <tenants> [<expiry>]");
    }
    if (!IsHexSha256(fields[0])) return bad("the hash must be 64 lower-case hex digits");
    auto principal = std::make_shared<Principal>();
    principal->name = std::string(fields[1]);
    if (HasControlCharacter(principal->name)) return bad("control character in the principal");
    std::optional<Role> role = ParseRole(fields[2]);
    if (!role.has_value()) return bad("role must be client, runner, runtime or admin");
    principal->role = *role;
    if (fields[3] == "*") {
      principal->all_tenants = true;
    } else {
      for (absl::string_view tenant : absl::StrSplit(fields[3], ',')) {
        if (tenant.empty() || HasControlCharacter(tenant) || tenant == "*") {
          return bad("tenants: a comma-separated list of tenant ids, or *");
        }
        principal->tenants.insert(std::string(tenant));
      }
    }
    if (fields.size() == 5) {
      std::string error;
      if (!absl::ParseTime(absl::RFC3339_full, fields[4], &principal->expires_at, &error)) {
        return bad(absl::StrCat("expiry is not RFC 3339 (", error, ")"));
      }
    }
    if (!table.emplace(std::string(fields[0]), std::move(principal)).second) {
      return bad("the same token hash appears twice");
    }
  }
  return table;
}

absl::StatusOr<std::unique_ptr<TokenFileAuthenticator>> TokenFileAuthenticator::Create(
    std::string path, TimeSource& time, absl::Duration reload_check) {
  std::unique_ptr<TokenFileAuthenticator> authenticator(
      new TokenFileAuthenticator(std::move(path), time, reload_check));
  absl::MutexLock lock(&authenticator->mu_);
  if (absl::Status loaded = authenticator->Load(); !loaded.ok()) return loaded;
  return authenticator;
}

TokenFileAuthenticator::TokenFileAuthenticator(std::string path, TimeSource& time,
                                               absl::Duration reload_check)
    : path_(std::move(path)), time_(time), reload_check_(reload_check) {}

absl::Status TokenFileAuthenticator::Load() {
  mu_.AssertHeld();
  struct stat info;
  if (stat(path_.c_str(), &info) != 0) {
    return absl::NotFoundError(absl::StrCat("token file ", path_, ": cannot stat"));
  }
  std::ifstream in(path_);
  if (!in) return absl::NotFoundError(absl::StrCat("token file ", path_, ": cannot read"));
  std::stringstream text;
  text << in.rdbuf();
  absl::StatusOr<TokenTable> table = ParseTokenFile(text.str());
  if (!table.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("token file ", path_, ": ", table.status().message()));
  }
  table_ = std::make_shared<const TokenTable>(*std::move(table));
  mtime_ = info.st_mtim;
  size_ = info.st_size;
  checked_at_ = time_.MonotonicNow();
  return absl::OkStatus();
}

void TokenFileAuthenticator::MaybeReload() {
  absl::MutexLock lock(&mu_);
  const MonotonicTime now = time_.MonotonicNow();
  if (now - checked_at_ < ToChrono(reload_check_)) return;
  checked_at_ = now;
  struct stat info;
  if (stat(path_.c_str(), &info) != 0) return;  // Keep what we have.
  if (info.st_size == size_ && info.st_mtim.tv_sec == mtime_.tv_sec &&
      info.st_mtim.tv_nsec == mtime_.tv_nsec) {
    return;
  }
  if (absl::Status loaded = Load(); !loaded.ok()) {
    LogWarn("token_file_reload_failed", {{"error", std::string(loaded.message())}});
    // Do not try again until the file changes once more.
    mtime_ = info.st_mtim;
    size_ = info.st_size;
    return;
  }
  LogInfo("token_file_reloaded", {{"principals", table_->size()}});
}

absl::StatusOr<PrincipalPtr> TokenFileAuthenticator::Authenticate(
    const std::optional<absl::string_view>& authorization) {
  absl::StatusOr<absl::string_view> token = BearerToken(authorization);
  if (!token.ok()) return token.status();
  if (token->size() > kMaxTokenBytes) {
    return absl::UnauthenticatedError("unknown, revoked or expired token");
  }
  MaybeReload();
  std::shared_ptr<const TokenTable> table;
  {
    absl::MutexLock lock(&mu_);
    table = table_;
  }
  auto it = table->find(TokenHash(*token));
  // One message for every failure: a caller learns nothing about which.
  if (it == table->end() || it->second->expires_at <= time_.SystemNow()) {
    return absl::UnauthenticatedError("unknown, revoked or expired token");
  }
  return it->second;
}

}  // namespace wake::common::auth
