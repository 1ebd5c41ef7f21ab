// Helpers shared by the two halves of PostgresWakeStore; see store_rows.h.
#include "registry-service/store_rows.h"

#include "absl/strings/str_cat.h"
#include "common/proto_time.h"
#include "registry-service/postgres_wake_store.h"

namespace wake::registry::store_internal {

void AppendJsonString(std::string* out, absl::string_view text) {
  out->push_back('"');
  for (char c : text) {
    switch (c) {
      case '"':
        out->append("\\\"");
        break;
      case '\\':
        out->append("\\\\");
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          absl::StrAppend(out, "\\u00", absl::Hex(static_cast<unsigned char>(c), absl::kZeroPad2));
        } else {
          out->push_back(c);
        }
    }
  }
  out->push_back('"');
}

absl::Time FromMicros(int64_t micros) { return absl::FromUnixMicros(micros); }

absl::StatusOr<v1::Wake> RowToWake(const pqxx::row& r) {
  v1::Wake wake;
  wake.set_id(r[0].as<int64_t>());
  wake.set_tenant_id(r[1].c_str());
  wake.set_stream(r[2].c_str());
  wake.set_registration_id(r[3].as<int64_t>());
  wake.set_source_event_key(r[4].c_str());
  absl::StatusOr<v1::WakeMessage> message = WakeMessageFromJson(r[5].c_str());
  if (!message.ok()) return message.status();
  *wake.mutable_message() = std::move(*message);
  v1::RunStatus status = v1::RUN_STATUS_UNSPECIFIED;
  if (!r[6].is_null()) v1::RunStatus_Parse(r[6].c_str(), &status);
  wake.set_run_finished_status(status);
  wake.set_include_response(r[7].as<bool>());
  common::ToProto(FromMicros(r[8].as<int64_t>()), wake.mutable_created_at());
  return wake;
}

int64_t LeaseMillis(absl::Duration lease) { return absl::ToInt64Milliseconds(lease); }

}  // namespace wake::registry::store_internal
