#include "tests/electric/scripted_electric_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"

// Paths in the comments below are in electric-sql/electric,
// packages/sync-service/lib/electric/.
namespace wake::testing {
namespace {

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::string UrlDecode(absl::string_view text) {
  std::string out;
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '+') {
      out.push_back(' ');
    } else if (text[i] == '%' && i + 2 < text.size() && HexValue(text[i + 1]) >= 0 &&
               HexValue(text[i + 2]) >= 0) {
      out.push_back(static_cast<char>(HexValue(text[i + 1]) * 16 + HexValue(text[i + 2])));
      i += 2;
    } else {
      out.push_back(text[i]);
    }
  }
  return out;
}

const char* Reason(int status) {
  switch (status) {
    case 200:
      return "OK";
    case 204:
      return "No Content";
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 404:
      return "Not Found";
    case 409:
      return "Conflict";
    case 429:
      return "Too Many Requests";
    case 500:
      return "Internal Server Error";
    case 503:
      return "Service Unavailable";
    default:
      return "Status";
  }
}

bool SendAll(int fd, const std::string& data) {
  size_t sent = 0;
  while (sent < data.size()) {
    ssize_t n = send(fd, data.data() + sent, data.size() - sent, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    sent += static_cast<size_t>(n);
  }
  return true;
}

// Errors are never cached, by the browser or a CDN (shapes/api/response.ex
// put_cache_headers, status >= 400).
CannedResponse ErrorResponse(int status, nlohmann::json body) {
  CannedResponse r;
  r.status = status;
  r.headers = {{"cache-control", "no-store"}, {"surrogate-control", "no-store"}};
  r.body = body.dump();
  return r;
}

// A rejected parameter: {"message": "Invalid request", "errors": {field:
// [problem]}} (shapes/api/params.ex convert_error, shapes/api/response.ex
// invalid_request).
CannedResponse InvalidRequest(const std::string& field, const std::string& problem) {
  return ErrorResponse(400, {{"message", "Invalid request"},
                             {"errors", {{field, nlohmann::json::array({problem})}}}});
}

// A log offset "<tx_offset>_<op_offset>", op_offset "inf" for the end of the
// snapshot (replication/log_offset.ex). Snapshot chunks are 0_0, 0_1, ...
// (shape_cache/pure_file_storage.ex get_chunk_end_log_offset).
struct Offset {
  uint64_t tx = 0;
  uint64_t op = 0;
  bool inf = false;

  bool operator==(const Offset& o) const {
    return tx == o.tx && inf == o.inf && (inf || op == o.op);
  }
  std::string ToString() const { return absl::StrCat(tx, "_", inf ? "inf" : absl::StrCat(op)); }
};

bool Less(const Offset& a, const Offset& b) {
  if (a.tx != b.tx) return a.tx < b.tx;
  if (a.inf || b.inf) return !a.inf && b.inf;
  return a.op < b.op;
}

std::optional<Offset> ParseOffset(absl::string_view text) {
  std::vector<absl::string_view> parts = absl::StrSplit(text, '_');
  Offset offset;
  if (parts.size() != 2 || !absl::SimpleAtoi(parts[0], &offset.tx)) return std::nullopt;
  if (parts[1] == "inf") {
    offset.inf = true;
  } else if (!absl::SimpleAtoi(parts[1], &offset.op)) {
    return std::nullopt;
  }
  return offset;
}

// The row key: "<relation>/<pk>" with '/' in the value doubled
// (shapes/querying.ex join_primary_keys, replication/changes.ex build_key).
std::string RowKey(const std::string& table, const std::string& pk) {
  return absl::StrCat("\"public\".\"", table, "\"/\"", absl::StrReplaceAll(pk, {{"/", "//"}}),
                      "\"");
}

std::string Text(const nlohmann::json& value) {
  if (value.is_string()) return value.get<std::string>();
  if (value.is_null()) return "";
  return value.dump();
}

// The `columns` parameter: comma-separated identifiers, each unquoted
// (folded to lower case) or double-quoted (verbatim, "" for a quote)
// (plug/utils.ex parse_columns_param, postgres/identifiers.ex parse).
absl::StatusOr<std::vector<std::string>> ParseColumns(absl::string_view text) {
  std::vector<std::string> out;
  std::string current;
  bool quoted = false;
  bool in_quotes = false;
  auto finish = [&]() -> absl::Status {
    if (current.empty()) {
      return absl::InvalidArgumentError("Invalid zero-length delimited identifier");
    }
    if (!quoted) {
      for (char c : current) {
        if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '_' && c != '$') {
          return absl::InvalidArgumentError(
              absl::StrCat("Invalid unquoted identifier contains special characters: ", current));
        }
      }
      current = absl::AsciiStrToLower(current);
    }
    out.push_back(current);
    current.clear();
    quoted = false;
    return absl::OkStatus();
  };
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_quotes) {
      if (c == '"' && i + 1 < text.size() && text[i + 1] == '"') {
        current.push_back('"');
        ++i;
      } else if (c == '"') {
        in_quotes = false;
      } else {
        current.push_back(c);
      }
    } else if (c == '"' && current.empty() && !quoted) {
      in_quotes = quoted = true;
    } else if (c == ',') {
      if (absl::Status s = finish(); !s.ok()) return s;
    } else {
      if (quoted) {
        return absl::InvalidArgumentError(
            absl::StrCat("Invalid unquoted identifier contains special characters: \"", current));
      }
      current.push_back(c);
    }
  }
  if (in_quotes) {
    return absl::InvalidArgumentError(
        absl::StrCat("Invalid unquoted identifier contains special characters: \"", current));
  }
  if (absl::Status s = finish(); !s.ok()) return s;
  return out;
}

