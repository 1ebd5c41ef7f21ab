#include "registry-service/registry_core.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "common/logging.h"
#include "common/status_util.h"
#include "registry-service/conversions.h"

namespace wake::registry {
namespace {

bool Strong(v1::Consistency consistency) { return consistency != v1::LOCAL; }

}  // namespace

RegistryCore::RegistryCore(sync::RegistrationCollection& collection, sync::SyncSource& sync,
                           WakeStore& store, Evaluator& evaluator, common::TimeSource& time,
                           common::Executor& executor, RegistryOptions options)
    : collection_(collection),
      sync_(sync),
      store_(store),
      evaluator_(evaluator),
      time_(time),
      executor_(executor),
      options_(std::move(options)) {
  if (options_.sweep_interval > absl::ZeroDuration()) {
    sweep_timer_ = time_.CreateTimer([this] {
      absl::MutexLock lock(&mu_);
      if (sweeping_ || stopping_) return;
      sweeping_ = true;
      executor_.Post([this] { Sweep(); });
    });
    sweep_timer_->Enable(options_.sweep_interval);
  }
}

RegistryCore::~RegistryCore() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  if (sweep_timer_ != nullptr) sweep_timer_->Disable();
  absl::MutexLock lock(&mu_);
  auto idle = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return !sweeping_; };
  mu_.Await(absl::Condition(&idle));
}

void RegistryCore::Sweep() {
  absl::StatusOr<int64_t> ended = store_.ReleaseExpiredClaims();
  if (!ended.ok()) {
    common::LogWarn("claim_sweep_failed", {{"error", std::string(ended.status().message())}});
  } else if (*ended > 0) {
    common::LogInfo("expired_claims_released", {{"claims", *ended}});
  }
  evaluator_.CloseDueWindows(options_.window_sweep_batch);
  const common::MonotonicTime now = time_.MonotonicNow();
  const bool keys_due = !keys_swept_at_.has_value() ||
                        now - *keys_swept_at_ >= common::ToChrono(options_.key_sweep_interval);
  if (keys_due) keys_swept_at_ = now;
  int64_t forgotten = 0;
  for (int batch = 0; keys_due && batch < options_.key_sweep_batches; ++batch) {
    absl::StatusOr<int64_t> swept =
        store_.SweepEventKeys(options_.key_retention, options_.key_sweep_batch);
    if (!swept.ok()) {
      common::LogWarn("event_key_sweep_failed", {{"error", std::string(swept.status().message())}});
      break;
    }
    forgotten += *swept;
    if (*swept < options_.key_sweep_batch) break;
  }
  if (forgotten > 0) common::LogDebug("event_keys_forgotten", {{"keys", forgotten}});
  absl::MutexLock lock(&mu_);
  sweeping_ = false;
  if (!stopping_) sweep_timer_->Enable(options_.sweep_interval);
}

absl::Status RegistryCore::CheckTenant(const std::string& tenant) const {
  if (options_.tenant.has_value() && tenant != *options_.tenant) {
    return common::InvalidField(
        "tenant_id", absl::StrCat("this registry serves only tenant \"", *options_.tenant, "\""));
  }
  return absl::OkStatus();
}

absl::Status RegistryCore::Barrier() {
  const common::MonotonicTime started = time_.MonotonicNow();
  absl::Status status = sync_.Barrier(options_.barrier_timeout);
  if (options_.on_barrier) {
    options_.on_barrier(common::ToAbsl(time_.MonotonicNow() - started), status.ok());
  }
  if (!status.ok() && status.code() != absl::StatusCode::kUnavailable) {
    return absl::UnavailableError(absl::StrCat("read barrier failed: ", status.message()));
  }
  return status;
}

bool RegistryCore::NoCandidates(const std::string& tenant, const std::string& source_url) {
  return collection_.ForEachBySource(tenant, source_url, [](const sync::Registration&) {}) == 0;
}

