#include "common/sync/postgres/rows.h"

#include <algorithm>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"

namespace wake::sync::pgrows {
namespace {

using pgoutput::Tuple;
using pgoutput::TupleValue;

constexpr const char* kRegistrationColumns[RowLayout::kRegFieldCount] = {
    "id",           "tenant_id",  "subscriber_url", "source_url",       "condition",
    "debounce_ms",  "timeout_ms", "one_shot",       "timeout_consumed", "include_response",
    "manifest_key", "created_at",
};
constexpr const char* kWakeColumns[RowLayout::kWakeFieldCount] = {
    "id", "tenant_id", "stream", "registration_id", "claim_token", "pending",
};

// Reads fixed-width digits; false when they are not all there.
bool TakeDigits(absl::string_view& s, size_t n, int* out) {
  if (s.size() < n) return false;
  int v = 0;
  for (size_t i = 0; i < n; ++i) {
    if (s[i] < '0' || s[i] > '9') return false;
    v = v * 10 + (s[i] - '0');
  }
  *out = v;
  s.remove_prefix(n);
  return true;
}

bool TakeChar(absl::string_view& s, char c) {
  if (s.empty() || s[0] != c) return false;
  s.remove_prefix(1);
  return true;
}

// One value of a row: what it holds, after falling back for 'u'.
struct Cell {
  enum class State { kAbsent, kNull, kValue };
  State state = State::kAbsent;
  absl::string_view text;
};

Cell CellAt(const RowLayout& layout, int field, const Tuple& row, const Tuple* old_row) {
  const int index = layout.Index(field);
  if (index < 0 || static_cast<size_t>(index) >= row.size()) return {};
  const TupleValue* value = &row[index];
  if (value->kind == TupleValue::Kind::kUnchangedToast) {
    if (old_row == nullptr || static_cast<size_t>(index) >= old_row->size()) return {};
    value = &(*old_row)[index];
  }
  switch (value->kind) {
    case TupleValue::Kind::kNull:
      return {Cell::State::kNull, {}};
    case TupleValue::Kind::kText:
      return {Cell::State::kValue, value->data};
    default:
      // Binary values are never requested; unchanged-TOAST without an old
      // value is unknown.
      return {};
  }
}

// Collects fields one by one; remembers the first problem.
class FieldReader {
 public:
  FieldReader(const RowLayout& layout, const Tuple& row, const Tuple* old_row, RowNeed need,
              const char* const* names)
      : layout_(layout), row_(row), old_row_(old_row), need_(need), names_(names) {}

  // True when the field holds a value (parsed into *out); false when it may
  // keep its default. A missing value when one is needed is an error.
  template <typename T, typename Parse>
  bool Read(int field, Parse parse, T* out, bool required) {
    const Cell cell = CellAt(layout_, field, row_, old_row_);
    if (cell.state != Cell::State::kValue) {
      if (required && need_ == RowNeed::kComplete && status_.ok()) {
        // Absent (unchanged TOAST with nothing to fall back on, or no such
        // column) is NOT_FOUND so callers can tell it from bad data.
        status_ = cell.state == Cell::State::kNull
                      ? absl::InvalidArgumentError(absl::StrCat(names_[field], ": null"))
                      : absl::NotFoundError(absl::StrCat(names_[field], ": value not in the row"));
      }
      return false;
    }
    auto parsed = parse(cell.text);
    if (!parsed.ok()) {
      if (status_.ok()) {
        status_ = absl::InvalidArgumentError(
            absl::StrCat(names_[field], ": ", parsed.status().message()));
      }
      return false;
    }
    *out = std::move(*parsed);
    return true;
  }

  bool IsNull(int field) const {
    return CellAt(layout_, field, row_, old_row_).state == Cell::State::kNull;
  }
  bool HasValueOrNull(int field) const {
    return CellAt(layout_, field, row_, old_row_).state != Cell::State::kAbsent;
  }

  const absl::Status& status() const { return status_; }

