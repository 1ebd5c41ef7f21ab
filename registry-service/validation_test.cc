#include "registry-service/validation.h"

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/status_matchers.h"

namespace wake::registry {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;
using ::wake::testing::IsOk;
using ::wake::testing::StatusIs;

v1::RegisterWakeRequest ValidRegister() {
  v1::RegisterWakeRequest request;
  request.set_subscriber_url("/parent/1");
  request.set_source_url("/child/1");
  request.mutable_condition()->mutable_run_finished();
  return request;
}

#define EXPECT_FIELD_ERROR(expr, field) \
  EXPECT_THAT(expr, StatusIs(absl::StatusCode::kInvalidArgument, StartsWith(field)))

TEST(ValidationTest, RegisterFillsTheDefaultTenant) {
  v1::RegisterWakeRequest request = ValidRegister();
  EXPECT_THAT(ValidateRegisterWake(request), IsOk());
  EXPECT_EQ(request.tenant_id(), "default");
}

TEST(ValidationTest, TenantsAndIdsWithControlCharactersAreRefusedByName) {
  const std::string nul("acme\0evil", 9);
  v1::RegisterWakeRequest request = ValidRegister();
  request.set_tenant_id(nul);
  EXPECT_FIELD_ERROR(ValidateRegisterWake(request), "tenant_id: contains control");

  v1::SubscribeChangesRequest subscribe;
  subscribe.set_tenant_id("t\n");
  EXPECT_FIELD_ERROR(ValidateSubscribeChanges(subscribe), "tenant_id: contains control");

  v1::ClaimWakesRequest claim;
  claim.set_stream("/s");
  claim.set_runner_id(std::string("r\0", 2));
  absl::Duration lease;
  EXPECT_FIELD_ERROR(ValidateClaimWakes(claim, &lease), "runner_id: contains control");
  claim.set_runner_id("r");
  claim.set_session_id("s\x7f");
  EXPECT_FIELD_ERROR(ValidateClaimWakes(claim, &lease), "session_id: contains control");

  v1::ExtendClaimsRequest extend;
  v1::ClaimRef* ref = extend.add_claims();
  ref->set_tenant_id(nul);
  ref->set_stream("/s");
  ref->set_claim_token("t");
  EXPECT_FIELD_ERROR(ValidateExtendClaims(extend, &lease), "claims[0].tenant_id: contains");
}

TEST(ValidationTest, ValuesHoldingNulAreRefusedByName) {
  v1::EvaluateChangeRequest request;
  request.set_source_url("/c");
  request.set_collection("items");
  request.set_op(v1::UPDATE);
  request.set_key("k");
  (*request.mutable_value()->mutable_struct_value()->mutable_fields())["a"]
      .mutable_list_value()
      ->add_values()
      ->set_string_value(std::string("x\0y", 3));
  EXPECT_FIELD_ERROR(ValidateEvaluateChange(request), "value: holds a NUL character");
  request.clear_value();
  (*request.mutable_old_value()->mutable_struct_value()->mutable_fields())[std::string("k\0", 2)]
      .set_number_value(1);
  EXPECT_FIELD_ERROR(ValidateEvaluateChange(request), "old_value: holds a NUL character");
}

TEST(ValidationTest, RegisterRejectsEachBadFieldByName) {
  struct Case {
    std::function<void(v1::RegisterWakeRequest&)> mutate;
    std::string field;
  };
  const std::vector<Case> cases = {
      {[](auto& r) { r.set_subscriber_url(""); }, "subscriber_url: required"},
      {[](auto& r) { r.set_source_url(std::string(3000, 'x')); }, "source_url: longer than"},
      {[](auto& r) { r.set_source_url("/a\nb"); }, "source_url: contains control"},
      {[](auto& r) { r.set_tenant_id(std::string(300, 't')); }, "tenant_id"},
      {[](auto& r) { r.clear_condition(); }, "condition: required"},
      {[](auto& r) { r.mutable_condition()->mutable_change()->add_ops(static_cast<v1::Op>(7)); },
       "condition.change.ops[0]: unknown op 7"},
      {[](auto& r) { r.mutable_condition()->mutable_change()->add_ops(v1::OP_UNSPECIFIED); },
       "condition.change.ops[0]"},
      {[](auto& r) { r.mutable_condition()->mutable_change()->add_collections(""); },
       "condition.change.collections[0]: required"},
      {[](auto& r) {
         for (int i = 0; i < 65; ++i) r.mutable_condition()->mutable_change()->add_collections("c");
       },
       "condition.change.collections: more than"},
      {[](auto& r) { r.set_debounce_ms(-1); }, "debounce_ms"},
      {[](auto& r) { r.set_debounce_ms(86400001); }, "debounce_ms"},
      {[](auto& r) { r.set_timeout_ms(-5); }, "timeout_ms: must not be negative"},
      {[](auto& r) { r.set_manifest_key(std::string(600, 'm')); }, "manifest_key"},
  };
  for (const Case& c : cases) {
    v1::RegisterWakeRequest request = ValidRegister();
    c.mutate(request);
    EXPECT_FIELD_ERROR(ValidateRegisterWake(request), c.field);
  }
}

TEST(ValidationTest, UnregisterNeedsASelectorWithItsFields) {
  v1::UnregisterWakesRequest request;
  EXPECT_FIELD_ERROR(ValidateUnregisterWakes(request), "selector: required");
  request.mutable_subscriber_manifest()->set_subscriber_url("/p");
  EXPECT_FIELD_ERROR(ValidateUnregisterWakes(request), "subscriber_manifest.manifest_key");
  request.mutable_subscriber_manifest()->set_manifest_key("m");
  EXPECT_THAT(ValidateUnregisterWakes(request), IsOk());
  request.mutable_subscriber_source()->set_subscriber_url("/p");
  EXPECT_FIELD_ERROR(ValidateUnregisterWakes(request), "subscriber_source.source_url");
}

TEST(ValidationTest, EvaluateRunFinishedChecksStatusAndSizes) {
  v1::EvaluateRunFinishedRequest request;
  request.set_source_url("/c");
  request.set_run_key("r");
  EXPECT_FIELD_ERROR(ValidateEvaluateRunFinished(request), "status");
  request.set_status(v1::COMPLETED);
  EXPECT_THAT(ValidateEvaluateRunFinished(request), IsOk());
  request.mutable_value()->set_string_value(std::string((1 << 20) + 10, 'v'));
  EXPECT_FIELD_ERROR(ValidateEvaluateRunFinished(request), "value: larger than");
  request.clear_value();
  request.set_consistency(static_cast<v1::Consistency>(9));
  EXPECT_FIELD_ERROR(ValidateEvaluateRunFinished(request), "consistency");
  request.set_consistency(v1::LOCAL);
  request.clear_run_key();
  EXPECT_FIELD_ERROR(ValidateEvaluateRunFinished(request), "run_key: required");
}

TEST(ValidationTest, EvaluateChangeChecksOpKeyAndInbox) {
  v1::EvaluateChangeRequest request;
  request.set_source_url("/c");
  request.set_collection("inbox");
  request.set_key("k");
  EXPECT_FIELD_ERROR(ValidateEvaluateChange(request), "op");
  request.set_op(v1::INSERT);
  EXPECT_THAT(ValidateEvaluateChange(request), IsOk());
  request.mutable_inbox()->set_from(std::string(3000, 'f'));
  EXPECT_FIELD_ERROR(ValidateEvaluateChange(request), "inbox.from");
}

TEST(ValidationTest, ListChecksPageSizeAndToken) {
  v1::ListRegistrationsRequest request;
  int64_t after = -1;
  EXPECT_THAT(ValidateListRegistrations(request, &after), IsOk());
  EXPECT_EQ(request.page_size(), 100);
  EXPECT_EQ(after, 0);
  request.set_page_token("42");
  EXPECT_THAT(ValidateListRegistrations(request, &after), IsOk());
  EXPECT_EQ(after, 42);
  request.set_page_token("x");
  EXPECT_FIELD_ERROR(ValidateListRegistrations(request, &after), "page_token");
  request.set_page_token("");
  request.set_page_size(5000);
  EXPECT_FIELD_ERROR(ValidateListRegistrations(request, &after), "page_size");
}

TEST(ValidationTest, ClaimsCheckLeaseAndTokens) {
  v1::ClaimWakesRequest claim;
  claim.set_stream("/p");
  absl::Duration lease;
  EXPECT_FIELD_ERROR(ValidateClaimWakes(claim, &lease), "runner_id: required");
  claim.set_runner_id("r1");
  EXPECT_THAT(ValidateClaimWakes(claim, &lease), IsOk());
  EXPECT_EQ(lease, absl::Seconds(30));
  claim.mutable_lease()->set_nanos(1000);
  EXPECT_FIELD_ERROR(ValidateClaimWakes(claim, &lease), "lease");
  claim.clear_lease();
  claim.set_idempotency_key("too-short");
  EXPECT_FIELD_ERROR(ValidateClaimWakes(claim, &lease), "idempotency_key: must be 16 to 128");
  claim.set_idempotency_key(std::string(129, 'k'));
  EXPECT_FIELD_ERROR(ValidateClaimWakes(claim, &lease), "idempotency_key: must be 16 to 128");
  claim.set_idempotency_key("key with spaces in it");
  EXPECT_FIELD_ERROR(ValidateClaimWakes(claim, &lease), "idempotency_key: may hold only");
  claim.set_idempotency_key("0123456789abcdef_-XYZ");
  EXPECT_THAT(ValidateClaimWakes(claim, &lease), IsOk());

  v1::AckWakesRequest ack;
  ack.set_stream("/p");
  EXPECT_FIELD_ERROR(ValidateAckWakes(ack, &lease), "claim_token: required");
  ack.set_claim_token("t");
  ack.add_wake_ids(0);
  EXPECT_FIELD_ERROR(ValidateAckWakes(ack, &lease), "wake_ids[0]");

  v1::ExtendClaimsRequest extend;
  EXPECT_FIELD_ERROR(ValidateExtendClaims(extend, &lease), "claims: required");
  extend.add_claims()->set_stream("/p");
  EXPECT_FIELD_ERROR(ValidateExtendClaims(extend, &lease), "claims[0].claim_token");
}

TEST(ValidationTest, AckClaimNextNeedsTheNextHolder) {
  v1::AckWakesRequest ack;
  ack.set_stream("/p");
  ack.set_claim_token("t");
  absl::Duration lease;
  EXPECT_THAT(ValidateAckWakes(ack, &lease), IsOk());
  ack.set_claim_next(true);
  EXPECT_FIELD_ERROR(ValidateAckWakes(ack, &lease), "runner_id: required");
  ack.set_runner_id("r1");
  ack.mutable_lease()->set_seconds(7200);
  EXPECT_FIELD_ERROR(ValidateAckWakes(ack, &lease), "lease: must be between 1s and 1h");
  ack.mutable_lease()->set_seconds(5);
  EXPECT_THAT(ValidateAckWakes(ack, &lease), IsOk());
  EXPECT_EQ(lease, absl::Seconds(5));
}

TEST(ValidationTest, BatchesNameTheEntryAndCarryEachLease) {
  v1::ClaimStreamsRequest claims;
  std::vector<absl::Duration> leases;
  EXPECT_FIELD_ERROR(ValidateClaimStreams(claims, &leases), "claims: required");
  for (int i = 0; i < 4; ++i) {
    v1::ClaimWakesRequest* claim = claims.add_claims();
    claim->set_stream(absl::StrCat("/p/", i));
    claim->set_runner_id("r1");
  }
  claims.mutable_claims(1)->mutable_lease()->set_seconds(10);
  ASSERT_THAT(ValidateClaimStreams(claims, &leases), IsOk());
  EXPECT_EQ(leases, (std::vector<absl::Duration>{absl::Seconds(30), absl::Seconds(10),
                                                 absl::Seconds(30), absl::Seconds(30)}));
  EXPECT_EQ(claims.claims(3).tenant_id(), "default");  // Each entry's default tenant.
  claims.mutable_claims(3)->set_stream("");
  EXPECT_FIELD_ERROR(ValidateClaimStreams(claims, &leases), "claims[3].stream");
  claims.mutable_claims(3)->set_stream("/p/3");
  claims.mutable_claims(2)->set_tenant_id("t\n");
  EXPECT_FIELD_ERROR(ValidateClaimStreams(claims, &leases), "claims[2].tenant_id");
  claims.mutable_claims(2)->set_tenant_id("t");
  claims.mutable_claims(1)->set_idempotency_key("short");
  EXPECT_FIELD_ERROR(ValidateClaimStreams(claims, &leases), "claims[1].idempotency_key");
  claims.mutable_claims(1)->clear_idempotency_key();
  while (claims.claims_size() <= kMaxBatchEntries) *claims.add_claims() = claims.claims(0);
  EXPECT_FIELD_ERROR(ValidateClaimStreams(claims, &leases), "claims: more than 256 entries");

  v1::AckClaimsRequest acks;
  EXPECT_FIELD_ERROR(ValidateAckClaims(acks, &leases), "acks: required");
  v1::AckWakesRequest* ack = acks.add_acks();
  ack->set_stream("/p/0");
  ack->set_claim_token("a");
  ack = acks.add_acks();
  ack->set_stream("/p/1");
  ack->set_claim_token("b");
  ack->add_wake_ids(-4);
  EXPECT_FIELD_ERROR(ValidateAckClaims(acks, &leases), "acks[1].wake_ids[0]");
  ack->clear_wake_ids();
  ack->set_claim_next(true);
  EXPECT_FIELD_ERROR(ValidateAckClaims(acks, &leases), "acks[1].runner_id: required");
  ack->set_runner_id("r1");
  ack->mutable_lease()->set_seconds(20);
  ASSERT_THAT(ValidateAckClaims(acks, &leases), IsOk());
  EXPECT_EQ(leases, (std::vector<absl::Duration>{absl::Seconds(30), absl::Seconds(20)}));
  while (acks.acks_size() <= kMaxBatchEntries) *acks.add_acks() = acks.acks(0);
  EXPECT_FIELD_ERROR(ValidateAckClaims(acks, &leases), "acks: more than 256 entries");
}

TEST(ValidationTest, SubscribeRejectsUnknownKinds) {
  v1::SubscribeChangesRequest request;
  request.add_kinds(v1::ChangeEvent::WAKE);
  request.add_kinds(static_cast<v1::ChangeEvent::Kind>(12));
  EXPECT_FIELD_ERROR(ValidateSubscribeChanges(request), "kinds[1]");
}

}  // namespace
}  // namespace wake::registry
