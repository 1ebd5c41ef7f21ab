#include "common/sync/electric/electric_values.h"

#include <optional>

#include "absl/strings/ascii.h"
#include "absl/strings/cord.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/civil_time.h"

namespace wake::sync {
namespace {

constexpr absl::string_view kRegistrations = "wake_registrations";
constexpr absl::string_view kWakes = "wakes";
constexpr absl::string_view kMarkers = "wake_sync_markers";
constexpr char kColumnPayload[] = "wakeline.dev/column";

absl::Status ColumnError(absl::string_view column, std::string message) {
  absl::Status status = absl::InvalidArgumentError(std::move(message));
  status.SetPayload(kColumnPayload, absl::Cord(column));
  return status;
}

absl::Status NotA(absl::string_view text, absl::string_view type) {
  return absl::InvalidArgumentError(absl::StrCat("\"", text, "\" is not ", type));
}

// Digits only, with an optional leading '-': SimpleAtoi alone would also
// accept whitespace and '+', which Postgres never prints.
bool IsPlainInteger(absl::string_view text) {
  if (!text.empty() && text.front() == '-') text.remove_prefix(1);
  if (text.empty()) return false;
  for (char c : text) {
    if (!absl::ascii_isdigit(static_cast<unsigned char>(c))) return false;
  }
  return true;
}

bool ParseHex32(absl::string_view text, uint32_t* out) {
  if (text.empty() || text.size() > 8) return false;
  uint32_t value = 0;
  for (char c : text) {
    int digit;
    if (c >= '0' && c <= '9') {
      digit = c - '0';
    } else if (c >= 'a' && c <= 'f') {
      digit = c - 'a' + 10;
    } else if (c >= 'A' && c <= 'F') {
      digit = c - 'A' + 10;
    } else {
      return false;
    }
    value = value * 16 + static_cast<uint32_t>(digit);
  }
  *out = value;
  return true;
}

// A cursor over timestamp text.
class Scanner {
 public:
  explicit Scanner(absl::string_view text) : text_(text) {}

  bool Digits(size_t min, size_t max, int64_t* out) {
    size_t n = 0;
    int64_t value = 0;
    while (n < max && pos_ + n < text_.size() &&
           absl::ascii_isdigit(static_cast<unsigned char>(text_[pos_ + n]))) {
      value = value * 10 + (text_[pos_ + n] - '0');
      ++n;
    }
    if (n < min) return false;
    pos_ += n;
    *out = value;
    return true;
  }
  // Fractional seconds as nanoseconds (1 to 9 digits).
  bool Fraction(int64_t* nanos) {
    const size_t start = pos_;
    int64_t value = 0;
    if (!Digits(1, 9, &value)) return false;
    for (size_t n = pos_ - start; n < 9; ++n) value *= 10;
    *nanos = value;
    return true;
  }
  bool Take(char c) {
    if (pos_ < text_.size() && text_[pos_] == c) {
      ++pos_;
      return true;
    }
    return false;
  }
  bool Peek(char c) const { return pos_ < text_.size() && text_[pos_] == c; }
  bool Done() const { return pos_ == text_.size(); }

 private:
  absl::string_view text_;
  size_t pos_ = 0;
};

// The text of a column: nullopt when the column is absent or NULL.
std::optional<std::string> ColumnText(const nlohmann::json& row, const char* column) {
  auto it = row.find(column);
  if (it == row.end() || it->is_null()) return std::nullopt;
  if (it->is_string()) return it->get<std::string>();
  if (it->is_boolean()) return std::string(it->get<bool>() ? "true" : "false");
  // Numbers, and jsonb that a proxy may have embedded as JSON.
  return it->dump();
}

// Decodes rows column by column; the first error wins and names the column.
class RowReader {
 public:
  RowReader(const nlohmann::json& row, absl::string_view table, bool full_row)
      : row_(row), table_(table), full_row_(full_row) {}

  // In full rows every column must be present and non-NULL; in partial rows
  // (deletes) absent or NULL columns are skipped.
  void Text(const char* column, std::string* out) {
    Read(column, [out](absl::string_view text) -> absl::Status {
      *out = std::string(text);
      return absl::OkStatus();
    });
  }
  void Int8(const char* column, int64_t* out) {
    Read(column, [out](absl::string_view text) -> absl::Status {
      absl::StatusOr<int64_t> v = ParsePgInt8(text);
      if (v.ok()) *out = *v;
      return v.status();
    });
  }
  void Int4(const char* column, int32_t* out) {
    Read(column, [out](absl::string_view text) -> absl::Status {
      absl::StatusOr<int32_t> v = ParsePgInt4(text);
      if (v.ok()) *out = *v;
      return v.status();
    });
  }
  void Bool(const char* column, bool* out) {
    Read(column, [out](absl::string_view text) -> absl::Status {
      absl::StatusOr<bool> v = ParsePgBool(text);
      if (v.ok()) *out = *v;
      return v.status();
    });
  }
  void Timestamptz(const char* column, absl::Time* out) {
    Read(column, [out](absl::string_view text) -> absl::Status {
      absl::StatusOr<absl::Time> v = ParsePgTimestamptz(text);
      if (v.ok()) *out = *v;
      return v.status();
    });
  }
  void ConditionJson(const char* column, Condition* out) {
    Read(column, [out](absl::string_view text) -> absl::Status {
      absl::StatusOr<Condition> v = ConditionFromJson(text);
      if (v.ok()) *out = *v;
      return v.status();
    });
  }
  // Whether the column is present (NULL or not) in the row.
  bool Has(const char* column) const { return row_.contains(column); }