// Wakeline's tables with their Postgres types (registry-service/migrations).
const std::map<std::string, std::vector<std::pair<std::string, std::string>>>& KnownTables() {
  static const auto* tables =
      new std::map<std::string, std::vector<std::pair<std::string, std::string>>>{
          {"wake_registrations",
           {{"id", "int8"},
            {"tenant_id", "text"},
            {"subscriber_url", "text"},
            {"source_url", "text"},
            {"condition", "jsonb"},
            {"debounce_ms", "int4"},
            {"timeout_ms", "int4"},
            {"one_shot", "bool"},
            {"timeout_consumed", "bool"},
            {"include_response", "bool"},
            {"manifest_key", "text"},
            {"created_at", "timestamptz"}}},
          {"wakes",
           {{"id", "int8"},
            {"tenant_id", "text"},
            {"stream", "text"},
            {"registration_id", "int8"},
            {"source_event_key", "text"},
            {"message", "jsonb"},
            {"run_finished_status", "text"},
            {"include_response", "bool"},
            {"created_at", "timestamptz"},
            {"claim_token", "text"},
            {"claimed_at", "timestamptz"}}},
          {"wake_sync_markers",
           {{"replica_id", "text"}, {"seq", "int8"}, {"written_at", "timestamptz"}}},
      };
  return *tables;
}

}  // namespace

// A request's shape: table, the selected columns (primary key first) and the
// where clause's column = 'literal' terms.
struct ScriptedElectricServer::Definition {
  std::string table;
  std::vector<std::string> columns;
  std::vector<std::pair<std::string, std::string>> where;
  bool full = false;

  bool Matches(const nlohmann::json& row) const {
    for (const auto& [column, literal] : where) {
      auto it = row.find(column);
      if (it == row.end() || it->is_null() || Text(*it) != literal) return false;
    }
    return true;
  }
  nlohmann::json Project(const nlohmann::json& row) const {
    nlohmann::json out = nlohmann::json::object();
    for (const std::string& column : columns) {
      auto it = row.find(column);
      out[column] = it == row.end() ? nlohmann::json(nullptr) : *it;
    }
    return out;
  }
};

struct ScriptedElectricServer::Entry {
  Offset offset;
  nlohmann::json message;
};

absl::StatusOr<std::unique_ptr<ScriptedElectricServer>> ScriptedElectricServer::Start(
    Options options) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return absl::InternalError(absl::StrCat("socket: ", std::strerror(errno)));
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 || listen(fd, 64) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    const std::string error = std::strerror(errno);
    close(fd);
    return absl::InternalError(absl::StrCat("bind/listen on 127.0.0.1:0: ", error));
  }
  int pipe_fds[2];
  if (pipe(pipe_fds) != 0) {
    close(fd);
    return absl::InternalError("pipe failed");
  }
  return std::unique_ptr<ScriptedElectricServer>(
      new ScriptedElectricServer(options, fd, ntohs(addr.sin_port), pipe_fds[0], pipe_fds[1]));
}

ScriptedElectricServer::ScriptedElectricServer(Options options, int listen_fd, int port,
                                               int wake_read, int wake_write)
    : options_(options),
      listen_fd_(listen_fd),
      port_(port),
      wake_read_(wake_read),
      wake_write_(wake_write) {
  {
    absl::MutexLock lock(&mu_);
    // LsnTracker starts at the slot's flushed position
    // (postgres/replication_client.ex handle_result for create_slot).
    last_processed_lsn_ = options_.initial_lsn;
    next_xid_ = options_.initial_xid;
  }
  accept_thread_ = std::thread([this] { AcceptLoop(); });
}

