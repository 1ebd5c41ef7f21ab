#include "common/sync/electric/electric_shape_client.h"

#include <utility>

#include "absl/strings/ascii.h"
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
  if (parsed.is_object() && parsed.contains("message") && parsed["message"].is_string()) {
    std::string message = parsed["message"].get<std::string>();
    if (parsed.contains("errors")) absl::StrAppend(&message, " ", parsed["errors"].dump());
    return message;
  }
  if (trimmed.size() > kMaxQuotedBody) {
    return absl::StrCat(trimmed.substr(0, kMaxQuotedBody), "...");
  }
  return std::string(trimmed);
}

bool IsRetryableClientError(int status) {
  return status == 408 || status == 425 || status == 429;
}

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
  return absl::InvalidArgumentError(absl::StrCat("txid ", txid.dump(), " is not a 64-bit xid"));
}

}  // namespace

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
      http_.Get(RequestUrl(position, live),
                live ? options_.live_timeout : options_.request_timeout, should_abort);
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
    return absl::InvalidArgumentError(absl::StrCat("electric rejected ", request, ": HTTP ",
                                                   http.status, ": ", ServerMessage(http.body)));
  }
  if (http.status != 200 && http.status != 204) {
    return absl::UnavailableError(
        absl::StrCat(request, ": HTTP ", http.status, ": ", ServerMessage(http.body)));
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
            return Malformed(request,
                             absl::StrCat(where, "global_last_seen_lsn ", parsed.status().message()));
          }
          response.global_last_seen_lsn = *parsed;
        }
      } else if (kind == "must-refetch") {
        response.must_refetch = true;
      }
      // Other control messages (snapshot-end) carry nothing we follow.
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
    return response;
  }
  if (response.handle.empty()) return Malformed(request, "no electric-handle header");
  if (response.offset.empty()) return Malformed(request, "no electric-offset header");
  return response;
}

}  // namespace wake::sync
