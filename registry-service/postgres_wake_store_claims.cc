// PostgresWakeStore's claim lifecycle: claims of streams (with the tokens
// that name them), acks that end them (and may claim the stream again at
// once), lease extensions, releases and the sweep of expired leases. Claims
// and acks are group-committed: the batches are wired up in the constructor
// (postgres_wake_store.cc); their statements' SQL (claim_streams,
// drop_empty_claim, ack_claims, extend_claims, release_claim,
// release_expired) is in store_sql.cc.
#include <openssl/rand.h>
#include <openssl/sha.h>

#include <algorithm>
#include <pqxx/pqxx>
#include <tuple>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/logging.h"
#include "registry-service/postgres_wake_store.h"
#include "registry-service/store_rows.h"

namespace wake::registry {
namespace {

using store_internal::AppendJsonString;
using store_internal::FromMicros;
using store_internal::LeaseMillis;
using store_internal::RowToWake;

constexpr char kClaimNotLive[] =
    "claim_token: the claim is not live (expired and taken over, acked or released)";

// A claim token acts as a capability (it acks and releases the claim), so it
// comes from OpenSSL's CSPRNG: 128 bits, as 32 hex digits.
absl::StatusOr<std::string> NewClaimToken() {
  unsigned char bytes[16];
  if (RAND_bytes(bytes, sizeof(bytes)) != 1) {
    // Never hand out a guessable token: no claim is taken without one.
    return absl::InternalError("claim token: the CSPRNG failed");
  }
  return absl::BytesToHexString(
      absl::string_view(reinterpret_cast<const char*>(bytes), sizeof(bytes)));
}

// The token of a claim made with an idempotency key: the same for every
// attempt with that key on that stream, and different on any other stream or
// tenant (tokens are unique across stream_claims). As unguessable as the key.
std::string IdempotentClaimToken(const ClaimSpec& claim) {
  std::string input = "wakeline claim token v1";
  for (const std::string* part : {&claim.tenant_id, &claim.stream, &claim.idempotency_key}) {
    // Each part with its length first, so no two tuples give the same input.
    absl::StrAppend(&input, "|", part->size(), ":", *part);
  }
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(input.data()), input.size(), digest);
  // 128 bits, the size of a random token.
  return absl::BytesToHexString(absl::string_view(reinterpret_cast<const char*>(digest), 16));
}

// A claim or ack statement slower than this is logged: its callers' deadlines
// (the runtime's is 10 s) may pass before the answer arrives, and a claim the
// caller never hears of holds its stream until the caller retries with the
// same token or the lease runs out.
constexpr absl::Duration kSlowStatement = absl::Seconds(1);

void WarnIfSlow(const char* event, absl::Time started, size_t entries, const absl::Status& status) {
  const absl::Duration took = absl::Now() - started;
  if (took < kSlowStatement) return;
  common::LogWarn(event, {{"entries", static_cast<int64_t>(entries)},
                          {"ms", absl::ToInt64Milliseconds(took)},
                          {"status", status}});
}

}  // namespace

absl::StatusOr<ClaimResult> PostgresWakeStore::ClaimWakes(const std::string& tenant_id,
                                                          const std::string& stream,
                                                          const std::string& runner_id,
                                                          const std::string& session_id,
                                                          absl::Duration lease) {
  return claims_.Submit(
      ClaimSpec{tenant_id, stream, runner_id, session_id, lease, /*idempotency_key=*/""});
}

std::vector<absl::StatusOr<ClaimResult>> PostgresWakeStore::ClaimStreams(
    const std::vector<ClaimSpec>& claims) {
  return claims_.SubmitMany(claims);
}

absl::StatusOr<AckResult> PostgresWakeStore::AckWakes(const ClaimKey& claim,
                                                      const std::vector<int64_t>& wake_ids) {
  return acks_.Submit(AckSpec{claim, wake_ids, std::nullopt});
}

std::vector<absl::StatusOr<AckResult>> PostgresWakeStore::AckClaims(
    const std::vector<AckSpec>& acks) {
  return acks_.SubmitMany(acks);
}

absl::StatusOr<std::vector<absl::StatusOr<ClaimResult>>> PostgresWakeStore::ClaimStatement(
    const std::vector<const ClaimSpec*>& calls) {
  std::vector<ClaimResult> claimed;
  const absl::Time started = absl::Now();
  absl::Status status = pool_.Run([&](pqxx::connection& c) -> absl::Status {
    // One transaction: an empty claim row (see drop_empty_claim) is never
    // visible to other claimers. Nothing waits for its flush: a claim lost
    // in a crash only makes its wakes pending again.
    pqxx::work tx(c);
    absl::StatusOr<std::vector<ClaimResult>> results = RunClaims(tx, calls, /*async=*/true);
    if (!results.ok()) return results.status();
    tx.commit();
    claimed = *std::move(results);
    return absl::OkStatus();
  });
  WarnIfSlow("slow_claim_statement", started, calls.size(), status);
  if (!status.ok()) return status;
  std::vector<absl::StatusOr<ClaimResult>> results;
  results.reserve(claimed.size());
  for (ClaimResult& result : claimed) results.push_back(std::move(result));
  return results;
}

