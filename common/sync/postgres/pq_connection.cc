#include "common/sync/postgres/pq_connection.h"

#include <poll.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace wake::sync {
namespace {

std::string FirstLine(const char* text) {
  std::string line = text != nullptr ? text : "";
  if (size_t nl = line.find('\n'); nl != std::string::npos) line.resize(nl);
  while (!line.empty() && line.back() == ' ') line.pop_back();
  return line;
}

// Poll timeout in ms towards `deadline`, capped so a deadline measured on a
// time source other than the kernel's clock is re-checked now and then.
int PollTimeoutMs(common::TimeSource& time, common::MonotonicTime deadline) {
  if (deadline == common::MonotonicTime::max()) return 1000;
  const absl::Duration left = common::ToAbsl(deadline - time.MonotonicNow());
  if (left <= absl::ZeroDuration()) return 0;
  return static_cast<int>(std::min<int64_t>(1000, absl::ToInt64Milliseconds(left) + 1));
}

}  // namespace

std::string ResultText(const PGresult* result, int row, int column) {
  return std::string(PQgetvalue(result, row, column), PQgetlength(result, row, column));
}

absl::Status StatusFromResult(const PGresult* result, absl::string_view context) {
  const char* state_text = PQresultErrorField(result, PG_DIAG_SQLSTATE);
  const std::string state = state_text != nullptr ? state_text : "";
  const std::string message =
      absl::StrCat(context, ": ", FirstLine(PQresultErrorMessage(result)),
                   state.empty() ? "" : absl::StrCat(" (SQLSTATE ", state, ")"));
  if (state.empty() || absl::StartsWith(state, "08") || absl::StartsWith(state, "57P") ||
      absl::StartsWith(state, "53") || absl::StartsWith(state, "58")) {
    // No SQLSTATE: libpq's own failure, i.e. the connection.
    return absl::UnavailableError(message);
  }
  if (absl::StartsWith(state, "40")) return absl::AbortedError(message);
  if (state == "42501") return absl::PermissionDeniedError(message);
  if (state == "42704" || state == "42P01" || state == "3D000") {
    return absl::NotFoundError(message);
  }
  if (state == "55000") return absl::FailedPreconditionError(message);
  return absl::InternalError(message);
}

PqConnection::PqConnection(common::TimeSource& time, int cancel_fd)
    : time_(time), cancel_fd_(cancel_fd) {}

PqConnection::~PqConnection() { Close(); }

void PqConnection::Close() {
  if (conn_ != nullptr) PQfinish(conn_);
  conn_ = nullptr;
  wants_write_ = false;
}

std::string PqConnection::ErrorMessage() const {
  if (conn_ == nullptr) return "not connected";
  std::string message = FirstLine(PQerrorMessage(conn_));
  return message.empty() ? "connection lost" : message;
}

absl::Status PqConnection::Wait(bool want_write, int extra_fd, common::MonotonicTime deadline,
                                bool* extra_ready) {
  if (extra_ready != nullptr) *extra_ready = false;
  for (;;) {
    pollfd fds[3];
    nfds_t n = 0;
    const int socket = conn_ != nullptr ? PQsocket(conn_) : -1;
    if (socket < 0) return absl::UnavailableError(ErrorMessage());
    fds[n++] = {socket, static_cast<short>(POLLIN | (want_write ? POLLOUT : 0)), 0};
    if (cancel_fd_ >= 0) fds[n++] = {cancel_fd_, POLLIN, 0};
    const int extra_index = static_cast<int>(n);
    if (extra_fd >= 0) fds[n++] = {extra_fd, POLLIN, 0};
    const int timeout = PollTimeoutMs(time_, deadline);
    const int ready = poll(fds, n, timeout);
    if (ready < 0) {
      if (errno == EINTR) continue;
      return absl::InternalError(absl::StrCat("poll: ", std::strerror(errno)));
    }
    if (cancel_fd_ >= 0 && (fds[1].revents & POLLIN) != 0) {
      return absl::CancelledError("stopping");
    }
    if (extra_fd >= 0 && (fds[extra_index].revents & POLLIN) != 0 && extra_ready != nullptr) {
      *extra_ready = true;
    }
    if (ready > 0) return absl::OkStatus();
    if (time_.MonotonicNow() >= deadline) {
      return absl::DeadlineExceededError("no answer from the server in time");
    }
  }
}