ScriptedElectricServer::~ScriptedElectricServer() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    for (int fd : connections_) shutdown(fd, SHUT_RDWR);
  }
  const char byte = 'x';
  (void)!write(wake_write_, &byte, 1);
  accept_thread_.join();
  std::vector<std::thread> threads;
  {
    absl::MutexLock lock(&mu_);
    threads.swap(connection_threads_);
  }
  for (std::thread& t : threads) t.join();
  close(listen_fd_);
  close(wake_read_);
  close(wake_write_);
}

std::string ScriptedElectricServer::url() const { return absl::StrCat("http://127.0.0.1:", port_); }

void ScriptedElectricServer::AcceptLoop() {
  for (;;) {
    pollfd fds[2] = {{listen_fd_, POLLIN, 0}, {wake_read_, POLLIN, 0}};
    if (poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      return;
    }
    if (fds[1].revents != 0) return;
    int fd = accept(listen_fd_, nullptr, nullptr);
    if (fd < 0) continue;
    absl::MutexLock lock(&mu_);
    if (stopping_) {
      close(fd);
      return;
    }
    connections_.insert(fd);
    connection_threads_.emplace_back([this, fd] { Serve(fd); });
  }
}

void ScriptedElectricServer::Serve(int fd) {
  std::string buffer;
  for (;;) {
    size_t end;
    bool closed = false;
    while ((end = buffer.find("\r\n\r\n")) == std::string::npos) {
      char chunk[4096];
      ssize_t n = recv(fd, chunk, sizeof(chunk), 0);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        closed = true;
        break;
      }
      buffer.append(chunk, static_cast<size_t>(n));
    }
    if (closed) break;
    const std::string head = buffer.substr(0, end);
    buffer.erase(0, end + 4);

    ShapeRequest request;
    std::vector<std::string> line =
        absl::StrSplit(head.substr(0, head.find("\r\n")), ' ', absl::SkipEmpty());
    if (line.size() < 2) break;
    request.method = line[0];
    request.target = line[1];
    const size_t question = request.target.find('?');
    request.path = request.target.substr(0, question);
    if (question != std::string::npos) {
      for (absl::string_view pair : absl::StrSplit(
               absl::string_view(request.target).substr(question + 1), '&', absl::SkipEmpty())) {
        const size_t eq = pair.find('=');
        request.query[UrlDecode(pair.substr(0, eq))] =
            eq == absl::string_view::npos ? "" : UrlDecode(pair.substr(eq + 1));
      }
    }
    CannedResponse response = Handle(std::move(request));
    std::string out = absl::StrCat(
        "HTTP/1.1 ", response.status, " ", Reason(response.status),
        "\r\nContent-Type: application/json\r\nContent-Length: ", response.body.size(), "\r\n");
    for (const auto& [name, value] : response.headers) {
      absl::StrAppend(&out, name, ": ", value, "\r\n");
    }
    absl::StrAppend(&out, "\r\n", response.body);
    if (!SendAll(fd, out)) break;
  }
  absl::MutexLock lock(&mu_);
  connections_.erase(fd);
  close(fd);
}

CannedResponse ScriptedElectricServer::Handle(ShapeRequest request) {
  absl::MutexLock lock(&mu_);
  request.seq = static_cast<int>(requests_.size());
  requests_.push_back(request);
  const int seq = request.seq;

  std::optional<Interceptor> interceptor;
  for (auto it = interceptors_.begin(); it != interceptors_.end(); ++it) {
    if (it->match(request)) {
      interceptor = *it;
      if (it->times > 0 && --it->times == 0) interceptors_.erase(it);
      break;
    }
  }
  if (interceptor.has_value() && interceptor->hold) {
    const uint64_t releases = releases_;
    auto released = [this, releases]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return stopping_ || releases_ != releases;
    };
    mu_.Await(absl::Condition(&released));
  }
  CannedResponse response = interceptor.has_value() && interceptor->response.has_value()
                                ? *interceptor->response
                                : ServeShapeLocked(request);
  requests_[seq].status = response.status;
  return response;
}

