#include "tests/chaos/accounting.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "grpcpp/support/status_code_enum.h"

namespace wake::chaos {
namespace {

std::string Time(absl::Time t) { return absl::FormatTime("%H:%M:%E3S", t, absl::LocalTimeZone()); }

}  // namespace

void Accounting::Expect(const WakeKey& key, const std::string& stream) { expected_[key] = stream; }

Accounting::WakeState& Accounting::Wake(int64_t id, const WakeKey& key) {
  auto [it, inserted] = wakes_.try_emplace(id);
  if (inserted) {
    it->second.key = key;
    ids_[key].insert(id);
  } else if (it->second.key != key) {
    ++conflicting_ids_;
  }
  return it->second;
}

void Accounting::Evaluated(int64_t wake_id, const WakeKey& key) {
  Wake(wake_id, key).evaluated = true;
}

void Accounting::Record(const std::string& runner, const RecordLine& line) {
  switch (line.kind) {
    case RecordLine::Kind::kClaim: {
      ClaimState& claim = claims_[{runner, line.session_id, line.claim_token}];
      for (const RecordedWake& recorded : line.wakes) {
        WakeState& wake = Wake(recorded.id, {recorded.registration_id, recorded.source_event_key});
        wake.delivered_at.push_back(line.at);
        wake.runners.push_back(runner);
        claim.wake_ids.push_back(recorded.id);
      }
      break;
    }
    case RecordLine::Kind::kHold: {
      ++held_;
      auto it = claims_.find({runner, line.session_id, line.claim_token});
      if (it == claims_.end()) break;
      for (int64_t id : it->second.wake_ids) wakes_.at(id).held = true;
      break;
    }
    case RecordLine::Kind::kAckSent:
    case RecordLine::Kind::kAck: {
      auto it = claims_.find({runner, line.session_id, line.claim_token});
      if (it == claims_.end()) {
        ++orphan_acks_;
        break;
      }
      if (line.kind == RecordLine::Kind::kAck) ++ack_codes_[line.code];
      for (int64_t id : it->second.wake_ids) {
        WakeState& wake = wakes_.at(id);
        wake.ack_attempted = true;
        wake.first_ack_sent = std::min(wake.first_ack_sent, line.at);
        if (line.kind == RecordLine::Kind::kAck && line.code == grpc::StatusCode::OK) {
          wake.ok_acked_at.push_back(line.at);
        }
      }
      break;
    }
    case RecordLine::Kind::kSessionOpen:
      ++sessions_opened_;
      break;
    case RecordLine::Kind::kStart:
    case RecordLine::Kind::kSessionClosed:
      break;
  }
}

void Accounting::Audit(const AuditRow& row) {
  WakeState& wake = Wake(row.wake_id, {row.registration_id, row.source_event_key});
  if (row.inserted) {
    wake.audit_inserted = true;
    wake.inserted_at = row.at;
  } else {
    wake.audit_deleted = true;
    wake.deleted_at = row.at;
  }
}

void Accounting::Remaining(const std::vector<RemainingWake>& rows) {
  remaining_known_ = true;
  for (const RemainingWake& row : rows) {
    WakeState& wake = Wake(row.id, {row.registration_id, row.source_event_key});
    wake.remaining = true;
    wake.remaining_claimed = row.claimed;
  }
}

bool Accounting::IsAcked(const WakeState& wake) {
  // Only an ack deletes a wake row; a row deleted after our runner sent an
  // ack whose reply never came was acked by that ack.
  return IsAckedOk(wake) ||
         (wake.audit_deleted && wake.ack_attempted && wake.deleted_at >= wake.first_ack_sent);
}

bool Accounting::PairAcked(const WakeKey& key) const {
  auto it = ids_.find(key);
  if (it == ids_.end()) return false;
  return std::any_of(it->second.begin(), it->second.end(),
                     [this](int64_t id) { return IsAcked(wakes_.at(id)); });
}

std::vector<WakeKey> Accounting::Unacked() const {
  std::vector<WakeKey> out;
  for (const auto& [key, stream] : expected_) {
    if (!PairAcked(key)) out.push_back(key);
  }
  return out;
}

std::set<int64_t> Accounting::IdsOf(const WakeKey& key) const {
  auto it = ids_.find(key);
  return it == ids_.end() ? std::set<int64_t>() : it->second;
}

const std::string& Accounting::StreamOf(const WakeKey& key) const {
  static const std::string kUnknown = "?";
  auto it = expected_.find(key);
  return it == expected_.end() ? kUnknown : it->second;
}

Report Accounting::Summarize(size_t sample_size) const {
  Report r;
  r.expected = static_cast<int64_t>(expected_.size());
  r.held = held_;
  r.orphan_acks = orphan_acks_;
  r.conflicting_ids = conflicting_ids_;
  r.ack_codes = ack_codes_;
  r.sessions_opened = sessions_opened_;
  for (const auto& [id, wake] : wakes_) {
    ++r.produced;
    if (!wake.delivered_at.empty()) ++r.delivered;
    r.deliveries += static_cast<int64_t>(wake.delivered_at.size());
    if (IsAcked(wake)) {
      ++r.acked;
      if (!IsAckedOk(wake)) ++r.acked_by_database;
    }
    if (wake.ok_acked_at.size() > 1) {
      ++r.double_acks;
      if (r.double_ack_sample.size() < sample_size) r.double_ack_sample.push_back(id);
    }
    if (!wake.ok_acked_at.empty()) {
      const absl::Time first_ack =
          *std::min_element(wake.ok_acked_at.begin(), wake.ok_acked_at.end());
      if (std::any_of(wake.delivered_at.begin(), wake.delivered_at.end(),
                      [&](absl::Time t) { return t > first_ack; })) {
        ++r.redelivered_after_ack;
      }
      if (wake.remaining) ++r.acked_but_remaining;
    }
    if (expected_.count(wake.key) == 0 && tolerated_.count(wake.key) == 0) {
      ++r.unexpected;
      if (r.unexpected_sample.size() < sample_size) r.unexpected_sample.push_back(id);
    }
  }
  for (const auto& [key, ids] : ids_) {
    if (ids.size() > 1) {
      ++r.duplicated;
      r.duplicate_extra += static_cast<int64_t>(ids.size()) - 1;
      if (r.duplicated_sample.size() < sample_size) r.duplicated_sample.push_back(key);
    }
  }
  for (const auto& [key, stream] : expected_) {
    if (PairAcked(key)) continue;
    ++r.lost;
    if (r.lost_sample.size() < sample_size) r.lost_sample.push_back(key);
    auto it = ids_.find(key);
    if (it == ids_.end()) {
      ++r.lost_never_produced;
      continue;
    }
    bool pending = false, claimed = false, deleted = false;
    for (int64_t id : it->second) {
      const WakeState& wake = wakes_.at(id);
      pending |= wake.remaining && !wake.remaining_claimed;
      claimed |= wake.remaining && wake.remaining_claimed;
      deleted |= wake.audit_deleted;
    }
    if (pending) {
      ++r.lost_pending;
    } else if (claimed) {
      ++r.lost_claimed;
    } else if (deleted) {
      ++r.lost_deleted_unacked;
    } else {
      ++r.lost_unknown;
    }
  }
  return r;
}

std::string Accounting::Describe(const WakeKey& key) const {
  std::string out = absl::StrCat("registration ", key.first, " event ", key.second, " (stream ",
                                 StreamOf(key), expected_.count(key) ? "" : ", NOT expected", ")");
  auto it = ids_.find(key);
  if (it == ids_.end()) return absl::StrCat(out, ": no wake id seen anywhere");
  for (int64_t id : it->second) {
    const WakeState& w = wakes_.at(id);
    std::vector<std::string> facts;
    if (w.evaluated) facts.push_back("returned by an evaluation");
    if (w.audit_inserted) facts.push_back(absl::StrCat("row inserted ", Time(w.inserted_at)));
    for (size_t i = 0; i < w.delivered_at.size(); ++i) {
      facts.push_back(absl::StrCat("received by ", w.runners[i], " ", Time(w.delivered_at[i])));
    }
    for (absl::Time t : w.ok_acked_at) facts.push_back(absl::StrCat("ack OK ", Time(t)));
    if (w.held) facts.push_back("held without an ack by a sabotaging runner");
    if (w.ack_attempted && w.ok_acked_at.empty()) {
      facts.push_back(absl::StrCat("ack sent ", Time(w.first_ack_sent), ", no OK reply"));
    }
    if (w.audit_deleted) facts.push_back(absl::StrCat("row deleted ", Time(w.deleted_at)));
    if (w.remaining) {
      facts.push_back(w.remaining_claimed ? "row still in wakes (claimed)"
                                          : "row still in wakes (pending)");
    } else if (remaining_known_ && !w.audit_deleted) {
      facts.push_back("row not in wakes at the end");
    }
    absl::StrAppend(&out, "\n      wake ", id, ": ", absl::StrJoin(facts, "; "));
  }
  return out;
}

}  // namespace wake::chaos