absl::Status PqConnection::Connect(const Params& params, common::MonotonicTime deadline) {
  Close();
  std::vector<const char*> keys;
  std::vector<const char*> values;
  for (const auto& [key, value] : params) {
    keys.push_back(key.c_str());
    values.push_back(value.c_str());
  }
  keys.push_back(nullptr);
  values.push_back(nullptr);
  conn_ = PQconnectStartParams(keys.data(), values.data(), /*expand_dbname=*/1);
  if (conn_ == nullptr) return absl::ResourceExhaustedError("libpq: out of memory");
  if (PQstatus(conn_) == CONNECTION_BAD) {
    return absl::UnavailableError(absl::StrCat("cannot connect: ", ErrorMessage()));
  }
  PostgresPollingStatusType poll_status = PGRES_POLLING_WRITING;
  for (;;) {
    if (poll_status == PGRES_POLLING_OK) break;
    if (poll_status == PGRES_POLLING_FAILED) {
      return absl::UnavailableError(absl::StrCat("cannot connect: ", ErrorMessage()));
    }
    absl::Status waited = Wait(poll_status == PGRES_POLLING_WRITING, -1, deadline);
    if (absl::IsDeadlineExceeded(waited)) {
      return absl::UnavailableError("cannot connect: timed out");
    }
    if (!waited.ok()) return waited;
    poll_status = PQconnectPoll(conn_);
  }
  if (PQsetnonblocking(conn_, 1) != 0) {
    return absl::UnavailableError(absl::StrCat("cannot connect: ", ErrorMessage()));
  }
  return absl::OkStatus();
}

absl::Status PqConnection::ConsumeInput() {
  if (conn_ == nullptr || PQconsumeInput(conn_) == 0) {
    return absl::UnavailableError(absl::StrCat("connection lost: ", ErrorMessage()));
  }
  return absl::OkStatus();
}

absl::Status PqConnection::FlushPending() {
  const int flushed = PQflush(conn_);
  if (flushed < 0) return absl::UnavailableError(absl::StrCat("send failed: ", ErrorMessage()));
  wants_write_ = flushed == 1;
  return absl::OkStatus();
}

absl::Status PqConnection::PutCopyData(absl::string_view data) {
  const int put = PQputCopyData(conn_, data.data(), static_cast<int>(data.size()));
  if (put < 0) return absl::UnavailableError(absl::StrCat("send failed: ", ErrorMessage()));
  if (put == 0) {
    // libpq's buffer is full: it only happens while the peer does not read.
    wants_write_ = true;
    return absl::UnavailableError("send buffer full: the server is not reading");
  }
  return FlushPending();
}

absl::StatusOr<std::vector<PgResultPtr>> PqConnection::Exec(const std::string& sql,
                                                            common::MonotonicTime deadline) {
  if (conn_ == nullptr) return absl::UnavailableError("not connected");
  if (PQsendQuery(conn_, sql.c_str()) == 0) {
    return absl::UnavailableError(absl::StrCat("send failed: ", ErrorMessage()));
  }
  return Finish(deadline);
}

absl::Status PqConnection::Prepare(const std::string& name, const std::string& sql,
                                   common::MonotonicTime deadline) {
  if (conn_ == nullptr) return absl::UnavailableError("not connected");
  if (PQsendPrepare(conn_, name.c_str(), sql.c_str(), 0, nullptr) == 0) {
    return absl::UnavailableError(absl::StrCat("send failed: ", ErrorMessage()));
  }
  return Finish(deadline).status();
}

absl::StatusOr<std::vector<PgResultPtr>> PqConnection::ExecPrepared(
    const std::string& name, common::MonotonicTime deadline) {
  if (conn_ == nullptr) return absl::UnavailableError("not connected");
  if (PQsendQueryPrepared(conn_, name.c_str(), 0, nullptr, nullptr, nullptr, 0) == 0) {
    return absl::UnavailableError(absl::StrCat("send failed: ", ErrorMessage()));
  }
  return Finish(deadline);
}

absl::StatusOr<std::vector<PgResultPtr>> PqConnection::Finish(common::MonotonicTime deadline) {
  auto timed_out = [](const absl::Status& s) {
    return absl::IsDeadlineExceeded(s) ? absl::UnavailableError("query timed out") : s;
  };
  for (;;) {
    if (absl::Status s = FlushPending(); !s.ok()) return s;
    if (!wants_write_) break;
    if (absl::Status s = Wait(true, -1, deadline); !s.ok()) return timed_out(s);
    if (absl::Status s = ConsumeInput(); !s.ok()) return s;
  }
  std::vector<PgResultPtr> results;
  absl::Status first_error;
  for (;;) {
    while (PQisBusy(conn_)) {
      if (absl::Status s = Wait(false, -1, deadline); !s.ok()) return timed_out(s);
      if (absl::Status s = ConsumeInput(); !s.ok()) return s;
    }
    PgResultPtr result(PQgetResult(conn_));
    if (result == nullptr) break;
    const ExecStatusType status = PQresultStatus(result.get());
    if (status == PGRES_COPY_BOTH) {
      results.push_back(std::move(result));
      break;
    }
    if (status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK) {
      results.push_back(std::move(result));
      continue;
    }
    if (first_error.ok()) {
      first_error =
          status == PGRES_FATAL_ERROR || status == PGRES_NONFATAL_ERROR
              ? StatusFromResult(result.get(), "query failed")
              : absl::InternalError(absl::StrCat("unexpected result status ", PQresStatus(status)));
    }
    if (status == PGRES_COPY_IN || status == PGRES_COPY_OUT) {
      return first_error;  // Not something we ever ask for; the caller drops us.
    }
  }
  if (!first_error.ok()) return first_error;
  return results;
}

}  // namespace wake::sync
