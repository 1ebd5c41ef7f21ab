#include "common/text_check.h"

#include "absl/strings/str_cat.h"
#include "common/status_util.h"

namespace wake::common {

bool HasControlCharacter(absl::string_view value) {
  for (char c : value) {
    const unsigned char byte = static_cast<unsigned char>(c);
    if (byte < 0x20 || byte == 0x7f) return true;
  }
  return false;
}

absl::Status CheckText(const std::string& field, absl::string_view value, size_t max_bytes,
                       bool required) {
  if (value.empty()) return required ? InvalidField(field, "required") : absl::OkStatus();
  if (value.size() > max_bytes) {
    return InvalidField(field, absl::StrCat("longer than ", max_bytes, " bytes"));
  }
  if (HasControlCharacter(value)) {
    return InvalidField(field, "contains control characters (NUL, 0x01-0x1f or 0x7f)");
  }
  return absl::OkStatus();
}

}  // namespace wake::common
