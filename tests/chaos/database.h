// The chaos driver's direct view of the database, independent of the
// services: an audit trigger on `wakes` (every row inserted or deleted, in
// the transaction that did it), and the end state of `wakes`,
// `wake_registrations` and `stream_claims` to cross-check reported losses and
// duplicates.
#pragma once

#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "tests/chaos/accounting.h"

namespace wake::chaos {

// Creates chaos_wake_audit and its trigger on wakes (the registry must have
// migrated the database first). The audit table is not in the registry's
// publication, so the services never see it.
absl::Status InstallAudit(const std::string& url);

// Audit rows with seq > after_seq, in order.
absl::StatusOr<std::vector<AuditRow>> ReadAudit(const std::string& url, int64_t after_seq);

// Every row of wakes.
absl::StatusOr<std::vector<RemainingWake>> ReadWakes(const std::string& url);

// Ids of every row of wake_registrations.
absl::StatusOr<std::set<int64_t>> ReadRegistrationIds(const std::string& url);

// One query's rows, columns joined by '|' (for evidence in the report).
absl::StatusOr<std::vector<std::string>> QueryRows(const std::string& url, const std::string& sql);

// `text` as an SQL string literal.
std::string SqlQuote(const std::string& text);

}  // namespace wake::chaos