absl::StatusOr<ScriptedElectricServer::Definition> ScriptedElectricServer::ParseDefinitionLocked(
    const ShapeRequest& request) {
  Definition definition;
  definition.table = request.table();
  // table: required; must exist (shapes/shape.ex validate_relation).
  if (definition.table.empty()) {
    return absl::InvalidArgumentError(InvalidRequest("table", "can't be blank").body);
  }
  auto table = tables_.find(definition.table);
  if (table == tables_.end()) {
    return absl::InvalidArgumentError(
        InvalidRequest("table", absl::StrCat("Table \"public\".\"", definition.table,
                                             "\" does not exist. If the table name contains "
                                             "capitals or special characters you must quote it."))
            .body);
  }
  const std::vector<std::string>& all = table->second.columns;
  // columns: every one must exist and the primary key must be among them
  // (shapes/shape.ex validate_selected_columns).
  if (request.Has("columns")) {
    absl::StatusOr<std::vector<std::string>> parsed = ParseColumns(request.Param("columns"));
    if (!parsed.ok()) {
      return absl::InvalidArgumentError(
          InvalidRequest("columns", std::string(parsed.status().message())).body);
    }
    const std::vector<std::string>& wanted = *parsed;
    if (std::find(wanted.begin(), wanted.end(), all[0]) == wanted.end()) {
      return absl::InvalidArgumentError(
          InvalidRequest("columns", absl::StrCat("The list of columns must include all primary key "
                                                 "columns, missing: ",
                                                 all[0]))
              .body);
    }
    std::vector<std::string> unknown;
    for (const std::string& column : wanted) {
      if (std::find(all.begin(), all.end(), column) == all.end()) unknown.push_back(column);
    }
    if (!unknown.empty()) {
      return absl::InvalidArgumentError(
          InvalidRequest("columns", absl::StrCat("The following columns are not found on the "
                                                 "table: ",
                                                 absl::StrJoin(unknown, ", ")))
              .body);
    }
    definition.columns = wanted;
  } else {
    definition.columns = all;
  }
  // where: Electric parses any Postgres expression and names the position of
  // an unknown column (replication/eval/parser.ex: "At location N: unknown
  // reference x"). The peer understands `column = 'literal'` terms joined by
  // AND, and rejects everything else: stricter than Electric, never laxer.
  if (request.Has("where")) {
    const std::string where = request.Param("where");
    size_t pos = 0;
    auto skip_space = [&] {
      while (pos < where.size() && absl::ascii_isspace(static_cast<unsigned char>(where[pos]))) {
        ++pos;
      }
    };
    auto unsupported = [&] {
      return absl::InvalidArgumentError(
          InvalidRequest("where", absl::StrCat("At location ", pos,
                                               ": the scripted Electric only evaluates "
                                               "column = 'literal' terms joined by AND"))
              .body);
    };
    for (;;) {
      skip_space();
      const size_t start = pos;
      while (pos < where.size() &&
             (absl::ascii_isalnum(static_cast<unsigned char>(where[pos])) || where[pos] == '_')) {
        ++pos;
      }
      if (pos == start) return unsupported();
      const std::string column = where.substr(start, pos - start);
      if (std::find(all.begin(), all.end(), column) == all.end()) {
        return absl::InvalidArgumentError(
            InvalidRequest("where",
                           absl::StrCat("At location ", start, ": unknown reference ", column))
                .body);
      }
      skip_space();
      if (pos >= where.size() || where[pos] != '=') return unsupported();
      ++pos;
      skip_space();
      if (pos >= where.size() || where[pos] != '\'') return unsupported();
      ++pos;
      std::string literal;
      bool closed = false;
      while (pos < where.size()) {
        if (where[pos] == '\'') {
          if (pos + 1 < where.size() && where[pos + 1] == '\'') {
            literal.push_back('\'');
            pos += 2;
            continue;
          }
          ++pos;
          closed = true;
          break;
        }
        literal.push_back(where[pos++]);
      }
      if (!closed) {
        return absl::InvalidArgumentError(
            InvalidRequest("where",
                           absl::StrCat("At location ", pos, ": unterminated quoted string"))
                .body);
      }
      definition.where.emplace_back(column, literal);
      skip_space();
      if (pos == where.size()) break;
      if (where.size() - pos < 4 || !absl::EqualsIgnoreCase(where.substr(pos, 3), "and") ||
          !absl::ascii_isspace(static_cast<unsigned char>(where[pos + 3]))) {
        return unsupported();
      }
      pos += 3;
    }
  }
  // replica: default | full (shapes/api/params.ex, Ecto.Enum).
  const std::string replica = request.Has("replica") ? request.Param("replica") : "default";
  if (replica != "default" && replica != "full") {
    return absl::InvalidArgumentError(InvalidRequest("replica", "is invalid").body);
  }
  definition.full = replica == "full";
  return definition;
}