  void Fail(absl::Status status) {
    if (status_.ok()) status_ = std::move(status);
  }
  absl::string_view table() const { return table_; }
  const absl::Status& status() const { return status_; }

 private:
  template <typename Decode>
  void Read(const char* column, Decode decode) {
    if (!status_.ok()) return;
    std::optional<std::string> text = ColumnText(row_, column);
    if (!text.has_value()) {
      if (full_row_) {
        status_ = ColumnError(
            column, absl::StrCat(table_, ".", column,
                                 Has(column) ? ": unexpected NULL" : ": missing from the row"));
      }
      return;
    }
    absl::Status decoded = decode(*text);
    if (!decoded.ok()) {
      status_ = ColumnError(column, absl::StrCat(table_, ".", column, ": ", decoded.message()));
    }
  }

  const nlohmann::json& row_;
  const absl::string_view table_;
  const bool full_row_;
  absl::Status status_;
};

absl::Status CheckObject(const nlohmann::json& value, absl::string_view table) {
  if (!value.is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat(table, ": message value is not a JSON object: ", value.dump()));
  }
  return absl::OkStatus();
}

}  // namespace

const std::vector<std::string>& RegistrationShapeColumns() {
  static const std::vector<std::string>* columns = new std::vector<std::string>{
      "id",           "tenant_id",  "subscriber_url", "source_url",       "condition",
      "debounce_ms",  "timeout_ms", "one_shot",       "timeout_consumed", "include_response",
      "manifest_key", "created_at"};
  return *columns;
}

const std::vector<std::string>& MarkerShapeColumns() {
  static const std::vector<std::string>* columns =
      new std::vector<std::string>{"replica_id", "seq"};
  return *columns;
}

std::string ShapeValueErrorColumn(const absl::Status& status) {
  auto column = status.GetPayload(kColumnPayload);
  return column.has_value() ? std::string(*column) : std::string();
}

absl::StatusOr<MarkerRow> MarkerRowFromShapeValue(const nlohmann::json& value, bool full_row) {
  if (absl::Status s = CheckObject(value, kMarkers); !s.ok()) return s;
  MarkerRow marker;
  RowReader key(value, kMarkers, /*full_row=*/true);
  key.Text("replica_id", &marker.replica_id);
  if (!key.status().ok()) return key.status();
  RowReader row(value, kMarkers, full_row);
  row.Int8("seq", &marker.seq);
  if (!row.status().ok()) return row.status();
  return marker;
}

const std::vector<std::string>& WakeShapeColumns() {
  static const std::vector<std::string>* columns =
      new std::vector<std::string>{"id", "tenant_id", "stream", "registration_id", "claim_token"};
  return *columns;
}

absl::StatusOr<int64_t> ParsePgInt8(absl::string_view text) {
  int64_t value = 0;
  if (!IsPlainInteger(text) || !absl::SimpleAtoi(text, &value)) return NotA(text, "a bigint");
  return value;
}

absl::StatusOr<int32_t> ParsePgInt4(absl::string_view text) {
  int32_t value = 0;
  if (!IsPlainInteger(text) || !absl::SimpleAtoi(text, &value)) return NotA(text, "an integer");
  return value;
}

absl::StatusOr<bool> ParsePgBool(absl::string_view text) {
  if (text == "t" || text == "true") return true;
  if (text == "f" || text == "false") return false;
  return NotA(text, "a boolean");
}

