#include "common/sync/postgres/postgres_sync_source.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "common/backoff.h"
#include "common/logging.h"
#include "common/sync/postgres/connection_params.h"
#include "common/sync/postgres/pq_connection.h"
#include "common/sync/postgres/replication_session.h"

namespace wake::sync {
namespace {

using common::MonotonicTime;
using pgoutput::Lsn;

bool IsIdentifier(absl::string_view name, size_t max_length) {
  if (name.empty() || name.size() > max_length) return false;
  for (char c : name) {
    if (!absl::ascii_islower(c) && !absl::ascii_isdigit(c) && c != '_') return false;
  }
  return true;
}

bool IsConfigError(const absl::Status& status) {
  switch (status.code()) {
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kNotFound:
    case absl::StatusCode::kPermissionDenied:
    case absl::StatusCode::kFailedPrecondition:
      return true;
    default:
      return false;
  }
}

}  // namespace

PostgresSyncSource::PostgresSyncSource(std::string database_url, common::TimeSource& time,
                                       PostgresSyncSourceOptions options)
    : url_(std::move(database_url)), time_(time), options_(std::move(options)) {
  stop_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  kick_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  deadline_timer_ = time_.CreateTimer([this] { OnDeadlineTimer(); });
}

PostgresSyncSource::~PostgresSyncSource() {
  Stop();
  deadline_timer_.reset();
  if (stop_fd_ >= 0) close(stop_fd_);
  if (kick_fd_ >= 0) close(kick_fd_);
}

bool PostgresSyncSource::Stopping() {
  absl::MutexLock lock(&mu_);
  return stopping_;
}

std::string PostgresSyncSource::SlotName() {
  absl::MutexLock lock(&mu_);
  return slot_name_;
}

PostgresSyncSource::Stats PostgresSyncSource::stats() {
  absl::MutexLock lock(&mu_);
  return StatsLocked();
}

PostgresSyncSource::Stats PostgresSyncSource::StatsLocked() {
  Stats stats = stats_;
  stats.flush_queries = queries_issued_;
  return stats;
}

absl::Status PostgresSyncSource::Start(SyncObserver& observer, absl::Duration startup_timeout) {
  absl::MutexLock start_lock(&stop_mu_);
  if (started_) return absl::FailedPreconditionError("postgres sync: Start() called twice");
  started_ = true;
  if (stop_fd_ < 0 || kick_fd_ < 0) {
    return absl::ResourceExhaustedError("postgres sync: cannot create eventfds");
  }
  if (absl::StatusOr<PqConnection::Params> p = SyncConnectionParams(url_, true); !p.ok()) {
    return p.status();
  }
  if (!IsIdentifier(options_.publication, 63)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "postgres sync: publication name \"", options_.publication, "\" must match [a-z0-9_]+"));
  }
  if (!IsIdentifier(options_.slot_prefix, 40)) {
    return absl::InvalidArgumentError(
        absl::StrCat("postgres sync: slot prefix \"", options_.slot_prefix,
                     "\" must match [a-z0-9_]+ and be at most 40 characters"));
  }
  for (const auto& [name, value] :
       {std::pair<const char*, absl::Duration>{"backoff_initial", options_.backoff_initial},
        {"backoff_max", options_.backoff_max},
        {"connect_timeout", options_.connect_timeout},
        {"status_interval", options_.status_interval},
        {"barrier_repoll_interval", options_.barrier_repoll_interval}}) {
    if (value <= absl::ZeroDuration()) {
      return absl::InvalidArgumentError(
          absl::StrCat("postgres sync: option ", name, " must be positive"));
    }
  }
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) return absl::FailedPreconditionError("postgres sync: already stopped");
    observer_ = &observer;
  }
  thread_ = std::thread([this] { Run(); });

  bool expired = false;
  common::TimerPtr timer = time_.CreateTimer([this, &expired] {
    absl::MutexLock lock(&mu_);
    expired = true;
  });
  timer->Enable(startup_timeout);
  absl::Status result;
  {
    absl::MutexLock lock(&mu_);
    auto done = [this, &expired]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return up_to_date_once_ || expired || !config_error_.ok() || stopping_;
    };
    mu_.Await(absl::Condition(&done));
    if (up_to_date_once_) {
      result = absl::OkStatus();
    } else if (!config_error_.ok()) {
      result = config_error_;
    } else if (stopping_) {
      result = absl::UnavailableError("postgres sync: stopped during startup");
    } else {
      result = absl::UnavailableError(absl::StrCat(
          "postgres sync: not up to date within ", absl::FormatDuration(startup_timeout), ": ",
          last_error_.ok() ? "still loading the snapshot" : last_error_.message()));
    }
  }
  timer.reset();
  if (!result.ok()) {
    {
      absl::MutexLock lock(&mu_);
      stopping_ = true;
    }
    const uint64_t one = 1;
    if (write(stop_fd_, &one, sizeof(one)) < 0) {
      // Cannot fail for an eventfd this far from overflow.
    }
    thread_.join();
  }
  return result;
}