const std::vector<ScriptedElectricServer::Entry>& ScriptedElectricServer::LogEntriesLocked(
    const Definition& definition) {
  const Shape& shape = shapes_[definition.table];
  std::string key = absl::StrCat(definition.table, "\n", absl::StrJoin(definition.columns, ","),
                                 "\n", definition.full ? "full" : "default");
  for (const auto& [column, literal] : definition.where) {
    absl::StrAppend(&key, "\n", column, "=", literal);
  }
  // Entries are computed once per shape definition and extended as the log
  // grows, so a request costs its page, not the whole log.
  EntryCache& cache = entry_cache_[key];
  if (cache.handle != shape.handle || cache.log_start != shape.log_start) {
    cache = EntryCache{shape.handle, shape.log_start, shape.log_start, {}};
  }
  std::vector<Entry>& entries = cache.entries;
  const std::string& pk = tables_[definition.table].columns[0];
  for (size_t t = cache.upto; t < log_.size(); ++t) {
    const PeerTransaction& txn = log_[t];
    const size_t first = entries.size();
    for (size_t i = 0; i < txn.changes.size(); ++i) {
      const PeerChange& change = txn.changes[i];
      if (change.table != definition.table) continue;
      // An update that moves a row into or out of the where clause becomes
      // an insert or a delete (shapes/shape.ex convert_change).
      std::string op = change.op;
      nlohmann::json value = change.row;
      nlohmann::json old_value;
      if (op == "update") {
        const bool was = definition.Matches(change.old_row);
        const bool is = definition.Matches(change.row);
        if (!was && !is) continue;
        if (was && !is) {
          op = "delete";
          value = change.old_row;
        } else if (!was) {
          op = "insert";
        } else if (definition.full) {
          // replica=full: the whole new row, and the old values of the
          // columns that changed (log_items.ex put_update_values).
          old_value = nlohmann::json::object();
          for (const std::string& column : definition.columns) {
            if (change.old_row.contains(column) && change.row.contains(column) &&
                change.old_row[column] != change.row[column]) {
              old_value[column] = change.old_row[column];
            }
          }
        }
      } else if (!definition.Matches(change.row)) {
        continue;
      }
      nlohmann::json projected = definition.Project(value);
      if (!definition.full && op == "delete") {
        projected = {{pk, projected[pk]}};  // Deletes carry only the key (log_items.ex).
      }
      // Each change's offset is (commit LSN, 2 x its position in the
      // transaction) (postgres/replication_client/message_converter.ex);
      // headers as log_items.ex from_change builds them: txids holds the
      // 32-bit xid of pgoutput's Begin message, as a JSON number.
      const Offset offset{txn.lsn, 2 * i, false};
      nlohmann::json headers = {{"operation", op},
                                {"txids", nlohmann::json::array({txn.xid & 0xFFFFFFFFll})},
                                {"relation", nlohmann::json::array({"public", definition.table})},
                                {"lsn", absl::StrCat(txn.lsn)},
                                {"op_position", 2 * i}};
      nlohmann::json message = {{"headers", headers},
                                {"key", RowKey(definition.table, Text(change.row[pk]))},
                                {"value", projected}};
      if (!old_value.is_null()) message["old_value"] = old_value;
      entries.push_back({offset, std::move(message)});
    }
    // Only the transaction's last message in the shape says `last: true`;
    // no message ever says `last: false` (shapes/consumer.ex
    // maybe_mark_last_change, shapes/consumer/transaction_converter.ex).
    if (entries.size() > first) entries.back().message["headers"]["last"] = true;
  }
  cache.upto = log_.size();
  return entries;
}