absl::StatusOr<v1::RegisterWakeResponse> RegistryCore::RegisterWake(
    const v1::RegisterWakeRequest& request) {
  absl::Notification finished;
  absl::StatusOr<v1::RegisterWakeResponse> response;
  RegisterWakeAsync(request, [&](absl::StatusOr<v1::RegisterWakeResponse> result) {
    response = std::move(result);
    finished.Notify();
  });
  finished.WaitForNotification();
  return response;
}

namespace {

v1::RegisterWakeResponse RegisterResponse(const UpsertResult& result, bool confirmed) {
  if (!confirmed) {
    common::LogWarn("write_unconfirmed",
                    {{"txid", result.txid}, {"registration_id", result.row.id}});
  }
  v1::RegisterWakeResponse response;
  ToProto(result.row, response.mutable_registration());
  response.set_created(result.created);
  response.set_txid(result.txid);
  response.set_confirmed(confirmed);
  return response;
}

}  // namespace

void RegistryCore::RegisterWakeAsync(const v1::RegisterWakeRequest& request, RegisterDone done) {
  const sync::Registration row = FromRequest(request);
  const auto mutation = collection_.BeginUpsert(row);
  store_.UpsertRegistrationAsync(
      row, [this, mutation, done = std::move(done)](absl::StatusOr<UpsertResult> result) mutable {
        if (!result.ok()) {
          collection_.Rollback(mutation);
          done(result.status());
          return;
        }
        collection_.Commit(mutation, result->row, result->txid);
        if (result->txid != 0) {
          const int64_t txid = result->txid;
          collection_.OnTxid(txid, options_.write_confirm_timeout,
                             [result = *std::move(result), done = std::move(done)](bool confirmed) {
                               done(RegisterResponse(result, confirmed));
                             });
          return;
        }
        if (collection_.Get(result->row.id).has_value()) {
          done(RegisterResponse(*result, true));
          return;
        }
        // It existed already but this replica has not seen it yet: catch up,
        // off the store's thread (the barrier blocks).
        executor_.Post([this, result = *std::move(result), done = std::move(done)] {
          done(RegisterResponse(result, Barrier().ok()));
        });
      });
}

absl::StatusOr<v1::UnregisterWakesResponse> RegistryCore::UnregisterWakes(
    const v1::UnregisterWakesRequest& request) {
  UnregisterSelector selector;
  selector.tenant_id = request.tenant_id();
  std::vector<sync::Registration> visible;
  switch (request.selector_case()) {
    case v1::UnregisterWakesRequest::kSubscriberManifest:
      selector.kind = UnregisterSelector::Kind::kSubscriberManifest;
      selector.subscriber_url = request.subscriber_manifest().subscriber_url();
      selector.manifest_key = request.subscriber_manifest().manifest_key();
      visible = collection_.BySubscriber(selector.tenant_id, selector.subscriber_url);
      break;
    case v1::UnregisterWakesRequest::kSubscriber:
      selector.kind = UnregisterSelector::Kind::kSubscriber;
      selector.subscriber_url = request.subscriber().subscriber_url();
      visible = collection_.BySubscriber(selector.tenant_id, selector.subscriber_url);
      break;
    case v1::UnregisterWakesRequest::kSource:
      selector.kind = UnregisterSelector::Kind::kSource;
      selector.source_url = request.source().source_url();
      visible = collection_.BySource(selector.tenant_id, selector.source_url);
      break;
    case v1::UnregisterWakesRequest::kSubscriberSource:
      selector.kind = UnregisterSelector::Kind::kSubscriberSource;
      selector.subscriber_url = request.subscriber_source().subscriber_url();
      selector.source_url = request.subscriber_source().source_url();
      visible = collection_.BySubscriber(selector.tenant_id, selector.subscriber_url);
      break;
    case v1::UnregisterWakesRequest::SELECTOR_NOT_SET:
      return common::InvalidField("selector", "required");
  }
  // Hide what this replica can already see, as one intent.
  std::vector<int64_t> ids;
  for (const sync::Registration& row : visible) {
    if (!selector.manifest_key.empty() && row.manifest_key != selector.manifest_key) continue;
    if (!selector.source_url.empty() && row.source_url != selector.source_url) continue;
    ids.push_back(row.id);
  }
  const auto mutation = collection_.BeginDelete(ids);
  absl::StatusOr<DeleteResult> result = store_.DeleteRegistrations(selector);
  if (!result.ok()) {
    collection_.Rollback(mutation);
    return result.status();
  }
  collection_.Commit(mutation, std::nullopt, result->txid);
  if (result->txid != 0) collection_.AwaitTxid(result->txid, options_.write_confirm_timeout);
  v1::UnregisterWakesResponse response;
  response.set_removed(static_cast<int64_t>(result->ids.size()));
  response.set_txid(result->txid);
  return response;
}