void PostgresSyncSource::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  if (stop_fd_ >= 0) {
    const uint64_t one = 1;
    if (write(stop_fd_, &one, sizeof(one)) < 0) {
      // Cannot fail for an eventfd this far from overflow.
    }
  }
  absl::MutexLock stop_lock(&stop_mu_);
  if (thread_.joinable()) thread_.join();
  {
    absl::MutexLock lock(&mu_);
    auto idle = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return active_barriers_ == 0; };
    mu_.Await(absl::Condition(&idle));
    synced_ = false;
    if (!stopped_ && up_to_date_once_) {
      // Once per source that served: how much the barriers shared.
      const Stats stats = StatsLocked();
      common::LogInfo("sync_stats", {{"barriers", stats.barrier_calls},
                                     {"flush_queries", stats.flush_queries},
                                     {"reply_requests", stats.reply_requests},
                                     {"sessions_up_to_date", stats.sessions_up_to_date}});
    }
    stopped_ = true;
    slot_name_.clear();
  }
  absl::MutexLock lock(&query_conn_mu_);
  query_conn_.reset();
}

void PostgresSyncSource::BackoffWait(absl::Duration delay) {
  bool fired = false;
  common::TimerPtr timer = time_.CreateTimer([this, &fired] {
    absl::MutexLock lock(&mu_);
    fired = true;
  });
  timer->Enable(delay);
  {
    absl::MutexLock lock(&mu_);
    auto done = [this, &fired]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return fired || stopping_; };
    mu_.Await(absl::Condition(&done));
  }
}

absl::Status PostgresSyncSource::RunSession(bool* reached_up_to_date) {
  SyncObserver* observer;
  {
    absl::MutexLock lock(&mu_);
    observer = observer_;
  }
  Session session(*this, *observer);
  absl::Status status = session.Run();
  *reached_up_to_date = session.reached_up_to_date();
  return status;
}

void PostgresSyncSource::Run() {
  common::Backoff backoff(options_.backoff_initial, options_.backoff_max);
  bool reported_down = false;
  for (;;) {
    bool reached = false;
    absl::Status status = RunSession(&reached);
    {
      absl::MutexLock lock(&mu_);
      synced_ = false;
      slot_name_.clear();
    }
    if (Stopping()) return;
    if (reached) {
      backoff.Reset();
      reported_down = false;
    }
    if (absl::IsAborted(status) && reached) {
      common::LogInfo("pg_sync_resync", {{"reason", status.message()}});
      continue;
    }
    bool give_up = false;
    {
      absl::MutexLock lock(&mu_);
      last_error_ = status;
      if (IsConfigError(status) && !up_to_date_once_) {
        config_error_ =
            absl::InvalidArgumentError(absl::StrCat("postgres sync: ", status.message()));
        give_up = true;
      }
    }
    if (give_up) return;
    const absl::Duration delay = backoff.Next();
    common::LogWarn("pg_sync_disconnected",
                    {{"error", status}, {"retry_in", absl::FormatDuration(delay)}});
    if (!reported_down) {
      reported_down = true;
      SyncObserver* observer;
      {
        absl::MutexLock lock(&mu_);
        observer = observer_;
      }
      observer->OnDisconnected(status);
    }
    BackoffWait(delay);
    if (Stopping()) return;
  }
}

void PostgresSyncSource::KickStreamer() {
  const uint64_t one = 1;
  if (write(kick_fd_, &one, sizeof(one)) < 0) {
    // Full counter: the streamer has plenty of kicks pending already.
  }
}

absl::StatusOr<Lsn> PostgresSyncSource::QueryFlushLsn(MonotonicTime deadline) {
  constexpr char kStatement[] = "wakeline_flush_lsn";
  absl::MutexLock lock(&query_conn_mu_);
  if (query_conn_ == nullptr || !query_conn_->connected()) {
    absl::StatusOr<PqConnection::Params> params = SyncConnectionParams(url_, false);
    if (!params.ok()) return params.status();
    query_conn_ = std::make_unique<PqConnection>(time_, stop_fd_);
    absl::Status s = query_conn_->Connect(*params, deadline);
    if (s.ok()) s = query_conn_->Prepare(kStatement, "SELECT pg_current_wal_flush_lsn()", deadline);
    if (!s.ok()) {
      query_conn_.reset();
      return s;
    }
  }
  absl::StatusOr<std::vector<PgResultPtr>> results =
      query_conn_->ExecPrepared(kStatement, deadline);
  if (!results.ok()) {
    query_conn_.reset();
    return results.status();
  }
  return pgoutput::ParseLsn(ResultText(results->back().get(), 0, 0));
}

