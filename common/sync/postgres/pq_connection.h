// A libpq connection driven in non-blocking mode: every wait watches the
// socket together with a cancel file descriptor and a deadline, so a thread
// using it can always be stopped promptly and never hangs on a dead server.
#pragma once

#include <postgresql/libpq-fe.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/time_source.h"

namespace wake::sync {

struct PgResultDeleter {
  void operator()(PGresult* result) const { PQclear(result); }
};
using PgResultPtr = std::unique_ptr<PGresult, PgResultDeleter>;

// Maps a failed result by SQLSTATE: connection trouble, shutdown and
// resource limits (08, 57P, 53, 58) -> UNAVAILABLE; 40 -> ABORTED; 42501 ->
// PERMISSION_DENIED; undefined object / table / database -> NOT_FOUND;
// 55000 (e.g. wal_level too low) -> FAILED_PRECONDITION; else INTERNAL.
absl::Status StatusFromResult(const PGresult* result, absl::string_view context);

// One value of a result, as the text the server sent ("" for NULL).
std::string ResultText(const PGresult* result, int row, int column);

class PqConnection {
 public:
  using Params = std::vector<std::pair<std::string, std::string>>;

  // Once `cancel_fd` is readable every wait returns CANCELLED (-1: none).
  PqConnection(common::TimeSource& time, int cancel_fd);
  ~PqConnection();

  PqConnection(const PqConnection&) = delete;
  PqConnection& operator=(const PqConnection&) = delete;

  // Connects with libpq keywords; a "dbname" holding a URI or conninfo
  // string is expanded, later keywords override it. UNAVAILABLE with
  // libpq's reason when the server cannot be reached in time.
  absl::Status Connect(const Params& params, common::MonotonicTime deadline);

  // Sends `sql` with the simple query protocol (several statements allowed)
  // and returns every result in order; stops after a COPY BOTH result (the
  // answer to START_REPLICATION). The first failed statement's status is
  // returned instead (see StatusFromResult).
  absl::StatusOr<std::vector<PgResultPtr>> Exec(const std::string& sql,
                                                common::MonotonicTime deadline);

  // Prepares a parameterless statement once, then runs it by name (no parse
  // or plan on the server per call).
  absl::Status Prepare(const std::string& name, const std::string& sql,
                       common::MonotonicTime deadline);
  absl::StatusOr<std::vector<PgResultPtr>> ExecPrepared(const std::string& name,
                                                        common::MonotonicTime deadline);

  // Queues CopyData and tries to send it; call FlushPending() when
  // wants_write() says some is still buffered.
  absl::Status PutCopyData(absl::string_view data);
  absl::Status FlushPending();
  bool wants_write() const { return wants_write_; }

  // Reads what the socket has; UNAVAILABLE when the connection broke.
  absl::Status ConsumeInput();

  // Waits for the socket (readable, or also writable), `extra_fd` readable
  // (-1: none), or the deadline (DEADLINE_EXCEEDED). OK when something is
  // ready; *extra_ready tells whether `extra_fd` was.
  absl::Status Wait(bool want_write, int extra_fd, common::MonotonicTime deadline,
                    bool* extra_ready = nullptr);

  // The connection's last error, first line, without the trailing newline.
  std::string ErrorMessage() const;

  PGconn* get() const { return conn_; }
  bool connected() const { return conn_ != nullptr && PQstatus(conn_) == CONNECTION_OK; }

  // Closes the connection (the server ends the session, dropping its
  // temporary replication slot).
  void Close();

 private:
  // Sends what was queued and collects the results (see Exec()).
  absl::StatusOr<std::vector<PgResultPtr>> Finish(common::MonotonicTime deadline);

  common::TimeSource& time_;
  const int cancel_fd_;
  PGconn* conn_ = nullptr;
  bool wants_write_ = false;
};

}  // namespace wake::sync
