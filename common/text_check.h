// Checks for identifiers that reach keys, logs and SQL: tenant ids, stream
// names, runner and session ids. NUL and other control characters are refused
// because they end C strings (libpq truncates a parameter at NUL, so
// "acme\0x" would act on tenant "acme") and separate composite keys.
#pragma once

#include <cstddef>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace wake::common {

// True when `value` holds a byte below 0x20 or DEL (0x7f).
bool HasControlCharacter(absl::string_view value);

// INVALID_ARGUMENT naming `field` when `value` is empty and `required`, longer
// than `max_bytes`, or holds a control character.
absl::Status CheckText(const std::string& field, absl::string_view value, size_t max_bytes,
                       bool required);

}  // namespace wake::common