absl::StatusOr<std::vector<ClaimResult>> PostgresWakeStore::RunClaims(
    pqxx::transaction_base& tx, const std::vector<const ClaimSpec*>& calls, bool async) {
  // A stream claimed twice in one batch: the first call goes to the database;
  // the others are answered as if they ran right after it.
  std::vector<size_t> first(calls.size());
  absl::flat_hash_map<std::pair<std::string, std::string>, size_t> seen;
  std::vector<std::string> tokens(calls.size());
  std::string input = "[";
  for (size_t n = 0; n < calls.size(); ++n) {
    const ClaimSpec& call = *calls[n];
    auto [it, fresh] = seen.try_emplace(std::make_pair(call.tenant_id, call.stream), n);
    first[n] = it->second;
    if (!fresh) continue;
    if (!call.idempotency_key.empty()) {
      tokens[n] = IdempotentClaimToken(call);
    } else {
      absl::StatusOr<std::string> token = NewClaimToken();
      if (!token.ok()) return token.status();
      tokens[n] = *std::move(token);
    }
    absl::StrAppend(&input, input.size() == 1 ? "" : ",", "{\"n\":", n, ",\"tenant_id\":");
    AppendJsonString(&input, call.tenant_id);
    input.append(",\"stream\":");
    AppendJsonString(&input, call.stream);
    absl::StrAppend(&input, ",\"claim_token\":\"", tokens[n], "\",\"runner_id\":");
    AppendJsonString(&input, call.runner_id);
    input.append(",\"session_id\":");
    AppendJsonString(&input, call.session_id);
    absl::StrAppend(&input, ",\"lease_ms\":", LeaseMillis(call.lease), "}");
  }
  input.append("]");
  std::vector<ClaimResult> settled(calls.size());
  std::vector<size_t> empty_claims;
  pqxx::result rows = tx.exec_prepared("claim_streams", input, limits_.max_claim_wakes,
                                       limits_.max_claim_bytes, async);
  constexpr int kHasWakes = 9;
  constexpr int kLease = 10;
  constexpr int kN = 11;
  for (const auto& row : rows) {
    const int64_t n = row[kN].as<int64_t>();
    if (n < 0 || static_cast<size_t>(n) >= calls.size() || first[n] != static_cast<size_t>(n)) {
      return absl::InternalError("claim batch: unexpected row");
    }
    ClaimResult& result = settled[n];
    if (!row[kHasWakes].as<bool>()) {
      result.status = v1::NOTHING_PENDING;
    } else if (row[kLease].is_null()) {
      result.status = v1::ALREADY_CLAIMED;
    } else if (row[0].is_null()) {
      result.status = v1::NOTHING_PENDING;
      empty_claims.push_back(n);
    } else {
      absl::StatusOr<v1::Wake> wake = RowToWake(row);
      if (!wake.ok()) return wake.status();
      result.status = v1::CLAIMED;
      result.claim_token = tokens[n];
      result.lease_expires_at = FromMicros(row[kLease].as<int64_t>());
      result.wakes.push_back(*std::move(wake));
    }
  }
  for (const size_t n : empty_claims) {
    tx.exec_prepared("drop_empty_claim", calls[n]->tenant_id, calls[n]->stream, tokens[n]);
  }
  for (size_t n = 0; n < calls.size(); ++n) {
    if (first[n] == n) {
      std::sort(settled[n].wakes.begin(), settled[n].wakes.end(),
                [](const v1::Wake& a, const v1::Wake& b) { return a.id() < b.id(); });
      continue;
    }
    ClaimResult repeat;
    repeat.status =
        settled[first[n]].status == v1::CLAIMED ? v1::ALREADY_CLAIMED : settled[first[n]].status;
    settled[n] = std::move(repeat);
  }
  return settled;
}

