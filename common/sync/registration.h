// Domain rows of the synced collections: wake registrations and pending-wake
// markers, as every sync source delivers them and the registry matches them.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace wake::sync {

// Same numbers as wake.v1.Op.
enum class ChangeOp { kInsert = 1, kUpdate = 2, kDelete = 3 };

// "insert", "update", "delete".
absl::string_view ChangeOpName(ChangeOp op);

enum class ConditionKind { kRunFinished, kChange };

struct Condition {
  ConditionKind kind = ConditionKind::kRunFinished;
  // kChange only; empty = every collection / op. Kept sorted and unique so
  // equal conditions have equal JSON (the unique key includes it).
  std::vector<std::string> collections;
  std::vector<ChangeOp> ops;

  bool operator==(const Condition& other) const {
    return kind == other.kind && collections == other.collections && ops == other.ops;
  }
};

// Canonical JSON stored in wake_registrations.condition:
//   {"on":"runFinished"}
//   {"on":"change","collections":["inbox"],"ops":["insert","update"]}
// (keys in that order, arrays sorted; Postgres jsonb re-orders keys anyway.)
std::string ConditionToJson(const Condition& condition);

// Parses the stored JSON (also accepts jsonb's own key order and spacing).
absl::StatusOr<Condition> ConditionFromJson(absl::string_view json);

// Sorts and de-duplicates collections and ops.
void Canonicalize(Condition& condition);

struct Registration {
  int64_t id = 0;
  std::string tenant_id;
  std::string subscriber_url;
  std::string source_url;
  Condition condition;
  int32_t debounce_ms = 0;
  int32_t timeout_ms = 0;
  bool one_shot = false;
  bool timeout_consumed = false;
  bool include_response = true;
  std::string manifest_key;
  absl::Time created_at;

  bool operator==(const Registration& other) const;
  bool operator!=(const Registration& other) const { return !(*this == other); }
};

// The unique identity of a registration (everything in the unique index).
std::string IdentityKey(const Registration& registration);

// The part of a `wakes` row the registry follows: which streams have pending
// (unclaimed) wakes.
struct WakeRow {
  int64_t id = 0;
  std::string tenant_id;
  std::string stream;
  int64_t registration_id = 0;
  // True when claim_token is NULL.
  bool pending = true;
};

}  // namespace wake::sync
