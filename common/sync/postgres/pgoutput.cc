#include "common/sync/postgres/pgoutput.h"

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace wake::sync::pgoutput {
namespace {

// 2000-01-01 00:00:00 UTC in Unix microseconds.
constexpr int64_t kPgEpochUnixMicros = 946684800LL * 1000000LL;

// Big-endian reads over a message, each naming the field it failed on.
class Reader {
 public:
  Reader(absl::string_view data, absl::string_view what) : data_(data), what_(what) {}

  absl::Status ReadU8(absl::string_view field, uint8_t* out) {
    uint64_t v = 0;
    if (auto s = ReadBE(field, 1, &v); !s.ok()) return s;
    *out = static_cast<uint8_t>(v);
    return absl::OkStatus();
  }
  absl::Status ReadI16(absl::string_view field, int16_t* out) {
    uint64_t v = 0;
    if (auto s = ReadBE(field, 2, &v); !s.ok()) return s;
    *out = static_cast<int16_t>(static_cast<uint16_t>(v));
    return absl::OkStatus();
  }
  absl::Status ReadU32(absl::string_view field, uint32_t* out) {
    uint64_t v = 0;
    if (auto s = ReadBE(field, 4, &v); !s.ok()) return s;
    *out = static_cast<uint32_t>(v);
    return absl::OkStatus();
  }
  absl::Status ReadI32(absl::string_view field, int32_t* out) {
    uint32_t v = 0;
    if (auto s = ReadU32(field, &v); !s.ok()) return s;
    *out = static_cast<int32_t>(v);
    return absl::OkStatus();
  }
  absl::Status ReadU64(absl::string_view field, uint64_t* out) { return ReadBE(field, 8, out); }
  absl::Status ReadI64(absl::string_view field, int64_t* out) {
    uint64_t v = 0;
    if (auto s = ReadBE(field, 8, &v); !s.ok()) return s;
    *out = static_cast<int64_t>(v);
    return absl::OkStatus();
  }

  // A NUL-terminated string.
  absl::Status ReadCString(absl::string_view field, std::string* out) {
    const size_t nul = data_.find('\0', pos_);
    if (nul == absl::string_view::npos) return Truncated(field);
    out->assign(data_.data() + pos_, nul - pos_);
    pos_ = nul + 1;
    return absl::OkStatus();
  }

  absl::Status ReadBytes(absl::string_view field, size_t n, std::string* out) {
    if (data_.size() - pos_ < n) return Truncated(field);
    out->assign(data_.data() + pos_, n);
    pos_ += n;
    return absl::OkStatus();
  }

  absl::string_view Rest() const { return data_.substr(pos_); }
  bool AtEnd() const { return pos_ == data_.size(); }

  absl::Status Invalid(absl::string_view field, absl::string_view problem) const {
    return absl::InvalidArgumentError(
        absl::StrCat(what_, ".", field, ": ", problem, " (at byte ", pos_, ")"));
  }

 private:
  absl::Status ReadBE(absl::string_view field, size_t n, uint64_t* out) {
    if (data_.size() - pos_ < n) return Truncated(field);
    uint64_t v = 0;
    for (size_t i = 0; i < n; ++i) v = (v << 8) | static_cast<uint8_t>(data_[pos_ + i]);
    pos_ += n;
    *out = v;
    return absl::OkStatus();
  }

  absl::Status Truncated(absl::string_view field) const {
    return absl::InvalidArgumentError(absl::StrCat(what_, ".", field, ": message truncated after ",
                                                   pos_, " of ", data_.size(), " bytes"));
  }

  absl::string_view data_;
  absl::string_view what_;
  size_t pos_ = 0;
};

#define PGO_RETURN_IF_ERROR(expr) \
  do {                            \
    absl::Status _st = (expr);    \
    if (!_st.ok()) return _st;    \
  } while (0)

void AppendBE(std::string* out, uint64_t v, int bytes) {
  for (int i = bytes - 1; i >= 0; --i) out->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

absl::Status ReadTuple(Reader& r, absl::string_view field, Tuple* tuple) {
  int16_t ncols = 0;
  PGO_RETURN_IF_ERROR(r.ReadI16(absl::StrCat(field, ".ncols"), &ncols));
  if (ncols < 0) return r.Invalid(field, "negative column count");
  tuple->clear();
  tuple->reserve(ncols);
  for (int i = 0; i < ncols; ++i) {
    const std::string col = absl::StrCat(field, "[", i, "]");
    uint8_t kind = 0;
    PGO_RETURN_IF_ERROR(r.ReadU8(col, &kind));
    TupleValue value;
    switch (kind) {
      case 'n':
        value.kind = TupleValue::Kind::kNull;
        break;
      case 'u':
        value.kind = TupleValue::Kind::kUnchangedToast;
        break;
      case 't':
      case 'b': {
        value.kind = kind == 't' ? TupleValue::Kind::kText : TupleValue::Kind::kBinary;
        int32_t len = 0;
        PGO_RETURN_IF_ERROR(r.ReadI32(absl::StrCat(col, ".length"), &len));
        if (len < 0) return r.Invalid(col, "negative value length");
        PGO_RETURN_IF_ERROR(r.ReadBytes(absl::StrCat(col, ".value"), len, &value.data));
        break;
      }
      default:
        return r.Invalid(col, absl::StrFormat("unknown tuple value kind 0x%02x", kind));
    }
    tuple->push_back(std::move(value));
  }
  return absl::OkStatus();
}

absl::StatusOr<Message> DecodeRelation(Reader& r) {
  Relation rel;
  PGO_RETURN_IF_ERROR(r.ReadU32("relid", &rel.id));
  PGO_RETURN_IF_ERROR(r.ReadCString("namespace", &rel.schema));
  PGO_RETURN_IF_ERROR(r.ReadCString("relname", &rel.name));
  uint8_t identity = 0;
  PGO_RETURN_IF_ERROR(r.ReadU8("replica_identity", &identity));
  rel.replica_identity = static_cast<char>(identity);
  int16_t ncols = 0;
  PGO_RETURN_IF_ERROR(r.ReadI16("ncols", &ncols));
  if (ncols < 0) return r.Invalid("ncols", "negative column count");
  rel.columns.resize(ncols);
  for (int i = 0; i < ncols; ++i) {
    Column& c = rel.columns[i];
    const std::string col = absl::StrCat("columns[", i, "]");
    uint8_t flags = 0;
    PGO_RETURN_IF_ERROR(r.ReadU8(absl::StrCat(col, ".flags"), &flags));
    c.part_of_key = (flags & 1) != 0;
    PGO_RETURN_IF_ERROR(r.ReadCString(absl::StrCat(col, ".name"), &c.name));
    PGO_RETURN_IF_ERROR(r.ReadU32(absl::StrCat(col, ".type_oid"), &c.type_oid));
    PGO_RETURN_IF_ERROR(r.ReadI32(absl::StrCat(col, ".type_modifier"), &c.type_modifier));
  }
  return rel;
}

absl::StatusOr<Message> DecodeUpdate(Reader& r) {
  Update u;
  PGO_RETURN_IF_ERROR(r.ReadU32("relid", &u.relation_id));
  uint8_t tag = 0;
  PGO_RETURN_IF_ERROR(r.ReadU8("tuple_tag", &tag));
  if (tag == 'K' || tag == 'O') {
    u.old_is_key = tag == 'K';
    Tuple old;
    PGO_RETURN_IF_ERROR(ReadTuple(r, "old", &old));
    u.old_tuple = std::move(old);
    PGO_RETURN_IF_ERROR(r.ReadU8("new_tag", &tag));
  }
  if (tag != 'N') return r.Invalid("new_tag", absl::StrFormat("expected 'N', got 0x%02x", tag));
  PGO_RETURN_IF_ERROR(ReadTuple(r, "new", &u.new_tuple));
  return u;
}

absl::StatusOr<Message> DecodeBody(uint8_t type, Reader& r) {
  switch (type) {
    case 'B': {
      Begin b;
      PGO_RETURN_IF_ERROR(r.ReadU64("final_lsn", &b.final_lsn));
      PGO_RETURN_IF_ERROR(r.ReadI64("commit_time", &b.commit_time));
      PGO_RETURN_IF_ERROR(r.ReadU32("xid", &b.xid));
      return b;
    }
    case 'C': {
      Commit c;
      PGO_RETURN_IF_ERROR(r.ReadU8("flags", &c.flags));
      PGO_RETURN_IF_ERROR(r.ReadU64("commit_lsn", &c.commit_lsn));
      PGO_RETURN_IF_ERROR(r.ReadU64("end_lsn", &c.end_lsn));
      PGO_RETURN_IF_ERROR(r.ReadI64("commit_time", &c.commit_time));
      return c;
    }
    case 'O': {
      Origin o;
      PGO_RETURN_IF_ERROR(r.ReadU64("commit_lsn", &o.commit_lsn));
      PGO_RETURN_IF_ERROR(r.ReadCString("name", &o.name));
      return o;
    }
    case 'R':
      return DecodeRelation(r);
    case 'Y': {
      Type t;
      PGO_RETURN_IF_ERROR(r.ReadU32("type_oid", &t.id));
      PGO_RETURN_IF_ERROR(r.ReadCString("namespace", &t.schema));
      PGO_RETURN_IF_ERROR(r.ReadCString("name", &t.name));
      return t;
    }
    case 'I': {
      Insert i;
      PGO_RETURN_IF_ERROR(r.ReadU32("relid", &i.relation_id));
      uint8_t tag = 0;
      PGO_RETURN_IF_ERROR(r.ReadU8("new_tag", &tag));
      if (tag != 'N') {
        return r.Invalid("new_tag", absl::StrFormat("expected 'N', got 0x%02x", tag));
      }
      PGO_RETURN_IF_ERROR(ReadTuple(r, "new", &i.new_tuple));
      return i;
    }
    case 'U':
      return DecodeUpdate(r);
    case 'D': {
      Delete d;
      PGO_RETURN_IF_ERROR(r.ReadU32("relid", &d.relation_id));
      uint8_t tag = 0;
      PGO_RETURN_IF_ERROR(r.ReadU8("old_tag", &tag));
      if (tag != 'K' && tag != 'O') {
        return r.Invalid("old_tag", absl::StrFormat("expected 'K' or 'O', got 0x%02x", tag));
      }
      d.old_is_key = tag == 'K';
      PGO_RETURN_IF_ERROR(ReadTuple(r, "old", &d.old_tuple));
      return d;
    }
    case 'T': {
      Truncate t;
      uint32_t n = 0;
      PGO_RETURN_IF_ERROR(r.ReadU32("nrelations", &n));
      PGO_RETURN_IF_ERROR(r.ReadU8("options", &t.options));
      if (n > r.Rest().size() / 4) return r.Invalid("nrelations", "more than the message holds");
      t.relation_ids.resize(n);
      for (uint32_t i = 0; i < n; ++i) {
        PGO_RETURN_IF_ERROR(r.ReadU32(absl::StrCat("relids[", i, "]"), &t.relation_ids[i]));
      }
      return t;
    }
    case 'M': {
      LogicalMessage m;
      uint8_t flags = 0;
      PGO_RETURN_IF_ERROR(r.ReadU8("flags", &flags));
      m.transactional = (flags & 1) != 0;
      PGO_RETURN_IF_ERROR(r.ReadU64("lsn", &m.lsn));
      PGO_RETURN_IF_ERROR(r.ReadCString("prefix", &m.prefix));
      int32_t len = 0;
      PGO_RETURN_IF_ERROR(r.ReadI32("content_length", &len));
      if (len < 0) return r.Invalid("content_length", "negative");
      PGO_RETURN_IF_ERROR(r.ReadBytes("content", len, &m.content));
      return m;
    }
    default:
      return absl::UnimplementedError(
          absl::StrFormat("pgoutput: message type 0x%02x is not part of protocol version 1", type));
  }
}

}  // namespace

absl::StatusOr<Lsn> ParseLsn(absl::string_view text) {
  const size_t slash = text.find('/');
  uint32_t hi = 0;
  uint32_t lo = 0;
  if (slash == absl::string_view::npos || slash == 0 || slash + 1 == text.size() || slash > 8 ||
      text.size() - slash - 1 > 8 || !absl::SimpleHexAtoi(text.substr(0, slash), &hi) ||
      !absl::SimpleHexAtoi(text.substr(slash + 1), &lo) || text[0] == '-' || text[0] == '+' ||
      text[slash + 1] == '-' || text[slash + 1] == '+') {
    return absl::InvalidArgumentError(absl::StrCat("not an LSN: \"", text, "\""));
  }
  return (static_cast<Lsn>(hi) << 32) | lo;
}

std::string FormatLsn(Lsn lsn) {
  return absl::StrFormat("%X/%X", static_cast<uint32_t>(lsn >> 32), static_cast<uint32_t>(lsn));
}

int64_t ToPgTimestamp(absl::Time time) { return absl::ToUnixMicros(time) - kPgEpochUnixMicros; }

absl::Time FromPgTimestamp(int64_t micros) {
  return absl::FromUnixMicros(micros + kPgEpochUnixMicros);
}

int64_t ExtendXid(uint32_t xid, int64_t reference) {
  const uint32_t reference_low = static_cast<uint32_t>(static_cast<uint64_t>(reference));
  const int32_t distance = static_cast<int32_t>(xid - reference_low);
  const int64_t full = reference + distance;
  // Below epoch 0 cannot exist; only a bogus reference gets here.
  return full < 0 ? static_cast<int64_t>(xid) : full;
}

absl::StatusOr<CopyMessage> ParseCopyMessage(absl::string_view data) {
  if (data.empty()) return absl::InvalidArgumentError("replication message: empty");
  Reader r(data.substr(1), data[0] == 'w' ? "xlogdata" : "keepalive");
  switch (data[0]) {
    case 'w': {
      XLogData x;
      PGO_RETURN_IF_ERROR(r.ReadU64("wal_start", &x.wal_start));
      PGO_RETURN_IF_ERROR(r.ReadU64("wal_end", &x.wal_end));
      PGO_RETURN_IF_ERROR(r.ReadI64("send_time", &x.send_time));
      x.payload = r.Rest();
      return x;
    }
    case 'k': {
      Keepalive k;
      uint8_t reply = 0;
      PGO_RETURN_IF_ERROR(r.ReadU64("wal_end", &k.wal_end));
      PGO_RETURN_IF_ERROR(r.ReadI64("send_time", &k.send_time));
      PGO_RETURN_IF_ERROR(r.ReadU8("reply_requested", &reply));
      k.reply_requested = reply != 0;
      return k;
    }
    default:
      return absl::InvalidArgumentError(absl::StrFormat("replication message: unknown type 0x%02x",
                                                        static_cast<uint8_t>(data[0])));
  }
}

std::string EncodeStandbyStatus(Lsn write, Lsn flush, Lsn apply, int64_t send_time,
                                bool reply_requested) {
  std::string out;
  out.reserve(34);
  out.push_back('r');
  AppendBE(&out, write, 8);
  AppendBE(&out, flush, 8);
  AppendBE(&out, apply, 8);
  AppendBE(&out, static_cast<uint64_t>(send_time), 8);
  out.push_back(reply_requested ? 1 : 0);
  return out;
}

absl::StatusOr<Message> DecodeMessage(absl::string_view data) {
  if (data.empty()) return absl::InvalidArgumentError("pgoutput: empty message");
  const uint8_t type = static_cast<uint8_t>(data[0]);
  const std::string what = absl::StrFormat("pgoutput '%c'", type);
  Reader r(data.substr(1), what);
  absl::StatusOr<Message> message = DecodeBody(type, r);
  if (message.ok() && !r.AtEnd()) {
    return r.Invalid("end", absl::StrCat(r.Rest().size(), " trailing bytes"));
  }
  return message;
}

}  // namespace wake::sync::pgoutput