absl::StatusOr<std::vector<absl::StatusOr<AckResult>>> PostgresWakeStore::AckStatement(
    const std::vector<const AckSpec*>& calls) {
  // A claim acked twice in one batch: the first ack ends it, so the others
  // find it no longer live, as if they ran right after.
  std::vector<bool> repeat(calls.size(), false);
  absl::flat_hash_set<std::string> seen;
  bool claims_next = false;
  std::string input = "[";
  for (size_t n = 0; n < calls.size(); ++n) {
    const AckSpec& call = *calls[n];
    if (!seen.insert(call.claim.claim_token).second) {
      repeat[n] = true;
      continue;
    }
    claims_next |= call.next.has_value();
    absl::StrAppend(&input, input.size() == 1 ? "" : ",", "{\"n\":", n, ",\"tenant_id\":");
    AppendJsonString(&input, call.claim.tenant_id);
    input.append(",\"stream\":");
    AppendJsonString(&input, call.claim.stream);
    input.append(",\"claim_token\":");
    AppendJsonString(&input, call.claim.claim_token);
    absl::StrAppend(&input, ",\"ids\":[", absl::StrJoin(call.wake_ids, ","), "]}");
  }
  input.append("]");
  std::vector<std::optional<AckResult>> settled(calls.size());
  const absl::Time started = absl::Now();
  absl::Status status = pool_.Run([&](pqxx::connection& c) -> absl::Status {
    settled.assign(calls.size(), std::nullopt);
    auto ack = [&](pqxx::transaction_base& tx) -> absl::Status {
      for (const auto& row : tx.exec_prepared("ack_claims", input)) {
        const int64_t n = row[0].as<int64_t>();
        if (n < 0 || static_cast<size_t>(n) >= calls.size() || repeat[n]) {
          return absl::InternalError("ack batch: unexpected row");
        }
        if (!row[1].as<bool>()) continue;  // Not live: answered below.
        settled[n] = AckResult{row[2].as<int64_t>(), row[3].as<bool>(), std::nullopt};
      }
      return absl::OkStatus();
    };
    if (!claims_next) {
      pqxx::nontransaction tx(c);  // One statement.
      return ack(tx);
    }
    // The acks, then the claims of the streams still pending, in one
    // transaction: the ack's row locks keep every other claimer out between
    // the two, and one commit (flushed: it holds acks) covers both.
    pqxx::work tx(c);
    if (absl::Status s = ack(tx); !s.ok()) return s;
    std::vector<const ClaimSpec*> next;
    std::vector<size_t> next_of;
    for (size_t n = 0; n < calls.size(); ++n) {
      if (settled[n].has_value() && settled[n]->more_pending && calls[n]->next.has_value()) {
        next.push_back(&*calls[n]->next);
        next_of.push_back(n);
      }
    }
    if (!next.empty()) {
      absl::StatusOr<std::vector<ClaimResult>> claimed = RunClaims(tx, next, /*async=*/false);
      if (!claimed.ok()) return claimed.status();
      for (size_t i = 0; i < next.size(); ++i) settled[next_of[i]]->next = (*claimed)[i];
    }
    tx.commit();
    return absl::OkStatus();
  });
  WarnIfSlow("slow_ack_statement", started, calls.size(), status);
  if (!status.ok()) return status;
  std::vector<absl::StatusOr<AckResult>> results;
  results.reserve(calls.size());
  for (size_t n = 0; n < calls.size(); ++n) {
    if (settled[n].has_value()) {
      results.push_back(*std::move(settled[n]));
    } else {
      results.push_back(absl::FailedPreconditionError(kClaimNotLive));
    }
  }
  return results;
}

absl::StatusOr<std::vector<ExtendResult>> PostgresWakeStore::ExtendClaims(
    const std::vector<ClaimKey>& claims, absl::Duration lease) {
  std::vector<ExtendResult> results;
  for (const ClaimKey& claim : claims) results.push_back(ExtendResult{claim, false, {}});
  if (claims.empty()) return results;
  std::string input = "[";
  for (const ClaimKey& claim : claims) {
    input.append(input.size() == 1 ? "{\"tenant_id\":" : ",{\"tenant_id\":");
    AppendJsonString(&input, claim.tenant_id);
    input.append(",\"stream\":");
    AppendJsonString(&input, claim.stream);
    input.append(",\"claim_token\":");
    AppendJsonString(&input, claim.claim_token);
    input.append("}");
  }
  input.append("]");
  using Key = std::tuple<std::string, std::string, std::string>;
  absl::flat_hash_map<Key, absl::Time> extended;
  absl::Status status = pool_.Run([&](pqxx::connection& c) -> absl::Status {
    extended.clear();
    pqxx::nontransaction tx(c);  // One statement.
    for (const auto& row : tx.exec_prepared("extend_claims", input, LeaseMillis(lease))) {
      extended[Key(row[0].c_str(), row[1].c_str(), row[2].c_str())] =
          FromMicros(row[3].as<int64_t>());
    }
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  for (ExtendResult& result : results) {
    auto it =
        extended.find(Key(result.claim.tenant_id, result.claim.stream, result.claim.claim_token));
    if (it == extended.end()) continue;
    result.extended = true;
    result.lease_expires_at = it->second;
  }
  return results;
}

absl::StatusOr<int64_t> PostgresWakeStore::ReleaseClaim(const ClaimKey& claim) {
  int64_t released = 0;
  absl::Status status = pool_.Run([&](pqxx::connection& c) -> absl::Status {
    pqxx::nontransaction tx(c);  // One statement.
    pqxx::row row =
        tx.exec_prepared1("release_claim", claim.tenant_id, claim.stream, claim.claim_token);
    if (!row[0].as<bool>()) {
      return absl::FailedPreconditionError(kClaimNotLive);
    }
    released = row[1].as<int64_t>();
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  return released;
}

absl::StatusOr<int64_t> PostgresWakeStore::ReleaseExpiredClaims() {
  int64_t ended = 0;
  absl::Status status = pool_.Run([&](pqxx::connection& c) -> absl::Status {
    pqxx::nontransaction tx(c);
    ended = tx.exec_prepared("release_expired")[0][0].as<int64_t>();
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  return ended;
}

}  // namespace wake::registry