namespace {

template <typename Response>
absl::StatusOr<Response> WaitFor(
    const std::function<void(std::function<void(absl::StatusOr<Response>)>)>& start) {
  absl::Notification finished;
  absl::StatusOr<Response> response;
  start([&](absl::StatusOr<Response> result) {
    response = std::move(result);
    finished.Notify();
  });
  finished.WaitForNotification();
  return response;
}

// Evaluation results as the response `Response`.
template <typename Response>
Evaluator::Done Respond(RegistryCore::Done<Response> done, int64_t max_bytes) {
  return [done = std::move(done), max_bytes](absl::StatusOr<EvaluationResult> result) {
    if (!result.ok()) {
      done(result.status());
      return;
    }
    Response response;
    int64_t size = 0;
    int omitted = 0;
    for (v1::Wake& wake : result->wakes) {
      // Every wake is stored; only the answer leaves some out.
      const int64_t bytes = static_cast<int64_t>(wake.ByteSizeLong()) + 6;
      if (omitted > 0 || size + bytes > max_bytes) {
        ++omitted;
        continue;
      }
      size += bytes;
      *response.add_wakes() = std::move(wake);
    }
    response.set_debounced(result->debounced);
    response.set_wakes_omitted(omitted);
    done(std::move(response));
  };
}

// The largest of the request's payload fields, to name in the error.
std::string LargestPayload(const v1::EvaluateChangeRequest& request) {
  const size_t value = request.value().ByteSizeLong();
  const size_t old_value = request.old_value().ByteSizeLong();
  const size_t payload = request.inbox().payload().ByteSizeLong();
  if (value >= old_value && value >= payload) return "value";
  return old_value >= payload ? "old_value" : "inbox.payload";
}

std::string LargestPayload(const v1::EvaluateRunFinishedRequest& /*request*/) { return "value"; }

template <typename Request>
absl::Status CheckWakeSize(const Request& request, int64_t max_bytes) {
  const int64_t size = static_cast<int64_t>(request.ByteSizeLong());
  if (size <= max_bytes) return absl::OkStatus();
  return common::InvalidField(
      LargestPayload(request),
      absl::StrCat("the change would make wakes of ", size,
                   " bytes; this registry accepts at most ", max_bytes, " (--max-wake-bytes)"));
}

}  // namespace

absl::StatusOr<v1::EvaluateRunFinishedResponse> RegistryCore::EvaluateRunFinished(
    const v1::EvaluateRunFinishedRequest& request) {
  return WaitFor<v1::EvaluateRunFinishedResponse>([&](Done<v1::EvaluateRunFinishedResponse> done) {
    EvaluateRunFinishedAsync(request, std::move(done));
  });
}

absl::StatusOr<v1::EvaluateChangeResponse> RegistryCore::EvaluateChange(
    const v1::EvaluateChangeRequest& request) {
  return WaitFor<v1::EvaluateChangeResponse>([&](Done<v1::EvaluateChangeResponse> done) {
    EvaluateChangeAsync(request, std::move(done));
  });
}

void RegistryCore::EvaluateRunFinishedAsync(const v1::EvaluateRunFinishedRequest& request,
                                            Done<v1::EvaluateRunFinishedResponse> done) {
  if (absl::Status s = CheckWakeSize(request, options_.max_wake_bytes); !s.ok()) {
    done(s);
    return;
  }
  if (Strong(request.consistency())) {
    if (absl::Status s = Barrier(); !s.ok()) {
      done(s);
      return;
    }
  }
  evaluator_.EvaluateRunFinishedAsync(request,
                                      Respond(std::move(done), options_.max_response_bytes));
}

