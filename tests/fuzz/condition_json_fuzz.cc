// Fuzzes the condition JSON stored in wake_registrations.condition (it comes
// back through both sync sources). An accepted condition survives a round
// trip through ConditionToJson unchanged.
#include <cstdint>
#include <cstdlib>

#include "common/sync/registration.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace wake::sync;  // NOLINT: a fuzz target.
  const absl::string_view input(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<Condition> condition = ConditionFromJson(input);
  if (!condition.ok()) return 0;
  const std::string json = ConditionToJson(*condition);
  absl::StatusOr<Condition> again = ConditionFromJson(json);
  if (!again.ok() || ConditionToJson(*again) != json) std::abort();
  return 0;
}