CannedResponse ScriptedElectricServer::ServeShapeLocked(const ShapeRequest& request) {
  // Only /v1/shape is served (plug/router.ex: anything else is 404 "Not found").
  if (request.method != "GET" || request.path != "/v1/shape") {
    CannedResponse r;
    r.status = 404;
    r.body = "Not found";
    return r;
  }
  // With a secret configured, `secret` (or the older `api_secret`) must match
  // before anything else is looked at (plug/router.ex authenticate).
  if (!options_.secret.empty()) {
    const std::string given =
        request.Has("secret") ? request.Param("secret") : request.Param("api_secret");
    if (given != options_.secret) {
      CannedResponse r;
      r.status = 401;
      r.body = nlohmann::json{{"message", "Unauthorized - Invalid API secret"}}.dump();
      return r;
    }
  }
  // Parameters in the order shapes/api/params.ex validate checks them.
  if (!request.Has("offset")) return InvalidRequest("offset", "can't be blank");
  const std::string offset_text = request.Param("offset");
  std::optional<Offset> offset;
  const bool initial = offset_text == "-1";
  const bool now = offset_text == "now";
  if (!initial && !now) {
    offset = ParseOffset(offset_text);
    if (!offset.has_value()) return InvalidRequest("offset", "has invalid format");
    if (request.Param("handle").empty()) {
      return InvalidRequest("handle", "can't be blank when offset != -1");
    }
  }
  const bool live = request.Has("live") && request.Param("live") != "false";
  if (live && initial) return InvalidRequest("live", "can't be true when offset == -1");
  if (live && now) return InvalidRequest("live", "can't be true when offset is 'now'");
  absl::StatusOr<Definition> parsed = ParseDefinitionLocked(request);
  if (!parsed.ok()) {
    CannedResponse r = ErrorResponse(400, nlohmann::json::parse(parsed.status().message()));
    return r;
  }
  const Definition definition = *parsed;
  Shape* shape = &shapes_[definition.table];

  // A handle that is not the shape's current one: 409 naming the current
  // handle, body [must-refetch], cached briefly as a redirect
  // (shapes/api.ex handle_shape_info, shapes/api/error.ex,
  // shapes/api/response.ex put_cache_headers for 409). offset=-1 ignores
  // the handle (shapes/api/params.ex validate_handle_with_offset).
  auto conflict = [&](const std::string& handle) {
    CannedResponse r;
    r.status = 409;
    r.headers = {{"electric-handle", handle},
                 {"cache-control", "public, max-age=60, must-revalidate"}};
    r.body = R"([{"headers":{"control":"must-refetch"}}])";
    return r;
  };
  if (!initial && !now && request.Param("handle") != shape->handle) return conflict(shape->handle);

  // Common headers (shapes/api/response.ex put_resp_headers).
  // (The lambdas run under the caller's lock: clang's analysis does not
  // carry it into a lambda, so they say so.)
  auto respond = [&](const std::string& start, const std::string& end, nlohmann::json body,
                     bool up_to_date, bool no_changes) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    CannedResponse r;
    r.status = 200;
    std::string cache;
    if (initial) {
      cache = "public, max-age=604800, s-maxage=3600, stale-while-revalidate=2629746";
    } else if (live) {
      cache = "public, max-age=5, stale-while-revalidate=5";
    } else {
      cache = "public, max-age=60, stale-while-revalidate=300";
    }
    r.headers.emplace_back("cache-control", cache);
    if (live) {
      // The cursor: seconds since 2024-10-09 rounded up to the long-poll
      // interval, or more than the last one (plug/utils.ex
      // get_next_interval_timestamp).
      const int64_t interval = std::max<int64_t>(1, absl::ToInt64Seconds(options_.live_hold));
      const int64_t since = absl::ToUnixSeconds(absl::Now()) - 1728432000;
      int64_t cursor = (since + interval - 1) / interval * interval;
      int64_t previous = 0;
      if (!absl::SimpleAtoi(request.Param("cursor"), &previous)) previous = 0;
      if (cursor <= previous || cursor <= last_cursor_) {
        cursor = std::max(previous, last_cursor_) + 1 + (version_ % 3600);
      }
      last_cursor_ = cursor;
      r.headers.emplace_back("electric-cursor", absl::StrCat(cursor));
    }
    // Empty responses get a unique etag so a CDN cannot revalidate them.
    std::string etag = absl::StrCat(shape->handle, ":", offset_text, ":", end);
    if (no_changes) absl::StrAppend(&etag, ":", absl::ToUnixNanos(absl::Now()));
    r.headers.emplace_back("etag", absl::StrCat("\"", etag, "\""));
    r.headers.emplace_back("electric-handle", shape->handle);
    if (!live) {
      // The selected columns' types (schema.ex from_column_info); only sent
      // on non-live responses (shapes/api/response.ex put_schema_header).
      const Table& t = tables_[definition.table];
      nlohmann::json schema = nlohmann::json::object();
      for (const std::string& column : definition.columns) {
        auto type = t.types.find(column);
        schema[column] = {{"type", type == t.types.end() ? "text" : type->second}};
      }
      schema[t.columns[0]]["pk_index"] = 0;
      schema[t.columns[0]]["not_null"] = true;
      r.headers.emplace_back("electric-schema", schema.dump());
    }
    if (up_to_date) r.headers.emplace_back("electric-up-to-date", "");
    r.headers.emplace_back("electric-has-data", no_changes ? "false" : "true");
    r.headers.emplace_back("electric-offset", end);
    (void)start;
    r.body = body.dump();
    return r;
  };
  // up-to-date carries the LSN Electric vouches for, as a decimal string
  // (shapes/api.ex up_to_date_ctl).
  auto up_to_date_message = [](uint64_t lsn) {
    return nlohmann::json{
        {"headers", {{"control", "up-to-date"}, {"global_last_seen_lsn", absl::StrCat(lsn)}}}};
  };

  const size_t page = std::max<size_t>(1, options_.page_size);
  const size_t chunks = std::max<size_t>(1, (shape->snapshot.size() + page - 1) / page);
  // The snapshot, one chunk per request: rows as the initial query renders
  // them (operation insert, no txids, lsn or last: shapes/querying.ex), the
  // last chunk ending with snapshot-end (shapes/consumer/snapshotter.ex).
  // Never up-to-date, whatever follows (shapes/api.ex determine_up_to_date).
  auto snapshot_chunk = [&](size_t chunk) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    nlohmann::json body = nlohmann::json::array();
    const std::string& pk = tables_[definition.table].columns[0];
    for (size_t i = chunk * page; i < std::min(shape->snapshot.size(), (chunk + 1) * page); ++i) {
      const nlohmann::json& row = shape->snapshot[i];
      if (!definition.Matches(row)) continue;
      body.push_back({{"key", RowKey(definition.table, Text(row[pk]))},
                      {"value", definition.Project(row)},
                      {"headers",
                       {{"operation", "insert"},
                        {"relation", nlohmann::json::array({"public", definition.table})}}}});
    }
    if (chunk + 1 == chunks) {
      body.push_back({{"headers",
                       {{"control", "snapshot-end"},
                        {"xmin", absl::StrCat(shape->snapshot_xmin)},
                        {"xmax", absl::StrCat(shape->snapshot_xmax)},
                        {"xip_list", nlohmann::json::array()}}}});
    }
    return respond("", Offset{0, chunk, false}.ToString(), body, false, false);
  };
  if (initial) return snapshot_chunk(0);

  const std::vector<Entry>* entries = &LogEntriesLocked(definition);
  const Offset latest = entries->empty() ? Offset{0, 0, true} : entries->back().offset;
  if (now) {
    // offset=now: the end of the shape at once (shapes/api.ex seek for :now).
    return respond("", latest.ToString(),
                   nlohmann::json::array({up_to_date_message(last_processed_lsn_)}), true, true);
  }
  if (offset->tx == 0 && !offset->inf && offset->op + 1 < chunks) {
    return snapshot_chunk(offset->op + 1);
  }
  if (Less(latest, *offset)) {
    // shapes/api.ex @offset_out_of_bounds (Electric first waits half a long
    // poll for the offset to appear; the peer answers at once).
    return InvalidRequest("offset", "out of bounds for this shape");
  }
  // The first entry after the request's offset (the log is in commit order).
  auto after = [&](const std::vector<Entry>& all) {
    return static_cast<size_t>(
        std::upper_bound(all.begin(), all.end(), *offset,
                         [](const Offset& o, const Entry& e) { return Less(o, e.offset); }) -
        all.begin());
  };
  size_t fresh = after(*entries);
  if (live && fresh == entries->size()) {
    // Hold the long poll until the shape changes or the timeout passes
    // (shapes/api.ex hold_until_change).
    const std::string handle = shape->handle;
    const absl::Time deadline = absl::Now() + options_.live_hold;
    for (;;) {
      const uint64_t version = version_;
      auto changed = [this, version]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return stopping_ || version_ != version;
      };
      if (!mu_.AwaitWithDeadline(absl::Condition(&changed), deadline) || stopping_) break;
      shape = &shapes_[definition.table];
      if (shape->handle != handle) return conflict(shape->handle);  // Rotated meanwhile.
      entries = &LogEntriesLocked(definition);
      fresh = after(*entries);
      if (fresh < entries->size()) break;
    }
    if (fresh == entries->size()) {
      // Nothing new: only up-to-date, at the last LSN Electric processed,
      // and the offset the client sent (shapes/api.ex no_change_response).
      return respond("", offset_text,
                     nlohmann::json::array({up_to_date_message(last_processed_lsn_)}), true, true);
    }
  }
  const Offset end_of_shape = entries->empty() ? Offset{0, 0, true} : entries->back().offset;
  nlohmann::json body = nlohmann::json::array();
  Offset end = *offset;
  if (fresh == entries->size()) end = end_of_shape;
  for (size_t i = fresh; i < entries->size() && i < fresh + page; ++i) {
    body.push_back((*entries)[i].message);
    end = (*entries)[i].offset;
  }
  const bool up_to_date = end == end_of_shape;
  if (up_to_date) {
    // Live: the LSN of the chunk's last transaction; otherwise the greater of
    // that and the last LSN Electric processed (shapes/api.ex
    // do_serve_shape_log).
    const uint64_t chunk_lsn = end.tx;
    body.push_back(up_to_date_message(live ? chunk_lsn : std::max(last_processed_lsn_, chunk_lsn)));
  }
  return respond("", end.ToString(), body, up_to_date, false);
}

