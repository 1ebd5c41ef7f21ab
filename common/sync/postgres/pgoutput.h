// Decoder for PostgreSQL's logical replication stream as a walsender sends it
// over libpq's CopyBoth protocol: the framing ('w' XLogData, 'k' keepalive,
// and our 'r' standby status update) and the messages of the pgoutput plugin,
// protocol version 1. Pure functions over bytes, so they are tested without a
// server.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace wake::sync::pgoutput {

// A WAL position (pg_lsn).
using Lsn = uint64_t;

// "16/B374D848" -> 0x16B374D848. INVALID_ARGUMENT for anything else.
absl::StatusOr<Lsn> ParseLsn(absl::string_view text);
std::string FormatLsn(Lsn lsn);

// Replication timestamps count microseconds since 2000-01-01 00:00 UTC.
int64_t ToPgTimestamp(absl::Time time);
absl::Time FromPgTimestamp(int64_t micros);

// Widens a 32-bit xid to the 64-bit xid8 nearest to `reference` (a full xid
// known to be within 2^31 of it, such as the previous one seen), so an epoch
// wrap between the two is handled.
int64_t ExtendXid(uint32_t xid, int64_t reference);

// ---- CopyBoth framing ----

struct XLogData {
  Lsn wal_start = 0;
  Lsn wal_end = 0;
  int64_t send_time = 0;
  // A pgoutput message; points into the decoded buffer.
  absl::string_view payload;
};

// The walsender's "everything before wal_end has been sent" heartbeat.
struct Keepalive {
  Lsn wal_end = 0;
  int64_t send_time = 0;
  bool reply_requested = false;
};

using CopyMessage = std::variant<XLogData, Keepalive>;

absl::StatusOr<CopyMessage> ParseCopyMessage(absl::string_view data);

// The 34-byte standby status update ('r') a client sends to report progress.
std::string EncodeStandbyStatus(Lsn write, Lsn flush, Lsn apply, int64_t send_time,
                                bool reply_requested);

// ---- pgoutput messages ----

struct Column {
  std::string name;
  uint32_t type_oid = 0;
  int32_t type_modifier = -1;
  bool part_of_key = false;
};

struct Relation {
  uint32_t id = 0;
  std::string schema;
  std::string name;
  // 'd' default, 'n' nothing, 'f' full, 'i' index.
  char replica_identity = 'd';
  std::vector<Column> columns;
};

struct TupleValue {
  enum class Kind { kNull, kUnchangedToast, kText, kBinary };
  Kind kind = Kind::kNull;
  std::string data;

  bool operator==(const TupleValue& other) const {
    return kind == other.kind && data == other.data;
  }
};

using Tuple = std::vector<TupleValue>;

struct Begin {
  Lsn final_lsn = 0;
  int64_t commit_time = 0;
  uint32_t xid = 0;
};

struct Commit {
  uint8_t flags = 0;
  Lsn commit_lsn = 0;
  // End of the commit record: every transaction that committed before it has
  // been sent once this message arrives.
  Lsn end_lsn = 0;
  int64_t commit_time = 0;
};

struct Origin {
  Lsn commit_lsn = 0;
  std::string name;
};

struct Type {
  uint32_t id = 0;
  std::string schema;
  std::string name;
};

struct Insert {
  uint32_t relation_id = 0;
  Tuple new_tuple;
};

// For the old row: 'K' (key columns only, the others null) or 'O' (the whole
// row, REPLICA IDENTITY FULL).
struct Update {
  uint32_t relation_id = 0;
  std::optional<Tuple> old_tuple;
  bool old_is_key = false;
  Tuple new_tuple;
};

struct Delete {
  uint32_t relation_id = 0;
  Tuple old_tuple;
  bool old_is_key = false;
};

struct Truncate {
  uint8_t options = 0;  // 1 CASCADE, 2 RESTART IDENTITY
  std::vector<uint32_t> relation_ids;
};

// pg_logical_emit_message output (only with the `messages` option).
struct LogicalMessage {
  bool transactional = false;
  Lsn lsn = 0;
  std::string prefix;
  std::string content;
};

using Message = std::variant<Begin, Commit, Origin, Relation, Type, Insert, Update, Delete,
                             Truncate, LogicalMessage>;

// Decodes one pgoutput message. INVALID_ARGUMENT naming the field for a
// truncated or malformed message, UNIMPLEMENTED for a message type that
// protocol version 1 does not send.
absl::StatusOr<Message> DecodeMessage(absl::string_view data);

}  // namespace wake::sync::pgoutput
