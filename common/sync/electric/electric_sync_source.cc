#include "common/sync/electric/electric_sync_source.h"

#include <algorithm>
#include <exception>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/backoff.h"
#include "common/logging.h"
#include "common/sync/electric/curl_http_client.h"
#include "common/sync/electric/electric_values.h"

namespace wake::sync {
namespace {

constexpr char kRegistrationsTable[] = "wake_registrations";
constexpr char kWakesTable[] = "wakes";

bool IsHttpUrl(absl::string_view url) {
  return absl::StartsWith(url, "http://") || absl::StartsWith(url, "https://");
}

}  // namespace

ElectricSyncSource::ElectricSyncSource(ElectricSyncConfig config, common::TimeSource& time,
                                       CurrentLsnProvider current_lsn,
                                       HttpClientFactory http_factory)
    : config_(std::move(config)), time_(time), current_lsn_(std::move(current_lsn)) {
  if (!http_factory) {
    const absl::Duration connect_timeout = config_.connect_timeout;
    http_factory = [connect_timeout] { return std::make_unique<CurlHttpClient>(connect_timeout); };
  }
  ShapeClientOptions options;
  options.base_url = config_.url;
  options.secret = config_.secret;
  options.request_timeout = config_.request_timeout;
  options.live_timeout = config_.live_timeout;
  const std::string where = config_.tenant.empty() ? "" : TenantWhereClause(config_.tenant);

  auto add = [&](const char* table, SyncTable kind, const std::vector<std::string>& columns) {
    auto shape = std::make_unique<Shape>();
    shape->name = table;
    shape->table = kind;
    shape->http = http_factory();
    shape->client = std::make_unique<ElectricShapeClient>(
        options, ShapeDefinition{table, columns, where}, *shape->http);
    shapes_.push_back(std::move(shape));
  };
  add(kRegistrationsTable, SyncTable::kRegistrations, RegistrationShapeColumns());
  if (config_.follow_wakes) add(kWakesTable, SyncTable::kWakes, WakeShapeColumns());

  absl::MutexLock lock(&mu_);
  progress_.resize(shapes_.size());
}

ElectricSyncSource::~ElectricSyncSource() { Stop(); }

absl::Status ElectricSyncSource::Start(SyncObserver& observer, absl::Duration startup_timeout) {
  if (!IsHttpUrl(config_.url)) {
    return absl::InvalidArgumentError(
        absl::StrCat("electric url \"", config_.url, "\" must start with http:// or https://"));
  }
  {
    absl::MutexLock lock(&mu_);
    if (started_) return absl::FailedPreconditionError("electric sync source already started");
    if (stopping_) return absl::FailedPreconditionError("electric sync source was stopped");
    started_ = true;
  }
  observer_ = &observer;
  common::LogInfo("electric_sync_starting",
                  {{"url", config_.url},
                   {"tenant", config_.tenant.empty() ? "*" : config_.tenant},
                   {"shapes", shapes_.size()}});
  for (size_t i = 0; i < shapes_.size(); ++i) {
    shapes_[i]->thread = std::thread([this, i] { RunShape(i); });
  }

  auto timed_out = std::make_shared<bool>(false);
  common::TimerPtr timer = time_.CreateTimer([this, timed_out] {
    absl::MutexLock lock(&mu_);
    *timed_out = true;
  });
  timer->Enable(startup_timeout);
  absl::Status result;
  {
    absl::MutexLock lock(&mu_);
    auto settled = [this, &timed_out]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return up_to_date_once_ || !fatal_.ok() || stopping_ || *timed_out;
    };
    mu_.Await(absl::Condition(&settled));
    if (!up_to_date_once_) {
      if (!fatal_.ok()) {
        result = fatal_;
      } else if (stopping_) {
        result = absl::UnavailableError("electric sync: stopped while starting");
      } else {
        result = absl::UnavailableError(absl::StrCat(
            "electric sync: shapes at ", config_.url, " not up-to-date within ",
            absl::FormatDuration(startup_timeout), ": ",
            last_error_.ok() ? "no up-to-date message received"
                             : std::string(last_error_.message())));
      }
    }
  }
  timer->Disable();
  if (!result.ok()) {
    common::LogError("electric_sync_start_failed", {{"error", result}});
    Stop();
  }
  return result;
}

