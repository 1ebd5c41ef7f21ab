// Fuzzes the token file parser and the bearer token parsing of every call's
// authorization metadata (the one part of the services an unauthenticated
// caller reaches).
#include <cstdint>
#include <cstdlib>
#include <string>

#include "common/auth/token_file_authenticator.h"
#include "common/text_check.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace wake::common::auth;  // NOLINT: a fuzz target.
  const std::string input(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<TokenTable> table = ParseTokenFile(input);
  if (table.ok()) {
    for (const auto& [hash, principal] : *table) {
      if (hash.size() != 64 || principal->name.empty() ||
          wake::common::HasControlCharacter(principal->name)) {
        std::abort();
      }
    }
  }
  absl::StatusOr<absl::string_view> token = BearerToken(absl::string_view(input));
  if (token.ok() && token->empty()) std::abort();
  if (TokenHash(input).size() != 64) std::abort();
  return 0;
}
