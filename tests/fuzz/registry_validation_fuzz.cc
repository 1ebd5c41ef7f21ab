// Fuzzes the registry's request validators: the first byte picks the request
// type, the rest is parsed as that protobuf. Validation must not crash, and a
// request it accepts must satisfy what the store relies on.
#include <cstdint>
#include <cstdlib>
#include <string>

#include "absl/time/time.h"
#include "common/text_check.h"
#include "registry-service/validation.h"

namespace {

using namespace wake;  // NOLINT: a fuzz target.

void Require(bool condition) {
  if (!condition) std::abort();
}

// An accepted tenant is never empty and holds no control character.
void CheckTenant(const std::string& tenant) {
  Require(!tenant.empty() && tenant.size() <= registry::kMaxTenantBytes &&
          !common::HasControlCharacter(tenant));
}

template <typename Request, typename Validate>
void Run(const uint8_t* data, size_t size, Validate validate) {
  Request request;
  if (!request.ParseFromArray(data, static_cast<int>(size))) return;
  Request copy = request;
  if (!validate(request).ok()) return;
  CheckTenant(request.tenant_id());
  // Validating again accepts and changes nothing (defaults are filled once).
  copy = request;
  Require(validate(copy).ok());
  Require(copy.SerializeAsString() == request.SerializeAsString());
}

// A batch: accepted means 1 to kMaxBatchEntries entries, each with its
// lease in range and a valid tenant; validating again changes nothing.
template <typename Request, typename Validate, typename Entries>
void RunBatch(const uint8_t* data, size_t size, Validate validate, Entries entries) {
  Request request;
  if (!request.ParseFromArray(data, static_cast<int>(size))) return;
  std::vector<absl::Duration> leases;
  if (!validate(request, &leases).ok()) return;
  const auto list = entries(request);
  Require(list.size() >= 1 && list.size() <= registry::kMaxBatchEntries &&
          leases.size() == static_cast<size_t>(list.size()));
  for (const auto& entry : list) CheckTenant(entry.tenant_id());
  for (const absl::Duration lease : leases) {
    Require(lease >= absl::Seconds(1) && lease <= absl::Hours(1));
  }
  Request copy = request;
  Require(validate(copy, &leases).ok());
  Require(copy.SerializeAsString() == request.SerializeAsString());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const uint8_t kind = data[0] % 10;
  // Kinds 6 and 7 (claims, acks) check their batched RPC when data[0] / 10
  // is odd (corpus entries for the single RPCs start with a byte below 10).
  const bool batch = (data[0] / 10) % 2 == 1;
  ++data;
  --size;
  absl::Duration lease;
  int64_t after_id = 0;
  switch (kind) {
    case 0:
      Run<v1::RegisterWakeRequest>(data, size, [](auto& r) {
        absl::Status s = registry::ValidateRegisterWake(r);
        if (s.ok()) {
          Require(!common::HasControlCharacter(r.subscriber_url()));
          Require(!common::HasControlCharacter(r.source_url()));
        }
        return s;
      });
      break;
    case 1:
      Run<v1::UnregisterWakesRequest>(data, size, registry::ValidateUnregisterWakes);
      break;
    case 2:
      Run<v1::EvaluateRunFinishedRequest>(data, size, registry::ValidateEvaluateRunFinished);
      break;
    case 3:
      Run<v1::EvaluateChangeRequest>(data, size, registry::ValidateEvaluateChange);
      break;
    case 4:
      Run<v1::ListRegistrationsRequest>(data, size, [&](auto& r) {
        absl::Status s = registry::ValidateListRegistrations(r, &after_id);
        if (s.ok()) Require(after_id >= 0 && r.page_size() > 0);
        return s;
      });
      break;
    case 5:
      Run<v1::SubscribeChangesRequest>(data, size, registry::ValidateSubscribeChanges);
      break;
    case 6:
      if (batch) {
        RunBatch<v1::ClaimStreamsRequest>(data, size, registry::ValidateClaimStreams,
                                          [](const auto& r) { return r.claims(); });
        break;
      }
      Run<v1::ClaimWakesRequest>(data, size, [&](auto& r) {
        absl::Status s = registry::ValidateClaimWakes(r, &lease);
        if (s.ok()) Require(lease >= absl::Seconds(1) && lease <= absl::Hours(1));
        return s;
      });
      break;
    case 7:
      if (batch) {
        RunBatch<v1::AckClaimsRequest>(data, size, registry::ValidateAckClaims,
                                       [](const auto& r) { return r.acks(); });
        break;
      }
      Run<v1::AckWakesRequest>(data, size, [&](auto& r) {
        absl::Status s = registry::ValidateAckWakes(r, &lease);
        if (s.ok()) Require(lease >= absl::Seconds(1) && lease <= absl::Hours(1));
        return s;
      });
      break;
    case 8: {
      v1::ExtendClaimsRequest request;
      if (!request.ParseFromArray(data, static_cast<int>(size))) break;
      if (!registry::ValidateExtendClaims(request, &lease).ok()) break;
      for (const v1::ClaimRef& claim : request.claims()) CheckTenant(claim.tenant_id());
      break;
    }
    default:
      Run<v1::ReleaseClaimRequest>(data, size, registry::ValidateReleaseClaim);
  }
  return 0;
}
