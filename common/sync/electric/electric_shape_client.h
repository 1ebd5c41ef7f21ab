// The protocol half of the Electric sync source: builds `GET {url}/v1/shape`
// requests for one shape, performs them through an HttpClient and turns the
// HTTP status, the electric-* headers and the JSON message array into a
// ShapeResponse. It keeps no position of its own; the caller owns the
// (handle, offset, cursor) it passes in.
#pragma once

#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

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
  std::string handle;  // Empty before the first response.
  std::string offset = "-1";
  std::string cursor;  // From electric-cursor, echoed on live requests.
};

struct ShapeChange {
  ChangeOp op = ChangeOp::kInsert;
  std::string key;
  nlohmann::json value;  // The row, Postgres text values.
  // headers.txids as sent: Electric sends the 32-bit xid of pgoutput's Begin
  // message as a JSON number (lib/electric/log_items.ex); the sync source
  // widens it to an xid8. Empty for snapshot rows.
  std::vector<int64_t> txids;
  // headers.lsn: the transaction's commit LSN, the same for every message of
  // one transaction. Empty for snapshot rows.
  std::string lsn;
  // headers.last: the transaction's last message in this shape. Electric only
  // ever sends `true` (the key is left out otherwise).
  bool last = false;
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
  // From the up-to-date message: Electric has processed every transaction up
  // to the one that committed here (not the server's WAL position).
  std::optional<uint64_t> global_last_seen_lsn;
  // From a snapshot-end control message: the snapshot's xmin (an xid8).
  std::optional<int64_t> snapshot_xmin;
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
  //   INVALID_ARGUMENT  Electric rejected the shape (400, 404, ...); the
  //                     message carries Electric's own explanation.
  //   UNAUTHENTICATED   401: a missing or wrong secret.
  //   PERMISSION_DENIED 403.
  //   UNAVAILABLE       5xx, 429, transport failure, malformed response; with
  //                     a Retry-After header the status carries its seconds
  //                     as the kRetryAfterPayload payload.
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

// Status payload key under which Fetch() passes on a Retry-After header.
inline constexpr char kRetryAfterPayload[] = "wakeline.dev/retry-after-seconds";
// The Retry-After of a status from Fetch(), if it carried one.
std::optional<absl::Duration> RetryAfter(const absl::Status& status);

// Percent-encodes a query parameter value (RFC 3986 unreserved kept).
std::string UrlEncode(absl::string_view text);

// `tenant_id = '<tenant>'` with the tenant quoted as an SQL string literal.
std::string TenantWhereClause(absl::string_view tenant);

}  // namespace wake::sync
