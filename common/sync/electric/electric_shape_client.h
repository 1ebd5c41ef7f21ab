// The protocol half of the Electric sync source: builds `GET {url}/v1/shape`
// requests for one shape, performs them through an HttpClient and turns the
// HTTP status, the electric-* headers and the JSON message array into a
// ShapeResponse. It keeps no position of its own; the caller owns the
// (handle, offset, cursor) it passes in.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/sync/electric/http_client.h"
#include "common/sync/registration.h"

namespace wake::sync {

struct ShapeDefinition {
  std::string table;
  // Explicit projection; always includes the primary key.
  std::vector<std::string> columns;
  // SQL where clause; empty = the whole table.
  std::string where;
};

struct ShapeClientOptions {
  // Electric's base URL, e.g. "http://electric:3000" (without /v1/shape).
  std::string base_url;
  // Sent as `secret` when not empty; never appears in errors or logs.
  std::string secret;
  // For requests answered at once (snapshot pages, catch-up, barrier).
  absl::Duration request_timeout = absl::Seconds(30);
  // For live long polls; must exceed how long Electric holds one (~20 s).
  absl::Duration live_timeout = absl::Seconds(90);
};

// Where a follower stands in a shape log.
struct ShapePosition {
  std::string handle;     // Empty before the first response.
  std::string offset = "-1";
  std::string cursor;     // From electric-cursor, echoed on live requests.
};

struct ShapeChange {
  ChangeOp op = ChangeOp::kInsert;
  std::string key;
  nlohmann::json value;             // The row, Postgres text values.
  std::vector<int64_t> txids;       // From headers.txids (xid8).
  std::optional<bool> last;         // headers.last: last op of its transaction here.
};

struct ShapeResponse {
  // 409, or a must-refetch control message: drop everything and start over
  // from offset -1 under `handle` (empty when the server named none).
  bool must_refetch = false;
  std::string handle;
  std::string offset;
  std::string cursor;
  // The response ends with up-to-date (message or electric-up-to-date header).
  bool up_to_date = false;
  // From the up-to-date message: Electric has processed the WAL up to here.
  std::optional<uint64_t> global_last_seen_lsn;
  // Change messages in log order (control messages are folded into the flags).
  std::vector<ShapeChange> changes;
};

class ElectricShapeClient {
 public:
  ElectricShapeClient(ShapeClientOptions options, ShapeDefinition shape, HttpClient& http);

  // The full request URL (contains the secret: do not log it).
  std::string RequestUrl(const ShapePosition& position, bool live) const;
  // The request for errors and logs, without the secret.
  std::string Describe(const ShapePosition& position, bool live) const;

  // One request. Errors (all name the request):
  //   INVALID_ARGUMENT  Electric rejected the shape (400, 401, 403, 404, ...);
  //                     the message carries Electric's own explanation.
  //   UNAVAILABLE       5xx, 429, transport failure, malformed response.
  //   DEADLINE_EXCEEDED no response in time.
  //   CANCELLED         `should_abort` returned true.
  absl::StatusOr<ShapeResponse> Fetch(const ShapePosition& position, bool live,
                                      const std::function<bool()>& should_abort);

  // Interprets a response (exposed for tests). `request` is only used in errors.
  static absl::StatusOr<ShapeResponse> Interpret(const HttpResponse& http,
                                                 const std::string& request);

  const ShapeDefinition& shape() const { return shape_; }

 private:
  std::string Url(const ShapePosition& position, bool live, bool with_secret) const;

  const ShapeClientOptions options_;
  const ShapeDefinition shape_;
  HttpClient& http_;
};

// Percent-encodes a query parameter value (RFC 3986 unreserved kept).
std::string UrlEncode(absl::string_view text);

// `tenant_id = '<tenant>'` with the tenant quoted as an SQL string literal.
std::string TenantWhereClause(absl::string_view tenant);

}  // namespace wake::sync