absl::Status ElectricSyncSource::Barrier(absl::Duration timeout) {
  {
    absl::MutexLock lock(&mu_);
    if (!started_ || stopping_) {
      return absl::FailedPreconditionError("electric sync source is not running");
    }
  }
  if (!current_lsn_) {
    return absl::FailedPreconditionError(
        "electric sync source has no current-LSN provider for read barriers");
  }
  absl::StatusOr<uint64_t> target;
  try {
    target = current_lsn_();
  } catch (const std::exception& e) {
    target = absl::UnavailableError(e.what());
  }
  if (!target.ok()) {
    return absl::UnavailableError(absl::StrCat(
        "read barrier: cannot read the database WAL position: ", target.status().message()));
  }
  {
    absl::MutexLock lock(&mu_);
    if (CaughtUpLocked(*target)) return absl::OkStatus();
  }

  auto timed_out = std::make_shared<bool>(false);
  common::TimerPtr timer = time_.CreateTimer([this, timed_out] {
    absl::MutexLock lock(&mu_);
    *timed_out = true;
  });
  timer->Enable(timeout);
  absl::Status result;
  {
    absl::MutexLock lock(&mu_);
    auto entry = barrier_targets_.insert(*target);
    WakeShapes();  // Behind shapes leave their long polls for a non-live request.
    const uint64_t want = *target;
    auto settled = [this, want, &timed_out]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return CaughtUpLocked(want) || stopping_ || *timed_out;
    };
    mu_.Await(absl::Condition(&settled));
    barrier_targets_.erase(entry);
    if (!CaughtUpLocked(want)) {
      uint64_t delivered = UINT64_MAX;
      for (const Progress& p : progress_) delivered = std::min(delivered, p.synced ? p.lsn : 0);
      result = absl::UnavailableError(absl::StrCat(
          "read barrier: electric has not delivered WAL position ", FormatLsn(want),
          stopping_ ? " (source stopping)" : absl::StrCat(" within ", absl::FormatDuration(timeout)),
          "; delivered up to ", FormatLsn(delivered),
          last_error_.ok() ? "" : absl::StrCat("; last error: ", last_error_.message())));
    }
  }
  timer->Disable();
  return result;
}

void ElectricSyncSource::Stop() {
  absl::MutexLock stop_lock(&stop_mu_);
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  WakeShapes();
  for (auto& shape : shapes_) {
    if (shape->thread.joinable()) shape->thread.join();
  }
}

void ElectricSyncSource::WakeShapes() {
  for (auto& shape : shapes_) shape->http->Wakeup();
}

bool ElectricSyncSource::BarrierWantedLocked(size_t index) const {
  return !barrier_targets_.empty() && *barrier_targets_.rbegin() > progress_[index].lsn;
}

bool ElectricSyncSource::CaughtUpLocked(uint64_t lsn) const {
  for (const Progress& p : progress_) {
    if (!p.synced || p.lsn < lsn) return false;
  }
  return true;
}

bool ElectricSyncSource::Pause(absl::Duration delay) {
  // A timer rather than TimeSource::SleepFor, so Stop() can cut it short.
  auto fired = std::make_shared<bool>(false);
  common::TimerPtr timer = time_.CreateTimer([this, fired] {
    absl::MutexLock lock(&mu_);
    *fired = true;
  });
  timer->Enable(delay);
  bool stopping;
  {
    absl::MutexLock lock(&mu_);
    auto done = [this, &fired]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return *fired || stopping_;
    };
    mu_.Await(absl::Condition(&done));
    stopping = stopping_;
  }
  timer->Disable();
  return !stopping;
}

uint64_t ElectricSyncSource::BeginReset(size_t index, uint64_t epoch) {
  absl::MutexLock lock(&mu_);
  if (epoch_ == epoch) {
    ++epoch_;
    for (Progress& p : progress_) p = Progress{};
    common::LogInfo("electric_must_refetch",
                    {{"shape", shapes_[index]->name}, {"epoch", epoch_}});
    WakeShapes();  // The other shapes drop their position too.
  }
  return epoch_;
}

void ElectricSyncSource::ReportFailure(size_t index, const absl::Status& status) {
  common::LogWarn("electric_request_failed",
                  {{"shape", shapes_[index]->name}, {"error", status}});
  {
    absl::MutexLock lock(&mu_);
    last_error_ = status;
    if (stopping_) return;
  }
  absl::MutexLock observer_lock(&observer_mu_);
  observer_->OnDisconnected(status);
}

absl::StatusOr<SyncBatch> ElectricSyncSource::ToBatch(const Shape& shape,
                                                      const ShapeResponse& response) const {
  SyncBatch batch;
  // A transaction whose last message here says `last: false` continues in
  // the next response; its txids are only complete there.
  std::set<int64_t> open;
  if (!response.changes.empty() && response.changes.back().last == false) {
    open.insert(response.changes.back().txids.begin(), response.changes.back().txids.end());
  }
  std::set<int64_t> seen;
  for (const ShapeChange& change : response.changes) {
    RowChange row;
    row.table = shape.table;
    row.op = change.op;
    const bool full_row = change.op != ChangeOp::kDelete;
    absl::Status status;
    if (shape.table == SyncTable::kRegistrations) {
      absl::StatusOr<Registration> r = RegistrationFromShapeValue(change.value, full_row);
      if (r.ok()) row.registration = std::move(*r);
      status = r.status();
    } else {
      absl::StatusOr<WakeRow> w = WakeRowFromShapeValue(change.value, full_row);
      if (w.ok()) row.wake = std::move(*w);
      status = w.status();
    }
    if (!status.ok()) {
      return absl::UnavailableError(absl::StrCat("malformed row from electric (shape ", shape.name,
                                                 ", key ", change.key, "): ", status.message()));
    }
    batch.changes.push_back(std::move(row));
    for (int64_t txid : change.txids) {
      if (open.count(txid) == 0 && seen.insert(txid).second) batch.txids.push_back(txid);
    }
  }
  return batch;
}