 private:
  const RowLayout& layout_;
  const Tuple& row_;
  const Tuple* old_row_;
  RowNeed need_;
  const char* const* names_;
  absl::Status status_;
};

absl::StatusOr<std::string> Text(absl::string_view text) { return std::string(text); }

// Even a key-only row has its id.
absl::Status MissingId(bool null) {
  return null ? absl::InvalidArgumentError("id: null")
              : absl::NotFoundError("id: value not in the row");
}

}  // namespace

absl::StatusOr<int64_t> ParseInt64(absl::string_view text) {
  int64_t v = 0;
  if (!absl::SimpleAtoi(text, &v)) {
    return absl::InvalidArgumentError(absl::StrCat("not a bigint: \"", text, "\""));
  }
  return v;
}

absl::StatusOr<int32_t> ParseInt32(absl::string_view text) {
  int32_t v = 0;
  if (!absl::SimpleAtoi(text, &v)) {
    return absl::InvalidArgumentError(absl::StrCat("not an integer: \"", text, "\""));
  }
  return v;
}

absl::StatusOr<bool> ParseBool(absl::string_view text) {
  if (text == "t" || text == "true") return true;
  if (text == "f" || text == "false") return false;
  return absl::InvalidArgumentError(absl::StrCat("not a boolean: \"", text, "\""));
}

absl::StatusOr<absl::Time> ParseTimestamptz(absl::string_view text) {
  if (text == "infinity") return absl::InfiniteFuture();
  if (text == "-infinity") return absl::InfinitePast();
  auto bad = [&text](absl::string_view why) {
    return absl::InvalidArgumentError(
        absl::StrCat("not an ISO timestamptz (", why, "): \"", text, "\""));
  };
  absl::string_view s = text;
  const bool bc = absl::ConsumeSuffix(&s, " BC");
  // Year: four or more digits.
  size_t year_digits = 0;
  while (year_digits < s.size() && s[year_digits] >= '0' && s[year_digits] <= '9') ++year_digits;
  if (year_digits < 4 || year_digits > 9) return bad("year");
  int64_t year = 0;
  if (!absl::SimpleAtoi(s.substr(0, year_digits), &year)) return bad("year");
  s.remove_prefix(year_digits);
  if (bc) year = 1 - year;  // 1 BC is year 0.
  int month = 0, day = 0, hour = 0, minute = 0, second = 0;
  if (!TakeChar(s, '-') || !TakeDigits(s, 2, &month) || !TakeChar(s, '-') ||
      !TakeDigits(s, 2, &day)) {
    return bad("date");
  }
  if (!TakeChar(s, ' ') || !TakeDigits(s, 2, &hour) || !TakeChar(s, ':') ||
      !TakeDigits(s, 2, &minute) || !TakeChar(s, ':') || !TakeDigits(s, 2, &second)) {
    return bad("time");
  }
  int64_t micros = 0;
  if (TakeChar(s, '.')) {
    int digits = 0;
    while (!s.empty() && s[0] >= '0' && s[0] <= '9') {
      if (digits == 6) return bad("fraction");
      micros = micros * 10 + (s[0] - '0');
      ++digits;
      s.remove_prefix(1);
    }
    if (digits == 0) return bad("fraction");
    for (; digits < 6; ++digits) micros *= 10;
  }
  if (s.empty() || (s[0] != '+' && s[0] != '-')) return bad("offset");
  const int sign = s[0] == '-' ? -1 : 1;
  s.remove_prefix(1);
  int off_h = 0, off_m = 0, off_s = 0;
  if (!TakeDigits(s, 2, &off_h)) return bad("offset");
  if (TakeChar(s, ':')) {
    if (!TakeDigits(s, 2, &off_m)) return bad("offset");
    if (TakeChar(s, ':') && !TakeDigits(s, 2, &off_s)) return bad("offset");
  }
  if (!s.empty()) return bad("trailing characters");
  if (month < 1 || month > 12 || day < 1 || day > 31 || hour > 24 || minute > 59 || second > 60) {
    return bad("field out of range");
  }
  const absl::CivilSecond civil(year, month, day, hour, minute, second);
  if (civil.month() != month || civil.day() != day) return bad("no such day");
  const absl::Duration offset =
      sign * (absl::Hours(off_h) + absl::Minutes(off_m) + absl::Seconds(off_s));
  return absl::FromCivil(civil, absl::UTCTimeZone()) - offset + absl::Microseconds(micros);
}

RowLayout::RowLayout(SyncTable table, const std::vector<std::string>& columns)
    : table_(table), index_(std::max<int>(kRegFieldCount, kWakeFieldCount), -1) {
  const char* const* names =
      table == SyncTable::kRegistrations ? kRegistrationColumns : kWakeColumns;
  const int count = table == SyncTable::kRegistrations ? static_cast<int>(kRegFieldCount)
                                                       : static_cast<int>(kWakeFieldCount);
  for (int field = 0; field < count; ++field) {
    for (size_t i = 0; i < columns.size(); ++i) {
      if (columns[i] == names[field]) {
        index_[field] = static_cast<int>(i);
        break;
      }
    }
  }
}

absl::Status RowLayout::CheckComplete() const {
  std::vector<std::string> missing;
  if (table_ == SyncTable::kRegistrations) {
    for (int f = 0; f < kRegFieldCount; ++f) {
      if (index_[f] < 0) missing.push_back(kRegistrationColumns[f]);
    }
  } else {
    for (int f : {kWakeId, kWakeTenantId, kWakeStream, kWakeRegistrationId}) {
      if (index_[f] < 0) missing.push_back(kWakeColumns[f]);
    }
    if (index_[kWakeClaimToken] < 0 && index_[kWakePending] < 0) {
      missing.push_back("claim_token");
    }
  }
  if (missing.empty()) return absl::OkStatus();
  return absl::FailedPreconditionError(
      absl::StrCat(table_ == SyncTable::kRegistrations ? "wake_registrations" : "wakes",
                   ": missing columns ", absl::StrJoin(missing, ", ")));
}

absl::StatusOr<Registration> DecodeRegistration(const RowLayout& layout, const Tuple& row,
                                                const Tuple* old_row, RowNeed need) {
  FieldReader f(layout, row, old_row, need, kRegistrationColumns);
  Registration r;
  if (!f.Read(RowLayout::kRegId, ParseInt64, &r.id, /*required=*/true)) {
    return f.status().ok() ? MissingId(f.IsNull(RowLayout::kRegId)) : f.status();
  }
  f.Read(RowLayout::kRegTenantId, Text, &r.tenant_id, true);
  f.Read(RowLayout::kRegSubscriberUrl, Text, &r.subscriber_url, true);
  f.Read(RowLayout::kRegSourceUrl, Text, &r.source_url, true);
  f.Read(RowLayout::kRegCondition, ConditionFromJson, &r.condition, true);
  f.Read(RowLayout::kRegDebounceMs, ParseInt32, &r.debounce_ms, true);
  f.Read(RowLayout::kRegTimeoutMs, ParseInt32, &r.timeout_ms, true);
  f.Read(RowLayout::kRegOneShot, ParseBool, &r.one_shot, true);
  f.Read(RowLayout::kRegTimeoutConsumed, ParseBool, &r.timeout_consumed, true);
  f.Read(RowLayout::kRegIncludeResponse, ParseBool, &r.include_response, true);
  f.Read(RowLayout::kRegManifestKey, Text, &r.manifest_key, true);
  f.Read(RowLayout::kRegCreatedAt, ParseTimestamptz, &r.created_at, true);
  if (!f.status().ok()) return f.status();
  return r;
}

absl::StatusOr<WakeRow> DecodeWake(const RowLayout& layout, const Tuple& row,
                                   const WakeRow* previous, RowNeed need) {
  // A wake's needed fields never come from an old tuple: for `wakes` (default
  // replica identity) updates carry none, so `previous` fills the gaps.
  const RowNeed field_need = previous != nullptr ? RowNeed::kKey : need;
  FieldReader f(layout, row, nullptr, field_need, kWakeColumns);
  WakeRow w;
  if (previous != nullptr) w = *previous;
  if (!f.Read(RowLayout::kWakeId, ParseInt64, &w.id, true)) {
    return f.status().ok() ? MissingId(f.IsNull(RowLayout::kWakeId)) : f.status();
  }
  f.Read(RowLayout::kWakeTenantId, Text, &w.tenant_id, true);
  f.Read(RowLayout::kWakeStream, Text, &w.stream, true);
  f.Read(RowLayout::kWakeRegistrationId, ParseInt64, &w.registration_id, true);
  if (layout.Index(RowLayout::kWakePending) >= 0) {
    f.Read(RowLayout::kWakePending, ParseBool, &w.pending, true);
  } else if (f.HasValueOrNull(RowLayout::kWakeClaimToken) &&
             !(need == RowNeed::kKey && f.IsNull(RowLayout::kWakeClaimToken) &&
               previous != nullptr)) {
    // A key-only old row has claim_token null because it is not part of the
    // key, not because the wake was pending: keep what we knew then.
    w.pending = f.IsNull(RowLayout::kWakeClaimToken);
  } else if (previous == nullptr && field_need == RowNeed::kComplete) {
    return absl::NotFoundError("claim_token: value not in the row");
  }
  if (!f.status().ok()) return f.status();
  return w;
}

}  // namespace wake::sync::pgrows