void RegistryCore::EvaluateChangeAsync(const v1::EvaluateChangeRequest& request,
                                       Done<v1::EvaluateChangeResponse> done) {
  if (absl::Status s = CheckWakeSize(request, options_.max_wake_bytes); !s.ok()) {
    done(s);
    return;
  }
  if (Strong(request.consistency())) {
    if (absl::Status s = Barrier(); !s.ok()) {
      done(s);
      return;
    }
  }
  evaluator_.EvaluateChangeAsync(request, Respond(std::move(done), options_.max_response_bytes));
}

absl::StatusOr<v1::ListRegistrationsResponse> RegistryCore::ListRegistrations(
    const v1::ListRegistrationsRequest& request, int64_t after_id) {
  if (Strong(request.consistency())) {
    if (absl::Status s = Barrier(); !s.ok()) return s;
  }
  const size_t page = static_cast<size_t>(request.page_size());
  std::vector<sync::Registration> rows = collection_.List(
      request.tenant_id(), request.source_url(), request.subscriber_url(), after_id, page + 1);
  v1::ListRegistrationsResponse response;
  int64_t size = 0;
  for (size_t i = 0; i < rows.size() && i < page; ++i) {
    v1::Registration registration;
    ToProto(rows[i], &registration);
    const int64_t bytes = static_cast<int64_t>(registration.ByteSizeLong()) + 6;
    // A page that would outgrow the message limit ends early (never empty).
    if (i > 0 && size + bytes > options_.max_response_bytes) {
      response.set_next_page_token(absl::StrCat(rows[i - 1].id));
      return response;
    }
    size += bytes;
    *response.add_registrations() = std::move(registration);
  }
  if (rows.size() > page) response.set_next_page_token(absl::StrCat(rows[page - 1].id));
  return response;
}

namespace {

constexpr char kAnswerFull[] =
    "claims: the answer is full (the claims together outgrow a message); claim this stream alone";

void ToResponse(ClaimResult result, v1::ClaimWakesResponse* response) {
  response->set_status(result.status);
  if (result.status != v1::CLAIMED) return;
  response->set_claim_token(result.claim_token);
  for (v1::Wake& wake : result.wakes) *response->add_wakes() = std::move(wake);
  ToProto(result.lease_expires_at, response->mutable_lease_expires_at());
}

ClaimSpec SpecOf(const v1::ClaimWakesRequest& request, absl::Duration lease) {
  return ClaimSpec{
      request.tenant_id(),      request.stream(), request.runner_id(), request.session_id(), lease,
      request.idempotency_key()};
}

}  // namespace

std::vector<absl::StatusOr<ClaimResult>> RegistryCore::Claim(const std::vector<ClaimSpec>& claims) {
  // The single-claim entry point takes no idempotency key.
  if (claims.size() != 1 || !claims.front().idempotency_key.empty()) {
    return store_.ClaimStreams(claims);
  }
  const ClaimSpec& claim = claims.front();
  return {store_.ClaimWakes(claim.tenant_id, claim.stream, claim.runner_id, claim.session_id,
                            claim.lease)};
}

std::vector<absl::StatusOr<ClaimResult>> RegistryCore::ClaimWithVisibilityWait(
    const std::vector<ClaimSpec>& claims) {
  std::vector<absl::StatusOr<ClaimResult>> results = Claim(claims);
  // The stream announces a wake when it decodes the commit, which can be a
  // moment before the row is visible to a new snapshot (the committing
  // backend has not yet left the proc array). Answering NOTHING_PENDING then
  // would leave an announced wake unclaimed, so look again, briefly, for as
  // long as the synced view says the stream has a pending wake.
  absl::Duration waited;
  absl::Duration backoff = absl::Microseconds(500);
  while (waited < options_.claim_visibility_wait) {
    std::vector<size_t> again;
    for (size_t i = 0; i < claims.size() && i < results.size(); ++i) {
      if (results[i].ok() && results[i]->status == v1::NOTHING_PENDING &&
          collection_.HasPendingWake(claims[i].tenant_id, claims[i].stream)) {
        again.push_back(i);
      }
    }
    if (again.empty()) break;
    time_.SleepFor(backoff);
    waited += backoff;
    backoff = std::min(backoff * 2, absl::Milliseconds(16));
    std::vector<ClaimSpec> retry;
    for (size_t i : again) retry.push_back(claims[i]);
    std::vector<absl::StatusOr<ClaimResult>> retried = Claim(retry);
    for (size_t j = 0; j < again.size() && j < retried.size(); ++j) {
      results[again[j]] = std::move(retried[j]);
    }
  }
  return results;
}