bool ElectricSyncSource::Deliver(size_t index, uint64_t epoch, SyncBatch batch,
                                 const ShapeResponse& response) {
  absl::MutexLock observer_lock(&observer_mu_);
  bool reset;
  {
    absl::MutexLock lock(&mu_);
    if (stopping_ || epoch_ != epoch) return false;
    reset = reset_delivered_epoch_ != epoch;
    reset_delivered_epoch_ = epoch;
  }
  if (reset) observer_->OnReset();
  if (!batch.changes.empty() || !batch.txids.empty()) observer_->OnBatch(std::move(batch));
  if (!response.up_to_date) return true;

  // Progress (what Barrier() waits for) moves only after OnUpToDate returned:
  // after a reset the observer swaps in the new snapshot at that call.
  bool others_synced = true;
  {
    absl::MutexLock lock(&mu_);
    if (epoch_ != epoch) return true;  // A reset began meanwhile; its snapshot follows.
    for (size_t i = 0; i < progress_.size(); ++i) {
      if (i != index && !progress_[i].synced) others_synced = false;
    }
  }
  if (others_synced) observer_->OnUpToDate();
  absl::MutexLock lock(&mu_);
  if (epoch_ != epoch) return true;
  Progress& progress = progress_[index];
  progress.synced = true;
  if (response.global_last_seen_lsn.has_value()) {
    progress.lsn = std::max(progress.lsn, *response.global_last_seen_lsn);
  }
  if (others_synced && !up_to_date_once_) {
    up_to_date_once_ = true;
    common::LogInfo("electric_sync_up_to_date", {{"url", config_.url}});
  }
  return true;
}

void ElectricSyncSource::RunShape(size_t index) {
  Shape& shape = *shapes_[index];
  common::Backoff backoff(config_.backoff_initial, config_.backoff_max);
  ShapePosition position;
  uint64_t epoch;
  {
    absl::MutexLock lock(&mu_);
    epoch = epoch_;
  }
  int refetches = 0;
  for (;;) {
    bool live;
    {
      absl::MutexLock lock(&mu_);
      if (stopping_ || !fatal_.ok()) return;
      if (epoch_ != epoch) {  // Another shape started a resync.
        epoch = epoch_;
        position = ShapePosition{};
      }
      live = progress_[index].synced && !BarrierWantedLocked(index);
    }
    auto should_abort = [this, index, epoch, live] {
      absl::MutexLock lock(&mu_);
      return stopping_ || epoch_ != epoch || (live && BarrierWantedLocked(index));
    };
    absl::StatusOr<ShapeResponse> response = shape.client->Fetch(position, live, should_abort);

    absl::Status failure = response.status();
    absl::StatusOr<SyncBatch> batch = SyncBatch{};
    if (failure.ok() && !response->must_refetch) {
      batch = ToBatch(shape, *response);
      failure = batch.status();
    }
    if (absl::IsCancelled(failure)) continue;  // Stop, reset or barrier: decide again.
    if (!failure.ok()) {
      if (absl::IsInvalidArgument(failure)) {
        absl::MutexLock lock(&mu_);
        if (!up_to_date_once_) {  // Still starting: a rejected shape ends Start().
          fatal_ = failure;
          last_error_ = failure;
          common::LogError("electric_shape_rejected", {{"shape", shape.name}, {"error", failure}});
          return;
        }
      }
      ReportFailure(index, failure);
      if (!Pause(backoff.Next())) return;
      continue;
    }

    if (response->must_refetch) {
      // Resync under the new handle; without one, bust caches of the old
      // shape's offset=-1 response as the spec suggests.
      ShapePosition fresh;
      fresh.handle = !response->handle.empty()
                         ? response->handle
                         : (position.handle.empty() ? "" : position.handle + "-next");
      position = fresh;
      epoch = BeginReset(index, epoch);
      if (++refetches > 1 && !Pause(backoff.Next())) return;  // Do not spin on refetches.
      continue;
    }

    if (!Deliver(index, epoch, std::move(*batch), *response)) continue;
    position.handle = response->handle;
    position.offset = response->offset;
    if (!response->cursor.empty()) position.cursor = response->cursor;
    backoff.Reset();
    refetches = 0;

    if (!live && response->up_to_date) {
      bool still_behind;
      {
        absl::MutexLock lock(&mu_);
        still_behind = BarrierWantedLocked(index);
      }
      // Electric has not reached the barrier's WAL position yet: ask again
      // shortly rather than hammering it.
      if (still_behind && !Pause(config_.barrier_poll_interval)) return;
    }
  }
}

}  // namespace wake::sync
