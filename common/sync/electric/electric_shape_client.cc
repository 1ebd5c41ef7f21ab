#include "common/sync/electric/electric_shape_client.h"

#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/cord.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/strip.h"
#include "common/sync/electric/electric_values.h"

namespace wake::sync {
namespace {

constexpr size_t kMaxQuotedBody = 500;

absl::Status Malformed(const std::string& request, absl::string_view what) {
  return absl::UnavailableError(
      absl::StrCat("malformed response from electric to ", request, ": ", what));
}

// What Electric said about a rejected request: its {"message", "errors"}
// body, or the raw body (shortened).
std::string ServerMessage(const std::string& body) {
  absl::string_view trimmed = absl::StripAsciiWhitespace(body);
  if (trimmed.empty()) return "(empty body)";
  nlohmann::json parsed = nlohmann::json::parse(trimmed.begin(), trimmed.end(), nullptr,
                                                /*allow_exceptions=*/false);
  // {"message", "errors"} (lib/electric/shapes/api/response.ex), or
  // {"code", "error"} / {"code", "message"} (lib/electric/plug/serve_shape_plug.ex).
  if (parsed.is_object()) {
    for (const char* key : {"message", "error"}) {
      if (!parsed.contains(key) || !parsed[key].is_string()) continue;
      std::string message = parsed[key].get<std::string>();
      if (parsed.contains("errors")) absl::StrAppend(&message, " ", parsed["errors"].dump());
      if (parsed.contains("code") && parsed["code"].is_string()) {
        absl::StrAppend(&message, " (", parsed["code"].get<std::string>(), ")");
      }
      return message;
    }
  }
  if (trimmed.size() > kMaxQuotedBody) {
    return absl::StrCat(trimmed.substr(0, kMaxQuotedBody), "...");
  }
  return std::string(trimmed);
}

bool IsRetryableClientError(int status) { return status == 408 || status == 425 || status == 429; }

// Electric sends txids as JSON numbers (lib/electric/log_items.ex); older
// servers and proxies may send decimal strings.
absl::StatusOr<int64_t> ParseTxid(const nlohmann::json& txid) {
  if (txid.is_number_unsigned()) {
    const uint64_t value = txid.get<uint64_t>();
    if (value <= static_cast<uint64_t>(INT64_MAX)) return static_cast<int64_t>(value);
  } else if (txid.is_number_integer()) {
    const int64_t value = txid.get<int64_t>();
    if (value >= 0) return value;
  } else if (txid.is_string()) {
    absl::StatusOr<int64_t> value = ParsePgInt8(txid.get<std::string>());
    if (value.ok() && *value >= 0) return value;
  }
  return absl::InvalidArgumentError(absl::StrCat("txid ", txid.dump(), " is not an xid"));
}

// Retry-After in seconds (RFC 9110 also allows a date; Electric sends
// seconds: lib/electric/shapes/api/response.ex put_retry_after_header).
std::optional<int64_t> RetryAfterSeconds(const HttpResponse& http) {
  int64_t seconds = 0;
  const std::string value = http.Header("retry-after");
  if (value.empty() || !absl::SimpleAtoi(value, &seconds) || seconds < 0) return std::nullopt;
  return seconds;
}

absl::Status WithRetryAfter(absl::Status status, const HttpResponse& http) {
  if (std::optional<int64_t> seconds = RetryAfterSeconds(http); seconds.has_value()) {
    status.SetPayload(kRetryAfterPayload, absl::Cord(absl::StrCat(*seconds)));
  }
  return status;
}

}  // namespace

std::optional<absl::Duration> RetryAfter(const absl::Status& status) {
  auto payload = status.GetPayload(kRetryAfterPayload);
  int64_t seconds = 0;
  if (!payload.has_value() || !absl::SimpleAtoi(std::string(*payload), &seconds)) {
    return std::nullopt;
  }
  return absl::Seconds(seconds);
}

std::string UrlEncode(absl::string_view text) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(text.size());
  for (unsigned char c : text) {
    if (absl::ascii_isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~') {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    }
  }
  return out;
}

std::string TenantWhereClause(absl::string_view tenant) {
  return absl::StrCat("tenant_id = '", absl::StrReplaceAll(tenant, {{"'", "''"}}), "'");
}

ElectricShapeClient::ElectricShapeClient(ShapeClientOptions options, ShapeDefinition shape,
                                         HttpClient& http)
    : options_(std::move(options)), shape_(std::move(shape)), http_(http) {}

std::string ElectricShapeClient::Url(const ShapePosition& position, bool live,
                                     bool with_secret) const {
  absl::string_view base = options_.base_url;
  while (absl::ConsumeSuffix(&base, "/")) {
  }
  std::string url = absl::StrCat(base, "/v1/shape?table=", UrlEncode(shape_.table),
                                 "&offset=", UrlEncode(position.offset));
  if (!position.handle.empty()) absl::StrAppend(&url, "&handle=", UrlEncode(position.handle));
  if (live) {
    absl::StrAppend(&url, "&live=true");
    if (!position.cursor.empty()) absl::StrAppend(&url, "&cursor=", UrlEncode(position.cursor));
  }
  absl::StrAppend(&url, "&replica=full&columns=", UrlEncode(absl::StrJoin(shape_.columns, ",")));
  if (!shape_.where.empty()) absl::StrAppend(&url, "&where=", UrlEncode(shape_.where));
  if (with_secret && !options_.secret.empty()) {
    absl::StrAppend(&url, "&secret=", UrlEncode(options_.secret));
  }
  return url;
}

std::string ElectricShapeClient::RequestUrl(const ShapePosition& position, bool live) const {
  return Url(position, live, /*with_secret=*/true);
}

std::string ElectricShapeClient::Describe(const ShapePosition& position, bool live) const {
  return absl::StrCat("GET ", Url(position, live, /*with_secret=*/false));
}

absl::StatusOr<ShapeResponse> ElectricShapeClient::Fetch(
    const ShapePosition& position, bool live, const std::function<bool()>& should_abort) {
  absl::StatusOr<HttpResponse> http =
      http_.Get(RequestUrl(position, live), live ? options_.live_timeout : options_.request_timeout,
                should_abort);
  if (!http.ok()) {
    if (absl::IsCancelled(http.status())) return http.status();
    return absl::Status(http.status().code(),
                        absl::StrCat(Describe(position, live), ": ", http.status().message()));
  }
  return Interpret(*http, Describe(position, live));
}

absl::StatusOr<ShapeResponse> ElectricShapeClient::Interpret(const HttpResponse& http,
                                                             const std::string& request) {
  ShapeResponse response;
  response.handle = http.Header("electric-handle");
  if (http.status == 409) {
    response.must_refetch = true;
    return response;
  }
  if (http.status >= 400 && http.status < 500 && !IsRetryableClientError(http.status)) {
    const std::string message = absl::StrCat("electric rejected ", request, ": HTTP ", http.status,
                                             ": ", ServerMessage(http.body));
    // 401 is a missing or wrong secret (lib/electric/plug/router.ex authenticate).
    if (http.status == 401) return absl::UnauthenticatedError(message);
    if (http.status == 403) return absl::PermissionDeniedError(message);
    return absl::InvalidArgumentError(message);
  }
  if (http.status != 200 && http.status != 204) {
    return WithRetryAfter(absl::UnavailableError(absl::StrCat(request, ": HTTP ", http.status, ": ",
                                                              ServerMessage(http.body))),
                          http);
  }

  response.offset = http.Header("electric-offset");
  response.cursor = http.Header("electric-cursor");
  // A 204 is how older Electric versions answered a live poll with nothing new.
  response.up_to_date = http.status == 204 || http.headers.count("electric-up-to-date") > 0;

  nlohmann::json messages = nlohmann::json::array();
  absl::string_view body = absl::StripAsciiWhitespace(http.body);
  if (!body.empty()) {
    try {
      messages = nlohmann::json::parse(body.begin(), body.end());
    } catch (const nlohmann::json::exception& e) {
      return absl::UnavailableError(
          absl::StrCat("malformed JSON from electric in response to ", request, ": ", e.what()));
    }
  }
  if (!messages.is_array()) return Malformed(request, "expected a JSON array of messages");

  for (size_t i = 0; i < messages.size(); ++i) {
    const nlohmann::json& message = messages[i];
    const std::string where = absl::StrCat("message ", i, ": ");
    if (!message.is_object() || !message.contains("headers") || !message["headers"].is_object()) {
      return Malformed(request, absl::StrCat(where, "no headers object"));
    }
    const nlohmann::json& headers = message["headers"];
    if (auto control = headers.find("control"); control != headers.end()) {
      if (!control->is_string()) return Malformed(request, absl::StrCat(where, "bad control"));
      const std::string kind = control->get<std::string>();
      if (kind == "up-to-date") {
        response.up_to_date = true;
        if (auto lsn = headers.find("global_last_seen_lsn"); lsn != headers.end()) {
          const std::string text = lsn->is_string() ? lsn->get<std::string>() : lsn->dump();
          absl::StatusOr<uint64_t> parsed = ParseLsn(text);
          if (!parsed.ok()) {
            return Malformed(
                request, absl::StrCat(where, "global_last_seen_lsn ", parsed.status().message()));
          }
          response.global_last_seen_lsn = *parsed;
        }
      } else if (kind == "must-refetch") {
        response.must_refetch = true;
      } else if (kind == "snapshot-end") {
        // xmin/xmax/xip_list as decimal strings of xid8 values
        // (lib/electric/shapes/consumer/snapshotter.ex).
        if (auto xmin = headers.find("xmin"); xmin != headers.end()) {
          absl::StatusOr<int64_t> parsed = ParseTxid(*xmin);
          if (!parsed.ok()) {
            return Malformed(request,
                             absl::StrCat(where, "snapshot-end xmin ", parsed.status().message()));
          }
          response.snapshot_xmin = *parsed;
        }
      }
      // Other control messages carry nothing we follow.
      continue;
    }
    auto operation = headers.find("operation");
    if (operation == headers.end() || !operation->is_string()) {
      return Malformed(request, absl::StrCat(where, "neither a control nor an operation"));
    }
    ShapeChange change;
    const std::string op = operation->get<std::string>();
    if (op == "insert") {
      change.op = ChangeOp::kInsert;
    } else if (op == "update") {
      change.op = ChangeOp::kUpdate;
    } else if (op == "delete") {
      change.op = ChangeOp::kDelete;
    } else {
      return Malformed(request, absl::StrCat(where, "unknown operation \"", op, "\""));
    }
    if (!message.contains("value") || !message["value"].is_object()) {
      return Malformed(request, absl::StrCat(where, "value is not an object"));
    }
    change.value = message["value"];
    if (message.contains("key") && message["key"].is_string()) {
      change.key = message["key"].get<std::string>();
    }
    if (auto txids = headers.find("txids"); txids != headers.end() && !txids->is_null()) {
      if (!txids->is_array()) return Malformed(request, absl::StrCat(where, "txids is not a list"));
      for (const nlohmann::json& txid : *txids) {
        absl::StatusOr<int64_t> parsed = ParseTxid(txid);
        if (!parsed.ok()) return Malformed(request, absl::StrCat(where, parsed.status().message()));
        change.txids.push_back(*parsed);
      }
    }
    if (auto lsn = headers.find("lsn"); lsn != headers.end()) {
      change.lsn = lsn->is_string() ? lsn->get<std::string>() : lsn->dump();
    }
    if (auto last = headers.find("last"); last != headers.end() && last->is_boolean()) {
      change.last = last->get<bool>();
    }
    response.changes.push_back(std::move(change));
  }

  if (response.must_refetch) {
    // Nothing in a response that ends the shape may be applied.
    response.changes.clear();
    response.up_to_date = false;
    response.global_last_seen_lsn.reset();
    response.snapshot_xmin.reset();
    return response;
  }
  if (response.handle.empty()) return Malformed(request, "no electric-handle header");
  if (response.offset.empty()) return Malformed(request, "no electric-offset header");
  return response;
}

}  // namespace wake::sync