absl::StatusOr<v1::ClaimWakesResponse> RegistryCore::ClaimWakes(
    const v1::ClaimWakesRequest& request, absl::Duration lease) {
  std::vector<absl::StatusOr<ClaimResult>> results =
      ClaimWithVisibilityWait({SpecOf(request, lease)});
  if (results.size() != 1) return absl::InternalError("claim: wrong result count");
  if (!results[0].ok()) return results[0].status();
  v1::ClaimWakesResponse response;
  ToResponse(*std::move(results[0]), &response);
  return response;
}

absl::StatusOr<v1::ClaimStreamsResponse> RegistryCore::ClaimStreams(
    const v1::ClaimStreamsRequest& request, const std::vector<absl::Duration>& leases) {
  std::vector<ClaimSpec> claims;
  claims.reserve(request.claims_size());
  for (int i = 0; i < request.claims_size(); ++i) {
    claims.push_back(SpecOf(request.claims(i), leases[i]));
  }
  std::vector<absl::StatusOr<ClaimResult>> results = ClaimWithVisibilityWait(claims);
  if (results.size() != claims.size()) return absl::InternalError("claims: wrong result count");
  v1::ClaimStreamsResponse response;
  size_t bytes = 0;
  for (size_t i = 0; i < results.size(); ++i) {
    absl::StatusOr<ClaimResult>& result = results[i];
    v1::ClaimOutcome* outcome = response.add_claims();
    if (result.ok()) {
      ToResponse(*std::move(result), outcome->mutable_claim());
      if (!Fits(outcome->ByteSizeLong(), &bytes)) {
        // Each claim fits in an answer alone, but not all of them together:
        // this one is given back, for the caller to claim alone.
        GiveBack({claims[i].tenant_id, claims[i].stream, outcome->claim().claim_token()});
        outcome->Clear();
        result = absl::ResourceExhaustedError(kAnswerFull);
      }
    }
    if (!result.ok()) {
      outcome->set_code(static_cast<int>(result.status().code()));
      outcome->set_message(std::string(result.status().message()));
    }
  }
  return response;
}

bool RegistryCore::Fits(size_t entry_bytes, size_t* bytes) const {
  // An entry costs a few bytes of framing besides its own.
  const size_t with = *bytes + entry_bytes + 8;
  if (*bytes > 0 && with > static_cast<size_t>(options_.max_response_bytes)) return false;
  *bytes = with;
  return true;
}

void RegistryCore::GiveBack(const ClaimKey& claim) {
  absl::StatusOr<int64_t> released = store_.ReleaseClaim(claim);
  if (!released.ok()) {
    // The lease runs out instead; the wakes are delivered then.
    common::LogWarn(
        "claim_give_back_failed",
        {{"stream", claim.stream}, {"error", std::string(released.status().message())}});
  }
}

namespace {

AckSpec AckSpecOf(const v1::AckWakesRequest& request, absl::Duration lease) {
  AckSpec spec{ClaimKey{request.tenant_id(), request.stream(), request.claim_token()},
               std::vector<int64_t>(request.wake_ids().begin(), request.wake_ids().end()),
               std::nullopt};
  if (request.claim_next()) {
    spec.next = ClaimSpec{
        request.tenant_id(),   request.stream(), request.runner_id(), request.session_id(), lease,
        /*idempotency_key=*/""};
  }
  return spec;
}

v1::AckWakesResponse ToResponse(AckResult result) {
  v1::AckWakesResponse response;
  response.set_acked(result.acked);
  response.set_more_pending(result.more_pending);
  if (result.next.has_value()) ToResponse(*std::move(result.next), response.mutable_next());
  return response;
}

}  // namespace