void ScriptedElectricServer::CreateTable(const std::string& table,
                                         std::vector<std::string> columns) {
  absl::MutexLock lock(&mu_);
  Table& t = tables_[table];
  t.types.clear();
  auto known = KnownTables().find(table);
  if (known != KnownTables().end()) {
    for (const auto& [name, type] : known->second) {
      if (columns.empty() || std::find(columns.begin(), columns.end(), name) != columns.end()) {
        t.types[name] = type;
      }
    }
    if (columns.empty()) {
      for (const auto& column : known->second) columns.push_back(column.first);
    }
  }
  if (columns.empty()) columns = {"id"};
  t.columns = std::move(columns);
}

void ScriptedElectricServer::CreateShape(const std::string& table, const std::string& handle) {
  Rotate(table, handle, {});
}

void ScriptedElectricServer::Rotate(const std::string& table, const std::string& handle,
                                    std::vector<nlohmann::json> rows) {
  {
    absl::MutexLock lock(&mu_);
    if (tables_.count(table) > 0) {
      Shape& shape = shapes_[table];
      shape.handle = handle;
      shape.snapshot = std::move(rows);
      // The snapshot's pg_current_snapshot(): nothing in progress here.
      shape.snapshot_xmin = next_xid_;
      shape.snapshot_xmax = next_xid_;
      shape.log_start = log_.size();
      ++version_;
      return;
    }
  }
  CreateTable(table);
  Rotate(table, handle, std::move(rows));
}

