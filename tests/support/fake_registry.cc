#include "tests/support/fake_registry.h"

#include <string>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace wake::testing {
namespace {

// The offset that resumes at log index `next`.
std::string OffsetBefore(size_t next) { return next == 0 ? "-1" : absl::StrCat(next - 1); }

v1::ChangeEvent WakeEvent(const v1::Wake& wake, const std::string& offset) {
  v1::ChangeEvent event;
  event.set_offset(offset);
  event.mutable_wake()->set_tenant_id(wake.tenant_id());
  event.mutable_wake()->set_stream(wake.stream());
  event.mutable_wake()->set_wake_id(wake.id());
  return event;
}

v1::ChangeEvent UpToDate(size_t next) {
  v1::ChangeEvent event;
  event.set_offset(OffsetBefore(next));
  event.set_control(v1::UP_TO_DATE);
  return event;
}

grpc::Status NoSuchClaim() {
  return grpc::Status(grpc::StatusCode::NOT_FOUND, "claim_token: no such claim");
}

}  // namespace

int64_t FakeRegistry::AddWake(const std::string& stream) {
  absl::MutexLock lock(&mu_);
  v1::Wake wake;
  wake.set_id(next_id_++);
  wake.set_tenant_id(options_.tenant_id);
  wake.set_stream(stream);
  pending_[stream].push_back(wake);
  LogWakeLocked(wake);
  return wake.id();
}

void FakeRegistry::Close() {
  absl::MutexLock lock(&mu_);
  closing_ = true;
}

std::vector<int64_t> FakeRegistry::Acked() {
  absl::MutexLock lock(&mu_);
  return acked_;
}

grpc::Status FakeRegistry::SubscribeChanges(grpc::ServerContext* context,
                                            const v1::SubscribeChangesRequest* request,
                                            grpc::ServerWriter<v1::ChangeEvent>* writer) {
  size_t next = 0;
  std::vector<v1::ChangeEvent> snapshot;
  {
    absl::MutexLock lock(&mu_);
    if (request->from_offset() == "-1" || request->from_offset().empty()) {
      next = log_.size();
      for (const auto& [stream, wakes] : pending_) {
        for (const v1::Wake& wake : wakes) snapshot.push_back(WakeEvent(wake, OffsetBefore(next)));
      }
    } else {
      int64_t from = 0;
      if (!absl::SimpleAtoi(request->from_offset(), &from) || from < 0) {
        return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "from_offset: not an offset");
      }
      next = static_cast<size_t>(from) + 1;
    }
  }
  for (const v1::ChangeEvent& event : snapshot) {
    if (!writer->Write(event)) return grpc::Status::CANCELLED;
  }
  // Up to date after the snapshot and whenever it has caught up again, as the
  // real registry says.
  if (!writer->Write(UpToDate(next))) return grpc::Status::CANCELLED;
  for (;;) {
    std::vector<v1::ChangeEvent> batch;
    {
      absl::MutexLock lock(&mu_);
      auto more = [this, next]()
                      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return log_.size() > next || closing_; };
      // A bounded wait so a cancelled call is noticed.
      mu_.AwaitWithTimeout(absl::Condition(&more), absl::Milliseconds(50));
      if (closing_ || context->IsCancelled()) return grpc::Status::CANCELLED;
      if (log_.size() > next) batch.assign(log_.begin() + next, log_.end());
      next = log_.size();
    }
    if (batch.empty()) continue;
    for (const v1::ChangeEvent& event : batch) {
      if (!writer->Write(event)) return grpc::Status::CANCELLED;
    }
    if (!writer->Write(UpToDate(next))) return grpc::Status::CANCELLED;
  }
}

grpc::Status FakeRegistry::ClaimWakes(grpc::ServerContext* /*context*/,
                                      const v1::ClaimWakesRequest* request,
                                      v1::ClaimWakesResponse* response) {
  absl::MutexLock lock(&mu_);
  const std::string& stream = request->stream();
  auto pending = pending_.find(stream);
  if (claims_.count(stream) > 0) {
    response->set_status(v1::ALREADY_CLAIMED);
  } else if (pending == pending_.end() || pending->second.empty()) {
    response->set_status(v1::NOTHING_PENDING);
  } else {
    Claim& claim = claims_[stream];
    claim.token = absl::StrCat("tok-", next_token_++);
    claim.wakes = std::move(pending->second);
    pending_.erase(pending);
    response->set_status(v1::CLAIMED);
    response->set_claim_token(claim.token);
    for (const v1::Wake& wake : claim.wakes) *response->add_wakes() = wake;
    response->mutable_lease_expires_at()->set_seconds(
        absl::ToUnixSeconds(absl::Now() + options_.lease));
  }
  return grpc::Status::OK;
}

grpc::Status FakeRegistry::AckWakes(grpc::ServerContext* /*context*/,
                                    const v1::AckWakesRequest* request,
                                    v1::AckWakesResponse* response) {
  absl::MutexLock lock(&mu_);
  auto claim = claims_.find(request->stream());
  if (claim == claims_.end() || claim->second.token != request->claim_token()) {
    return NoSuchClaim();
  }
  response->set_acked(static_cast<int64_t>(claim->second.wakes.size()));
  for (const v1::Wake& wake : claim->second.wakes) acked_.push_back(wake.id());
  claims_.erase(claim);
  auto pending = pending_.find(request->stream());
  response->set_more_pending(pending != pending_.end() && !pending->second.empty());
  return grpc::Status::OK;
}

grpc::Status FakeRegistry::ReleaseClaim(grpc::ServerContext* /*context*/,
                                        const v1::ReleaseClaimRequest* request,
                                        v1::ReleaseClaimResponse* response) {
  absl::MutexLock lock(&mu_);
  auto claim = claims_.find(request->stream());
  if (claim == claims_.end() || claim->second.token != request->claim_token()) {
    return NoSuchClaim();
  }
  response->set_released(static_cast<int64_t>(claim->second.wakes.size()));
  std::vector<v1::Wake>& pending = pending_[request->stream()];
  pending.insert(pending.begin(), claim->second.wakes.begin(), claim->second.wakes.end());
  // Released wakes are pending again: announce them as the registry does.
  for (const v1::Wake& wake : claim->second.wakes) LogWakeLocked(wake);
  claims_.erase(claim);
  return grpc::Status::OK;
}

grpc::Status FakeRegistry::ExtendClaims(grpc::ServerContext* /*context*/,
                                        const v1::ExtendClaimsRequest* request,
                                        v1::ExtendClaimsResponse* response) {
  absl::MutexLock lock(&mu_);
  for (const v1::ClaimRef& ref : request->claims()) {
    v1::ExtendedClaim* out = response->add_claims();
    *out->mutable_claim() = ref;
    auto claim = claims_.find(ref.stream());
    out->set_extended(claim != claims_.end() && claim->second.token == ref.claim_token());
    out->mutable_lease_expires_at()->set_seconds(absl::ToUnixSeconds(absl::Now() + options_.lease));
  }
  return grpc::Status::OK;
}

void FakeRegistry::LogWakeLocked(const v1::Wake& wake) {
  log_.push_back(WakeEvent(wake, absl::StrCat(log_.size())));
}

}  // namespace wake::testing
