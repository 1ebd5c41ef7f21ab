// Fuzzes the runtime's request validation and conversion: the first byte
// picks the request type, the rest is parsed as that protobuf. Accepted
// requests hold no control characters in their ids.
#include <cstdint>
#include <cstdlib>

#include "common/text_check.h"
#include "runtime-service/runtime_validation.h"

namespace {

using namespace wake;  // NOLINT: a fuzz target.

void Require(bool condition) {
  if (!condition) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const uint8_t kind = data[0] % 3;
  ++data;
  --size;
  if (kind == 0) {
    v1::StreamWakeClaimsRequest request;
    if (!request.ParseFromArray(data, static_cast<int>(size))) return 0;
    absl::StatusOr<runtime::RunnerSpec> spec = runtime::ToRunnerSpec(request);
    if (!spec.ok()) return 0;
    Require(!spec->tenant_id.empty() && !common::HasControlCharacter(spec->tenant_id));
    Require(!common::HasControlCharacter(spec->runner_id));
    Require(!common::HasControlCharacter(spec->session_id));
    for (const std::string& prefix : spec->stream_prefixes) {
      Require(!common::HasControlCharacter(prefix));
    }
    Require(spec->max_in_flight >= 1 && spec->max_in_flight <= runtime::kMaxMaxInFlight);
  } else if (kind == 1) {
    v1::AckClaimRequest request;
    if (!request.ParseFromArray(data, static_cast<int>(size))) return 0;
    absl::StatusOr<runtime::AckRequest> ack = runtime::ToAckRequest(request);
    if (!ack.ok()) return 0;
    Require(!ack->tenant_id.empty() && !common::HasControlCharacter(ack->tenant_id));
    Require(!common::HasControlCharacter(ack->stream));
    for (int64_t id : ack->wake_ids) Require(id > 0);
  } else {
    v1::HeartbeatRequest request;
    if (!request.ParseFromArray(data, static_cast<int>(size))) return 0;
    if (!runtime::ValidateHeartbeat(request).ok()) return 0;
    Require(!common::HasControlCharacter(request.session_id()));
  }
  return 0;
}