absl::StatusOr<v1::AckWakesResponse> RegistryCore::AckWakes(const v1::AckWakesRequest& request,
                                                            absl::Duration lease) {
  AckSpec spec = AckSpecOf(request, lease);
  if (!spec.next.has_value()) {
    absl::StatusOr<AckResult> result = store_.AckWakes(spec.claim, spec.wake_ids);
    if (!result.ok()) return result.status();
    return ToResponse(*std::move(result));
  }
  std::vector<absl::StatusOr<AckResult>> results = store_.AckClaims({std::move(spec)});
  if (results.size() != 1) return absl::InternalError("ack: wrong result count");
  if (!results[0].ok()) return results[0].status();
  return ToResponse(*std::move(results[0]));
}

absl::StatusOr<v1::AckClaimsResponse> RegistryCore::AckClaims(
    const v1::AckClaimsRequest& request, const std::vector<absl::Duration>& leases) {
  std::vector<AckSpec> acks;
  acks.reserve(request.acks_size());
  for (int i = 0; i < request.acks_size(); ++i) {
    acks.push_back(AckSpecOf(request.acks(i), leases[i]));
  }
  std::vector<absl::StatusOr<AckResult>> results = store_.AckClaims(acks);
  if (results.size() != acks.size()) return absl::InternalError("acks: wrong result count");
  v1::AckClaimsResponse response;
  size_t bytes = 0;
  for (size_t i = 0; i < results.size(); ++i) {
    absl::StatusOr<AckResult>& result = results[i];
    v1::AckOutcome* outcome = response.add_acks();
    if (!result.ok()) {
      outcome->set_code(static_cast<int>(result.status().code()));
      outcome->set_message(std::string(result.status().message()));
      continue;
    }
    *outcome->mutable_ack() = ToResponse(*std::move(result));
    if (!Fits(outcome->ByteSizeLong(), &bytes)) {
      // The next claims together do not fit in one answer: this one is given
      // back (more_pending stays true, so the caller claims it again).
      if (outcome->ack().next().status() == v1::CLAIMED) {
        GiveBack(
            {acks[i].claim.tenant_id, acks[i].claim.stream, outcome->ack().next().claim_token()});
      }
      outcome->mutable_ack()->clear_next();
      bytes += outcome->ByteSizeLong() + 8;
    }
  }
  return response;
}

absl::StatusOr<v1::ExtendClaimsResponse> RegistryCore::ExtendClaims(
    const v1::ExtendClaimsRequest& request, absl::Duration lease) {
  std::vector<ClaimKey> claims;
  for (const v1::ClaimRef& claim : request.claims()) {
    claims.push_back(ClaimKey{claim.tenant_id(), claim.stream(), claim.claim_token()});
  }
  absl::StatusOr<std::vector<ExtendResult>> results = store_.ExtendClaims(claims, lease);
  if (!results.ok()) return results.status();
  v1::ExtendClaimsResponse response;
  for (const ExtendResult& result : *results) {
    v1::ExtendedClaim* out = response.add_claims();
    out->mutable_claim()->set_tenant_id(result.claim.tenant_id);
    out->mutable_claim()->set_stream(result.claim.stream);
    out->mutable_claim()->set_claim_token(result.claim.claim_token);
    out->set_extended(result.extended);
    if (result.extended) ToProto(result.lease_expires_at, out->mutable_lease_expires_at());
  }
  return response;
}

absl::StatusOr<v1::ReleaseClaimResponse> RegistryCore::ReleaseClaim(
    const v1::ReleaseClaimRequest& request) {
  absl::StatusOr<int64_t> released =
      store_.ReleaseClaim(ClaimKey{request.tenant_id(), request.stream(), request.claim_token()});
  if (!released.ok()) return released.status();
  v1::ReleaseClaimResponse response;
  response.set_released(*released);
  return response;
}

}  // namespace wake::registry
