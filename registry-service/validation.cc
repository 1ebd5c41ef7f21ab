#include "registry-service/validation.h"

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/proto_time.h"
#include "common/status_util.h"
#include "common/text_check.h"
#include "google/protobuf/duration.pb.h"

namespace wake::registry {
namespace {

using common::InvalidField;

absl::Status Tenant(std::string* tenant) {
  if (tenant->empty()) {
    *tenant = kDefaultTenant;
    return absl::OkStatus();
  }
  return common::CheckText("tenant_id", *tenant, kMaxTenantBytes, /*required=*/true);
}

absl::Status Text(const std::string& field, const std::string& value, size_t max_bytes,
                  bool required) {
  return common::CheckText(field, value, max_bytes, required);
}

absl::Status Url(const std::string& field, const std::string& value) {
  return Text(field, value, kMaxUrlBytes, /*required=*/true);
}

absl::Status OptionalUrl(const std::string& field, const std::string& value) {
  return Text(field, value, kMaxUrlBytes, /*required=*/false);
}

absl::Status Op(const std::string& field, int op) {
  if (op == v1::INSERT || op == v1::UPDATE || op == v1::DELETE) return absl::OkStatus();
  return InvalidField(field, absl::StrCat("unknown op ", op, " (INSERT, UPDATE or DELETE)"));
}

// True when a string or key anywhere in `value` holds NUL, which jsonb cannot
// store. Protobuf's parser limits nesting (100 levels), so recursion is bounded.
bool HasNul(const google::protobuf::Value& value) {
  switch (value.kind_case()) {
    case google::protobuf::Value::kStringValue:
      return value.string_value().find('\0') != std::string::npos;
    case google::protobuf::Value::kStructValue:
      for (const auto& [key, item] : value.struct_value().fields()) {
        if (key.find('\0') != std::string::npos || HasNul(item)) return true;
      }
      return false;
    case google::protobuf::Value::kListValue:
      for (const google::protobuf::Value& item : value.list_value().values()) {
        if (HasNul(item)) return true;
      }
      return false;
    default:
      return false;
  }
}

absl::Status Value(const std::string& field, bool present, const google::protobuf::Value& value) {
  if (!present) return absl::OkStatus();
  if (value.ByteSizeLong() > kMaxValueBytes) {
    return InvalidField(field, absl::StrCat("larger than ", kMaxValueBytes, " bytes"));
  }
  if (HasNul(value)) {
    return InvalidField(field, "holds a NUL character (\\u0000), which cannot be stored");
  }
  return absl::OkStatus();
}

absl::Status Consistency(int consistency) {
  if (consistency == v1::CONSISTENCY_UNSPECIFIED || consistency == v1::STRONG ||
      consistency == v1::LOCAL) {
    return absl::OkStatus();
  }
  return InvalidField("consistency", absl::StrCat("unknown value ", consistency));
}

absl::Status Lease(const std::string& field, bool present,
                   const google::protobuf::Duration& duration, absl::Duration* lease) {
  if (!present) {
    *lease = kDefaultLease;
    return absl::OkStatus();
  }
  const absl::Duration d = common::FromProto(duration);
  if (d < absl::Seconds(1) || d > absl::Hours(1)) {
    return InvalidField(field, "must be between 1s and 1h");
  }
  *lease = d;
  return absl::OkStatus();
}

absl::Status Inbox(const v1::InboxFields& inbox) {
  for (const auto& [field, value] :
       {std::pair<const char*, const std::string*>{"inbox.from", &inbox.from()},
        {"inbox.from_principal", &inbox.from_principal()},
        {"inbox.from_agent", &inbox.from_agent()},
        {"inbox.message_type", &inbox.message_type()}}) {
    if (auto s = Text(field, *value, kMaxUrlBytes, false); !s.ok()) return s;
  }
  return Value("inbox.payload", inbox.has_payload(), inbox.payload());
}

}  // namespace

absl::Status ValidateRegisterWake(v1::RegisterWakeRequest& request) {
  if (auto s = Tenant(request.mutable_tenant_id()); !s.ok()) return s;
  if (auto s = Url("subscriber_url", request.subscriber_url()); !s.ok()) return s;
  if (auto s = Url("source_url", request.source_url()); !s.ok()) return s;
  const v1::Condition& condition = request.condition();
  switch (condition.kind_case()) {
    case v1::Condition::kRunFinished:
      break;
    case v1::Condition::kChange: {
      const v1::ChangeCondition& change = condition.change();
      if (change.collections_size() > kMaxCollections) {
        return InvalidField("condition.change.collections",
                            absl::StrCat("more than ", kMaxCollections, " entries"));
      }
      for (int i = 0; i < change.collections_size(); ++i) {
        if (auto s = Text(absl::StrCat("condition.change.collections[", i, "]"),
                          change.collections(i), kMaxCollectionBytes, /*required=*/true);
            !s.ok()) {
          return s;
        }
      }
      for (int i = 0; i < change.ops_size(); ++i) {
        if (auto s = Op(absl::StrCat("condition.change.ops[", i, "]"), change.ops(i)); !s.ok()) {
          return s;
        }
      }
      break;
    }
    case v1::Condition::KIND_NOT_SET:
      return InvalidField("condition", "required: set run_finished or change");
  }
  if (request.debounce_ms() < 0 || request.debounce_ms() > kMaxDebounceMs) {
    return InvalidField("debounce_ms", absl::StrCat("must be between 0 and ", kMaxDebounceMs));
  }
  if (request.timeout_ms() < 0) return InvalidField("timeout_ms", "must not be negative");
  return Text("manifest_key", request.manifest_key(), kMaxManifestKeyBytes, false);
}

absl::Status ValidateUnregisterWakes(v1::UnregisterWakesRequest& request) {
  if (auto s = Tenant(request.mutable_tenant_id()); !s.ok()) return s;
  switch (request.selector_case()) {
    case v1::UnregisterWakesRequest::kSubscriberManifest: {
      const auto& selector = request.subscriber_manifest();
      if (auto s = Url("subscriber_manifest.subscriber_url", selector.subscriber_url()); !s.ok()) {
        return s;
      }
      return Text("subscriber_manifest.manifest_key", selector.manifest_key(), kMaxManifestKeyBytes,
                  /*required=*/true);
    }
    case v1::UnregisterWakesRequest::kSubscriber:
      return Url("subscriber.subscriber_url", request.subscriber().subscriber_url());
    case v1::UnregisterWakesRequest::kSource:
      return Url("source.source_url", request.source().source_url());
    case v1::UnregisterWakesRequest::kSubscriberSource: {
      const auto& selector = request.subscriber_source();
      if (auto s = Url("subscriber_source.subscriber_url", selector.subscriber_url()); !s.ok()) {
        return s;
      }
      return Url("subscriber_source.source_url", selector.source_url());
    }
    case v1::UnregisterWakesRequest::SELECTOR_NOT_SET:
      break;
  }
  return InvalidField("selector",
                      "required: set subscriber_manifest, subscriber, source or subscriber_source");
}

absl::Status ValidateEvaluateRunFinished(v1::EvaluateRunFinishedRequest& request) {
  if (auto s = Tenant(request.mutable_tenant_id()); !s.ok()) return s;
  if (auto s = Url("source_url", request.source_url()); !s.ok()) return s;
  if (auto s = Text("run_key", request.run_key(), kMaxKeyBytes, true); !s.ok()) return s;
  if (request.status() != v1::COMPLETED && request.status() != v1::FAILED) {
    return InvalidField("status", absl::StrCat("must be COMPLETED or FAILED, got ",
                                               static_cast<int>(request.status())));
  }
  if (auto s = Value("value", request.has_value(), request.value()); !s.ok()) return s;
  if (auto s = Text("offset", request.offset(), kMaxKeyBytes, false); !s.ok()) return s;
  return Consistency(request.consistency());
}

absl::Status ValidateEvaluateChange(v1::EvaluateChangeRequest& request) {
  if (auto s = Tenant(request.mutable_tenant_id()); !s.ok()) return s;
  if (auto s = Url("source_url", request.source_url()); !s.ok()) return s;
  if (auto s = Text("collection", request.collection(), kMaxCollectionBytes, true); !s.ok()) {
    return s;
  }
  if (auto s = Op("op", request.op()); !s.ok()) return s;
  if (auto s = Text("key", request.key(), kMaxKeyBytes, true); !s.ok()) return s;
  if (auto s = Value("value", request.has_value(), request.value()); !s.ok()) return s;
  if (auto s = Value("old_value", request.has_old_value(), request.old_value()); !s.ok()) {
    return s;
  }
  if (request.has_inbox()) {
    if (auto s = Inbox(request.inbox()); !s.ok()) return s;
  }
  if (auto s = Text("offset", request.offset(), kMaxKeyBytes, false); !s.ok()) return s;
  return Consistency(request.consistency());
}

absl::Status ValidateListRegistrations(v1::ListRegistrationsRequest& request, int64_t* after_id) {
  if (auto s = Tenant(request.mutable_tenant_id()); !s.ok()) return s;
  if (auto s = OptionalUrl("source_url", request.source_url()); !s.ok()) return s;
  if (auto s = OptionalUrl("subscriber_url", request.subscriber_url()); !s.ok()) return s;
  if (request.page_size() < 0 || request.page_size() > kMaxPageSize) {
    return InvalidField("page_size", absl::StrCat("must be between 0 and ", kMaxPageSize));
  }
  if (request.page_size() == 0) request.set_page_size(kDefaultPageSize);
  *after_id = 0;
  if (!request.page_token().empty() &&
      (!absl::SimpleAtoi(request.page_token(), after_id) || *after_id < 0)) {
    return InvalidField("page_token", "not a token this service returned");
  }
  return Consistency(request.consistency());
}

absl::Status ValidateSubscribeChanges(v1::SubscribeChangesRequest& request) {
  if (auto s = Tenant(request.mutable_tenant_id()); !s.ok()) return s;
  if (request.from_offset().size() > 128) return InvalidField("from_offset", "too long");
  for (int i = 0; i < request.kinds_size(); ++i) {
    const int kind = request.kinds(i);
    if (kind != v1::ChangeEvent::REGISTRATION && kind != v1::ChangeEvent::WAKE &&
        kind != v1::ChangeEvent::CONTROL) {
      return InvalidField(absl::StrCat("kinds[", i, "]"), absl::StrCat("unknown kind ", kind));
    }
  }
  return absl::OkStatus();
}

// A claim's idempotency key: long enough to be random, and of characters
// that need no escaping anywhere it is logged or quoted.
absl::Status IdempotencyKey(const std::string& field, const std::string& key) {
  if (key.empty()) return absl::OkStatus();
  if (key.size() < 16 || key.size() > 128) {
    return InvalidField(field, absl::StrCat("must be 16 to 128 characters, got ", key.size()));
  }
  for (const char c : key) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '_' && c != '-') {
      return InvalidField(field, "may hold only A-Z, a-z, 0-9, '_' and '-'");
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateClaimWakes(v1::ClaimWakesRequest& request, absl::Duration* lease) {
  if (auto s = Tenant(request.mutable_tenant_id()); !s.ok()) return s;
  if (auto s = Url("stream", request.stream()); !s.ok()) return s;
  if (auto s = Text("runner_id", request.runner_id(), kMaxTenantBytes, true); !s.ok()) return s;
  if (auto s = Text("session_id", request.session_id(), kMaxTenantBytes, false); !s.ok()) {
    return s;
  }
  if (auto s = IdempotencyKey("idempotency_key", request.idempotency_key()); !s.ok()) return s;
  return Lease("lease", request.has_lease(), request.lease(), lease);
}

absl::Status ValidateAckWakes(v1::AckWakesRequest& request, absl::Duration* lease) {
  if (auto s = Tenant(request.mutable_tenant_id()); !s.ok()) return s;
  if (auto s = Url("stream", request.stream()); !s.ok()) return s;
  if (auto s = Text("claim_token", request.claim_token(), 128, true); !s.ok()) return s;
  for (int i = 0; i < request.wake_ids_size(); ++i) {
    if (request.wake_ids(i) <= 0) {
      return InvalidField(absl::StrCat("wake_ids[", i, "]"), "must be positive");
    }
  }
  // The next claim's holder, as ClaimWakes checks it.
  if (auto s = Text("runner_id", request.runner_id(), kMaxTenantBytes, request.claim_next());
      !s.ok()) {
    return s;
  }
  if (auto s = Text("session_id", request.session_id(), kMaxTenantBytes, false); !s.ok()) {
    return s;
  }
  return Lease("lease", request.has_lease(), request.lease(), lease);
}

namespace {

// Batches of the claim RPCs: 1 to kMaxBatchEntries entries, each checked by
// `validate`, whose error is prefixed with the entry ("claims[3].stream:").
template <typename Entry, typename Validate>
absl::Status ValidateEntries(const std::string& field,
                             google::protobuf::RepeatedPtrField<Entry>* entries,
                             std::vector<absl::Duration>* leases, Validate validate) {
  if (entries->empty()) return InvalidField(field, "required");
  if (entries->size() > kMaxBatchEntries) {
    return InvalidField(field, absl::StrCat("more than ", kMaxBatchEntries, " entries"));
  }
  leases->assign(entries->size(), kDefaultLease);
  for (int i = 0; i < entries->size(); ++i) {
    if (absl::Status s = validate(*entries->Mutable(i), &(*leases)[i]); !s.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(field, "[", i, "].", s.message()));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ValidateClaimStreams(v1::ClaimStreamsRequest& request,
                                  std::vector<absl::Duration>* leases) {
  return ValidateEntries("claims", request.mutable_claims(), leases, ValidateClaimWakes);
}

absl::Status ValidateAckClaims(v1::AckClaimsRequest& request, std::vector<absl::Duration>* leases) {
  return ValidateEntries("acks", request.mutable_acks(), leases, ValidateAckWakes);
}

absl::Status ValidateExtendClaims(v1::ExtendClaimsRequest& request, absl::Duration* lease) {
  if (request.claims_size() == 0) return InvalidField("claims", "required");
  if (request.claims_size() > 10000) return InvalidField("claims", "more than 10000 entries");
  for (int i = 0; i < request.claims_size(); ++i) {
    v1::ClaimRef* claim = request.mutable_claims(i);
    const std::string prefix = absl::StrCat("claims[", i, "].");
    if (claim->tenant_id().empty()) claim->set_tenant_id(kDefaultTenant);
    if (auto s = Text(prefix + "tenant_id", claim->tenant_id(), kMaxTenantBytes, true); !s.ok()) {
      return s;
    }
    if (auto s = Url(prefix + "stream", claim->stream()); !s.ok()) return s;
    if (auto s = Text(prefix + "claim_token", claim->claim_token(), 128, true); !s.ok()) return s;
  }
  return Lease("lease", request.has_lease(), request.lease(), lease);
}

absl::Status ValidateReleaseClaim(v1::ReleaseClaimRequest& request) {
  if (auto s = Tenant(request.mutable_tenant_id()); !s.ok()) return s;
  if (auto s = Url("stream", request.stream()); !s.ok()) return s;
  return Text("claim_token", request.claim_token(), 128, true);
}

}  // namespace wake::registry
