#include "common/sync/registration.h"

#include <algorithm>
#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"

namespace wake::sync {

absl::string_view ChangeOpName(ChangeOp op) {
  switch (op) {
    case ChangeOp::kInsert:
      return "insert";
    case ChangeOp::kUpdate:
      return "update";
    case ChangeOp::kDelete:
      return "delete";
  }
  return "insert";
}

void Canonicalize(Condition& condition) {
  std::sort(condition.collections.begin(), condition.collections.end());
  condition.collections.erase(
      std::unique(condition.collections.begin(), condition.collections.end()),
      condition.collections.end());
  std::sort(condition.ops.begin(), condition.ops.end());
  condition.ops.erase(std::unique(condition.ops.begin(), condition.ops.end()), condition.ops.end());
}

std::string ConditionToJson(const Condition& condition) {
  if (condition.kind == ConditionKind::kRunFinished) return R"({"on":"runFinished"})";
  nlohmann::json collections = nlohmann::json::array();
  for (const std::string& c : condition.collections) collections.push_back(c);
  nlohmann::json ops = nlohmann::json::array();
  for (ChangeOp op : condition.ops) ops.push_back(std::string(ChangeOpName(op)));
  return absl::StrCat(R"({"on":"change","collections":)", collections.dump(), R"(,"ops":)",
                      ops.dump(), "}");
}

absl::StatusOr<Condition> ConditionFromJson(absl::string_view json) {
  // Nearly every stored condition is this one, in jsonb's spacing or ours:
  // every replicated row and every write result passes through here.
  if (json == R"({"on": "runFinished"})" || json == R"({"on":"runFinished"})") {
    return Condition{};
  }
  nlohmann::json parsed = nlohmann::json::parse(json.begin(), json.end(), nullptr,
                                                /*allow_exceptions=*/false);
  if (parsed.is_discarded() || !parsed.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat("condition: not a JSON object: ", json));
  }
  auto on = parsed.find("on");
  if (on == parsed.end() || !on->is_string()) {
    return absl::InvalidArgumentError("condition: missing \"on\"");
  }
  Condition condition;
  const std::string kind = on->get<std::string>();
  if (kind == "runFinished") {
    condition.kind = ConditionKind::kRunFinished;
    return condition;
  }
  if (kind != "change") {
    return absl::InvalidArgumentError(absl::StrCat("condition: unknown kind \"", kind, "\""));
  }
  condition.kind = ConditionKind::kChange;
  if (auto it = parsed.find("collections"); it != parsed.end() && !it->is_null()) {
    if (!it->is_array()) return absl::InvalidArgumentError("condition.collections: not an array");
    for (const auto& c : *it) {
      if (!c.is_string()) {
        return absl::InvalidArgumentError("condition.collections: entries must be strings");
      }
      condition.collections.push_back(c.get<std::string>());
    }
  }
  if (auto it = parsed.find("ops"); it != parsed.end() && !it->is_null()) {
    if (!it->is_array()) return absl::InvalidArgumentError("condition.ops: not an array");
    for (const auto& o : *it) {
      const std::string name = o.is_string() ? o.get<std::string>() : "";
      if (name == "insert") {
        condition.ops.push_back(ChangeOp::kInsert);
      } else if (name == "update") {
        condition.ops.push_back(ChangeOp::kUpdate);
      } else if (name == "delete") {
        condition.ops.push_back(ChangeOp::kDelete);
      } else {
        return absl::InvalidArgumentError(absl::StrCat("condition.ops: unknown op ", o.dump()));
      }
    }
  }
  Canonicalize(condition);
  return condition;
}

bool Registration::operator==(const Registration& other) const {
  return id == other.id && tenant_id == other.tenant_id && subscriber_url == other.subscriber_url &&
         source_url == other.source_url && condition == other.condition &&
         debounce_ms == other.debounce_ms && timeout_ms == other.timeout_ms &&
         one_shot == other.one_shot && timeout_consumed == other.timeout_consumed &&
         include_response == other.include_response && manifest_key == other.manifest_key &&
         created_at == other.created_at;
}

std::string IdentityKey(const Registration& r) {
  // Length-prefixed so no choice of strings can collide.
  std::string key;
  for (const std::string* part :
       {&r.tenant_id, &r.subscriber_url, &r.source_url, &r.manifest_key}) {
    absl::StrAppend(&key, part->size(), ":", *part, "|");
  }
  const std::string condition = ConditionToJson(r.condition);
  absl::StrAppend(&key, condition.size(), ":", condition, "|", r.one_shot ? 1 : 0, "|",
                  r.debounce_ms, "|", r.timeout_ms);
  return key;
}

}  // namespace wake::sync