std::string ScriptedElectricServer::Handle(const std::string& table) {
  absl::MutexLock lock(&mu_);
  return shapes_[table].handle;
}

PeerTransaction ScriptedElectricServer::Commit(PeerTransaction txn) {
  absl::MutexLock lock(&mu_);
  if (txn.lsn == 0) txn.lsn = last_processed_lsn_ + 0x100;
  if (txn.xid == 0) txn.xid = next_xid_;
  next_xid_ = std::max(next_xid_, txn.xid + 1);
  // Transactions reach Electric in commit order; the last processed LSN
  // follows them (replication/shape_log_collector.ex publish).
  last_processed_lsn_ = std::max(last_processed_lsn_, txn.lsn);
  log_.push_back(txn);
  ++version_;
  return txn;
}

PeerTransaction ScriptedElectricServer::Commit(const std::string& table, const std::string& op,
                                               nlohmann::json row, nlohmann::json old_row) {
  PeerTransaction txn;
  txn.changes.push_back({table, op, std::move(row), std::move(old_row)});
  return Commit(std::move(txn));
}

uint64_t ScriptedElectricServer::last_processed_lsn() {
  absl::MutexLock lock(&mu_);
  return last_processed_lsn_;
}

int64_t ScriptedElectricServer::next_xid() {
  absl::MutexLock lock(&mu_);
  return next_xid_;
}

void ScriptedElectricServer::Inject(RequestMatcher match, CannedResponse response, int times) {
  absl::MutexLock lock(&mu_);
  interceptors_.push_back({std::move(match), std::move(response), /*hold=*/false, times});
}

void ScriptedElectricServer::Hold(RequestMatcher match, std::optional<CannedResponse> response) {
  absl::MutexLock lock(&mu_);
  interceptors_.push_back({std::move(match), std::move(response), /*hold=*/true, 1});
}

void ScriptedElectricServer::ReleaseHeld() {
  absl::MutexLock lock(&mu_);
  ++releases_;
}

std::vector<ShapeRequest> ScriptedElectricServer::Requests() {
  absl::MutexLock lock(&mu_);
  return requests_;
}

size_t ScriptedElectricServer::Count(const RequestMatcher& match) {
  absl::MutexLock lock(&mu_);
  size_t n = 0;
  for (const ShapeRequest& r : requests_) n += match(r) ? 1 : 0;
  return n;
}

bool ScriptedElectricServer::WaitForRequests(const RequestMatcher& match, size_t count,
                                             absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  auto enough = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    size_t n = 0;
    for (const ShapeRequest& r : requests_) n += match(r) ? 1 : 0;
    return n >= count;
  };
  return mu_.AwaitWithTimeout(absl::Condition(&enough), timeout);
}

}  // namespace wake::testing
