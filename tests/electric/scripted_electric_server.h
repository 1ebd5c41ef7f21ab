// A scripted Electric for tests: a real HTTP/1.1 server on 127.0.0.1 (port 0)
// serving `GET /v1/shape` the way Electric's own server does, written from
// its code (electric-sql/electric, packages/sync-service) rather than from
// what our client expects. Each rule in scripted_electric_server.cc names the
// Electric file it follows; docs/electric.md lists them.
//
// The model: tables receive committed transactions (PeerTransaction: a commit
// LSN, an xid8 and row changes, as pgoutput delivers them to Electric). A
// shape is one table with a handle, a snapshot taken when the shape was
// created, and the log of every transaction committed since. Requests pick
// the rows of their `where` clause and `columns`; responses are cut into
// chunks of `page_size` entries wherever that falls, inside a transaction or
// not, as Electric's chunking by bytes does. Test controls on top: canned
// responses, held requests and a log of every request.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace wake::testing {

struct ShapeRequest {
  int seq = 0;
  std::string method;
  std::string target;  // As received, percent-encoded.
  std::string path;
  std::map<std::string, std::string> query;  // Decoded.
  int status = 0;                            // What the server answered (0: not yet, or never).

  bool Has(const std::string& name) const { return query.count(name) > 0; }
  std::string Param(const std::string& name) const {
    auto it = query.find(name);
    return it == query.end() ? std::string() : it->second;
  }
  bool live() const { return Param("live") == "true"; }
  std::string table() const { return Param("table"); }
};

struct CannedResponse {
  int status = 200;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
};

using RequestMatcher = std::function<bool(const ShapeRequest&)>;

// One row change, as Electric's replication client receives it: the row's
// columns as Postgres text (NULL as JSON null). For an update, `row` is the
// new row and `old_row` the old one (REPLICA IDENTITY FULL); for a delete,
// `row` is the old row.
struct PeerChange {
  std::string table;
  std::string op;  // "insert", "update" or "delete".
  nlohmann::json row;
  nlohmann::json old_row;
};

// One committed transaction. `lsn` is its commit LSN (pgoutput's
// Begin.final_lsn) and `xid` its xid8; 0 picks the next ones.
struct PeerTransaction {
  uint64_t lsn = 0;
  int64_t xid = 0;
  std::vector<PeerChange> changes;
};

class ScriptedElectricServer {
 public:
  struct Options {
    // Log entries or snapshot rows per response (Electric's chunks).
    size_t page_size = 100;
    // How long a live request at the end of its shape is held (Electric's
    // long_poll_timeout, 20 s).
    absl::Duration live_hold = absl::Seconds(20);
    // ELECTRIC_SECRET; empty = insecure mode.
    std::string secret;
    // Where Electric's replication slot starts: the last processed LSN
    // before any transaction, and the next xid8.
    uint64_t initial_lsn = 0x1000000;
    int64_t initial_xid = 750;
  };

  static absl::StatusOr<std::unique_ptr<ScriptedElectricServer>> Start(Options options);
  static absl::StatusOr<std::unique_ptr<ScriptedElectricServer>> Start() {
    return Start(Options{});
  }
  ~ScriptedElectricServer();

  // http://127.0.0.1:<port>
  std::string url() const;

  // Declares `table` with its columns (the first is the primary key);
  // wake_registrations, wakes and wake_sync_markers have theirs by default.
  void CreateTable(const std::string& table, std::vector<std::string> columns = {});
  // A shape of `table` (declared if needed) with an empty snapshot.
  void CreateShape(const std::string& table, const std::string& handle);
  // Replaces the shape: a new handle and a snapshot of `rows`, with an empty
  // log. Requests with the old handle (held live polls too) get 409.
  void Rotate(const std::string& table, const std::string& handle,
              std::vector<nlohmann::json> rows);
  std::string Handle(const std::string& table);

  // Commits a transaction: it joins the log of each shape it touches, and
  // Electric's last processed LSN becomes its LSN. Returns it with lsn and
  // xid filled in. Wakes held live requests.
  PeerTransaction Commit(PeerTransaction txn);
  // A one-change transaction.
  PeerTransaction Commit(const std::string& table, const std::string& op, nlohmann::json row,
                         nlohmann::json old_row = nullptr);
  // The LSN Electric last processed (lib/electric/lsn_tracker.ex).
  uint64_t last_processed_lsn();
  // The next xid8 Commit() would pick.
  int64_t next_xid();

  // The next `times` requests matching `match` (-1: all) get `response`
  // instead of the protocol's answer. Earlier injections match first.
  void Inject(RequestMatcher match, CannedResponse response, int times = 1);
  // The next request matching `match` waits for ReleaseHeld(), then is
  // served normally, or with `response` when given.
  void Hold(RequestMatcher match, std::optional<CannedResponse> response = std::nullopt);
  void ReleaseHeld();

  std::vector<ShapeRequest> Requests();
  size_t Count(const RequestMatcher& match);
  // Waits until at least `count` requests matching `match` have arrived.
  bool WaitForRequests(const RequestMatcher& match, size_t count, absl::Duration timeout);

 private:
  struct Table {
    std::vector<std::string> columns;          // columns[0] is the primary key.
    std::map<std::string, std::string> types;  // Postgres type names, where known.
  };
  struct Shape {
    std::string handle;
    std::vector<nlohmann::json> snapshot;
    int64_t snapshot_xmin = 0;
    int64_t snapshot_xmax = 0;
    // Transactions committed since the snapshot (indexes into log_).
    size_t log_start = 0;
  };
  struct Interceptor {
    RequestMatcher match;
    std::optional<CannedResponse> response;  // Empty: the protocol's answer.
    bool hold = false;
    int times = 1;  // -1: forever.
  };
  struct Definition;
  struct Entry;
  struct EntryCache {
    std::string handle;
    size_t log_start = 0;
    size_t upto = 0;  // log_ index computed so far.
    std::vector<Entry> entries;
  };

  ScriptedElectricServer(Options options, int listen_fd, int port, int wake_read, int wake_write);
  void AcceptLoop();
  void Serve(int fd);
  CannedResponse Handle(ShapeRequest request);
  CannedResponse ServeShapeLocked(const ShapeRequest& request) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::StatusOr<Definition> ParseDefinitionLocked(const ShapeRequest& request)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The shape's log as messages for `definition`; valid until the next call.
  const std::vector<Entry>& LogEntriesLocked(const Definition& definition)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const Options options_;
  const int listen_fd_;
  const int port_;
  const int wake_read_;
  const int wake_write_;
  std::thread accept_thread_;

  absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::map<std::string, Table> tables_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, Shape> shapes_ ABSL_GUARDED_BY(mu_);
  std::vector<PeerTransaction> log_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, EntryCache> entry_cache_ ABSL_GUARDED_BY(mu_);
  uint64_t last_processed_lsn_ ABSL_GUARDED_BY(mu_);
  int64_t next_xid_ ABSL_GUARDED_BY(mu_);
  uint64_t version_ ABSL_GUARDED_BY(mu_) = 0;  // Bumped by every change; wakes live polls.
  int64_t last_cursor_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t releases_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<Interceptor> interceptors_ ABSL_GUARDED_BY(mu_);
  std::vector<ShapeRequest> requests_ ABSL_GUARDED_BY(mu_);
  std::set<int> connections_ ABSL_GUARDED_BY(mu_);
  std::vector<std::thread> connection_threads_ ABSL_GUARDED_BY(mu_);
};

}  // namespace wake::testing