absl::StatusOr<absl::Time> ParsePgTimestamptz(absl::string_view text) {
  if (text == "infinity") return absl::InfiniteFuture();
  if (text == "-infinity") return absl::InfinitePast();
  Scanner s(text);
  int64_t year, month, day, hour, minute, second;
  if (!s.Digits(4, 7, &year) || !s.Take('-') || !s.Digits(2, 2, &month) || !s.Take('-') ||
      !s.Digits(2, 2, &day) || !(s.Take(' ') || s.Take('T')) || !s.Digits(2, 2, &hour) ||
      !s.Take(':') || !s.Digits(2, 2, &minute) || !s.Take(':') || !s.Digits(2, 2, &second)) {
    return NotA(text, "a timestamptz");
  }
  int64_t nanos = 0;
  if (s.Take('.') && !s.Fraction(&nanos)) return NotA(text, "a timestamptz");
  int64_t offset_seconds = 0;
  if (s.Take('Z')) {
    // UTC.
  } else if (s.Peek('+') || s.Peek('-')) {
    const int sign = s.Take('-') ? -1 : 1;
    s.Take('+');
    int64_t oh = 0, om = 0, os = 0;
    if (!s.Digits(2, 2, &oh)) return NotA(text, "a timestamptz");
    const bool colon = s.Take(':');
    if (colon || !s.Done()) {
      if (!s.Digits(2, 2, &om)) return NotA(text, "a timestamptz");
      if (s.Take(':') && !s.Digits(2, 2, &os)) return NotA(text, "a timestamptz");
    }
    offset_seconds = sign * (oh * 3600 + om * 60 + os);
  } else {
    return NotA(text, "a timestamptz (no time zone)");
  }
  if (!s.Done()) return NotA(text, "a timestamptz (BC dates are not supported)");
  if (month < 1 || month > 12 || day < 1 || day > 31 || hour > 23 || minute > 59 || second > 59) {
    return NotA(text, "a timestamptz");
  }
  const absl::CivilSecond civil(year, static_cast<int>(month), static_cast<int>(day),
                                static_cast<int>(hour), static_cast<int>(minute),
                                static_cast<int>(second));
  if (civil.day() != day) return NotA(text, "a timestamptz");  // e.g. February 30th.
  return absl::FromCivil(civil, absl::UTCTimeZone()) - absl::Seconds(offset_seconds) +
         absl::Nanoseconds(nanos);
}

absl::StatusOr<uint64_t> ParseLsn(absl::string_view text) {
  const size_t slash = text.find('/');
  if (slash != absl::string_view::npos) {
    uint32_t high = 0, low = 0;
    if (!ParseHex32(text.substr(0, slash), &high) || !ParseHex32(text.substr(slash + 1), &low)) {
      return NotA(text, "an LSN");
    }
    return (static_cast<uint64_t>(high) << 32) | low;
  }
  uint64_t value = 0;
  if (!IsPlainInteger(text) || text.front() == '-' || !absl::SimpleAtoi(text, &value)) {
    return NotA(text, "an LSN");
  }
  return value;
}

std::string FormatLsn(uint64_t lsn) {
  return absl::StrFormat("%X/%X", static_cast<uint32_t>(lsn >> 32),
                         static_cast<uint32_t>(lsn & 0xffffffffu));
}

absl::StatusOr<Registration> RegistrationFromShapeValue(const nlohmann::json& value,
                                                        bool full_row) {
  if (absl::Status s = CheckObject(value, kRegistrations); !s.ok()) return s;
  Registration r;
  RowReader row(value, kRegistrations, full_row);
  // The id identifies the row even in a delete.
  RowReader id_reader(value, kRegistrations, /*full_row=*/true);
  id_reader.Int8("id", &r.id);
  if (!id_reader.status().ok()) return id_reader.status();
  row.Text("tenant_id", &r.tenant_id);
  row.Text("subscriber_url", &r.subscriber_url);
  row.Text("source_url", &r.source_url);
  row.ConditionJson("condition", &r.condition);
  row.Int4("debounce_ms", &r.debounce_ms);
  row.Int4("timeout_ms", &r.timeout_ms);
  row.Bool("one_shot", &r.one_shot);
  row.Bool("timeout_consumed", &r.timeout_consumed);
  row.Bool("include_response", &r.include_response);
  row.Text("manifest_key", &r.manifest_key);
  row.Timestamptz("created_at", &r.created_at);
  if (!row.status().ok()) return row.status();
  return r;
}

absl::StatusOr<WakeRow> WakeRowFromShapeValue(const nlohmann::json& value, bool full_row) {
  if (absl::Status s = CheckObject(value, kWakes); !s.ok()) return s;
  WakeRow w;
  RowReader id_reader(value, kWakes, /*full_row=*/true);
  id_reader.Int8("id", &w.id);
  if (!id_reader.status().ok()) return id_reader.status();
  RowReader row(value, kWakes, full_row);
  row.Text("tenant_id", &w.tenant_id);
  row.Text("stream", &w.stream);
  row.Int8("registration_id", &w.registration_id);
  if (full_row && !row.Has("claim_token")) {
    row.Fail(ColumnError("claim_token", "wakes.claim_token: missing from the row"));
  }
  w.pending = !ColumnText(value, "claim_token").has_value();
  if (!row.status().ok()) return row.status();
  return w;
}

}  // namespace wake::sync