void PostgresSyncSource::AddDeadlineLocked(MonotonicTime deadline) {
  barrier_deadlines_.insert(deadline);
  if (deadline < deadline_timer_at_) {
    deadline_timer_at_ = deadline;
    deadline_timer_->Enable(common::ToAbsl(deadline - time_.MonotonicNow()));
  }
}

void PostgresSyncSource::RemoveDeadlineLocked(MonotonicTime deadline) {
  // The timer stays armed: firing for nobody is cheaper than re-arming.
  barrier_deadlines_.erase(barrier_deadlines_.find(deadline));
}

void PostgresSyncSource::OnDeadlineTimer() {
  absl::MutexLock lock(&mu_);
  const MonotonicTime now = time_.MonotonicNow();
  deadlines_passed_ = std::max(deadlines_passed_, now);
  deadline_timer_at_ = MonotonicTime::max();
  auto next = barrier_deadlines_.upper_bound(now);
  if (next != barrier_deadlines_.end()) {
    deadline_timer_at_ = *next;
    deadline_timer_->Enable(common::ToAbsl(*next - now));
  }
}

absl::Status PostgresSyncSource::Barrier(absl::Duration timeout) {
  const MonotonicTime deadline = time_.MonotonicNow() + common::ToChrono(timeout);
  absl::MutexLock lock(&mu_);
  if (observer_ == nullptr) {
    return absl::FailedPreconditionError("postgres sync: Barrier() before Start()");
  }
  if (stopping_) return absl::UnavailableError("postgres sync: stopped");
  ++active_barriers_;
  ++stats_.barrier_calls;
  AddDeadlineLocked(deadline);
  absl::Status result = BarrierLocked(deadline, timeout);
  RemoveDeadlineLocked(deadline);
  --active_barriers_;
  return result;
}

absl::Status PostgresSyncSource::BarrierLocked(MonotonicTime deadline, absl::Duration timeout) {
  auto expired = [this, deadline]()
                     ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return deadlines_passed_ >= deadline; };
  // Phase 1: the server's flush position, read after this call began.
  const uint64_t ticket = queries_issued_ + 1;
  int failures = 0;
  Lsn target = 0;
  for (;;) {
    if (stopping_) return absl::UnavailableError("postgres sync: stopped");
    if (queries_done_ >= ticket) {
      target = queried_lsn_;
      break;
    }
    if (expired()) {
      const absl::Status& why = !query_error_.ok() ? query_error_ : last_error_;
      return absl::UnavailableError(
          absl::StrCat(synced_ ? "postgres sync: barrier timed out reading the WAL position"
                               : "postgres sync: disconnected from PostgreSQL",
                       why.ok() ? "" : absl::StrCat(": ", why.message())));
    }
    if (!query_in_flight_ && (synced_ || failures == 0)) {
      query_in_flight_ = true;
      const uint64_t number = ++queries_issued_;
      mu_.Unlock();
      absl::StatusOr<Lsn> lsn = QueryFlushLsn(deadline);
      mu_.Lock();
      query_in_flight_ = false;
      if (lsn.ok()) {
        queries_done_ = number;
        queried_lsn_ = std::max(queried_lsn_, *lsn);
        query_error_ = absl::OkStatus();
      } else {
        query_error_ = lsn.status();
        ++failures;
        if (synced_ && failures >= 2) {
          return absl::UnavailableError(absl::StrCat(
              "postgres sync: cannot read the WAL position: ", lsn.status().message()));
        }
      }
      continue;
    }
    // Another caller's query will serve us, or the database is down and only
    // the stream's recovery tells when to try again.
    auto progress = [this, ticket, failures, &expired]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return stopping_ || expired() || queries_done_ >= ticket ||
             (!query_in_flight_ && (synced_ || failures == 0));
    };
    mu_.Await(absl::Condition(&progress));
  }

  // Phase 2: the stream has delivered everything before that position.
  auto reached = [this, target]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return synced_ && delivered_lsn_ >= target;
  };
  if (!reached()) {
    if (target > wanted_lsn_) {
      wanted_lsn_ = target;
      KickStreamer();
    }
    auto done = [this, &reached, &expired]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return reached() || stopping_ || expired();
    };
    mu_.Await(absl::Condition(&done));
  }
  if (reached()) return absl::OkStatus();
  if (stopping_) return absl::UnavailableError("postgres sync: stopped");
  if (!synced_) {
    return absl::UnavailableError(
        absl::StrCat("postgres sync: disconnected from PostgreSQL",
                     last_error_.ok() ? "" : absl::StrCat(": ", last_error_.message())));
  }
  return absl::UnavailableError(absl::StrCat(
      "postgres sync: stream still behind after ", absl::FormatDuration(timeout), " (delivered ",
      pgoutput::FormatLsn(delivered_lsn_), ", need ", pgoutput::FormatLsn(target), ")"));
}

}  // namespace wake::sync
