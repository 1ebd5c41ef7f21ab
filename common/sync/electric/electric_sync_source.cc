#include "common/sync/electric/electric_sync_source.h"

#include <algorithm>
#include <exception>
#include <random>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "common/backoff.h"
#include "common/logging.h"
#include "common/sync/electric/curl_http_client.h"
#include "common/sync/electric/electric_values.h"
#include "common/sync/postgres/pgoutput.h"

namespace wake::sync {
namespace {

constexpr char kRegistrationsTable[] = "wake_registrations";
constexpr char kWakesTable[] = "wakes";
constexpr int64_t kMaxXid32 = 0xFFFFFFFFll;

bool IsHttpUrl(absl::string_view url) {
  return absl::StartsWith(url, "http://") || absl::StartsWith(url, "https://");
}

// Electric refused the request itself; retrying it unchanged fails the same
// way until someone changes Electric's or this registry's configuration.
bool IsRejection(const absl::Status& status) {
  return absl::IsInvalidArgument(status) || absl::IsUnauthenticated(status) ||
         absl::IsPermissionDenied(status);
}

std::string RandomMarkerId() {
  std::random_device device;
  return absl::StrFormat("%08x%08x", device(), device());
}

// Which transaction a message belongs to: Electric gives every message of a
// transaction its commit LSN (lib/electric/log_items.ex); txids otherwise.
std::string TransactionId(const ShapeChange& change) {
  if (!change.lsn.empty()) return change.lsn;
  return absl::StrJoin(change.txids, ",");
}

}  // namespace

ElectricSyncSource::ElectricSyncSource(ElectricSyncConfig config, common::TimeSource& time,
                                       ElectricDatabase database, HttpClientFactory http_factory)
    : config_(std::move(config)), time_(time), database_(std::move(database)) {
  if (config_.marker_id.empty()) config_.marker_id = RandomMarkerId();
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

  auto add = [&](const char* table, SyncTable kind, const std::vector<std::string>& columns,
                 const std::string& shape_where, bool markers) {
    auto shape = std::make_unique<Shape>();
    shape->name = table;
    shape->table = kind;
    shape->markers = markers;
    shape->http = http_factory();
    shape->client = std::make_unique<ElectricShapeClient>(
        options, ShapeDefinition{table, columns, shape_where}, *shape->http);
    shapes_.push_back(std::move(shape));
  };
  add(kRegistrationsTable, SyncTable::kRegistrations, RegistrationShapeColumns(), where, false);
  if (config_.follow_wakes) add(kWakesTable, SyncTable::kWakes, WakeShapeColumns(), where, false);
  // Marker rows belong to no tenant: every replica follows the whole table.
  if (database_.write_marker) {
    add(kMarkersTable, SyncTable::kRegistrations, MarkerShapeColumns(), "", true);
  }

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
  if (database_.next_xid) {
    absl::StatusOr<int64_t> next = database_.next_xid();
    if (next.ok()) {
      NoteXidReference(*next);
    } else {
      common::LogWarn("electric_xid_reference_unavailable", {{"error", next.status()}});
    }
  }
  observer_ = &observer;
  common::LogInfo("electric_sync_starting",
                  {{"url", config_.url},
                   {"tenant", config_.tenant.empty() ? "*" : config_.tenant},
                   {"shapes", shapes_.size()},
                   {"marker_id", config_.marker_id}});
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
        result = absl::UnavailableError(
            absl::StrCat("electric sync: shapes at ", config_.url, " not up-to-date within ",
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

absl::StatusOr<int64_t> ElectricSyncSource::WriteMarkerLocked(const bool& timed_out) {
  const uint64_t need = marker_rounds_issued_ + 1;
  while (marker_rounds_done_ < need) {
    if (stopping_ || timed_out) return absl::AbortedError("marker write did not finish");
    if (marker_in_flight_) {
      auto moved = [this, need, &timed_out]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return marker_rounds_done_ >= need || !marker_in_flight_ || stopping_ || timed_out;
      };
      mu_.Await(absl::Condition(&moved));
      continue;
    }
    // Lead a round: it serves every caller that arrived before it was sent.
    marker_in_flight_ = true;
    const uint64_t round = ++marker_rounds_issued_;
    const int64_t seq = marker_written_seq_ + 1;
    ++stats_.marker_writes;
    mu_.Unlock();
    absl::Status written;
    try {
      written = database_.write_marker(config_.marker_id, seq);
    } catch (const std::exception& e) {
      written = absl::UnavailableError(e.what());
    }
    mu_.Lock();
    marker_in_flight_ = false;
    marker_rounds_done_ = round;
    marker_error_ = written;
    if (written.ok()) marker_written_seq_ = std::max(marker_written_seq_, seq);
  }
  if (!marker_error_.ok()) {
    return absl::UnavailableError(
        absl::StrCat("read barrier: cannot write the marker row: ", marker_error_.message()));
  }
  return marker_written_seq_;
}

absl::Status ElectricSyncSource::Barrier(absl::Duration timeout) {
  {
    absl::MutexLock lock(&mu_);
    if (!started_ || stopping_) {
      return absl::FailedPreconditionError("electric sync source is not running");
    }
  }
  if (!database_.write_marker) {
    return absl::FailedPreconditionError(
        "electric sync source has no marker writer for read barriers");
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
    auto describe = [&](absl::string_view what) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      std::string why;
      if (!stopped_.ok()) {
        why = absl::StrCat(" (electric sync stopped: ", stopped_.message(), ")");
      } else if (stopping_) {
        why = " (source stopping)";
      } else {
        why = absl::StrCat(" within ", absl::FormatDuration(timeout));
        if (!last_error_.ok()) absl::StrAppend(&why, "; last error: ", last_error_.message());
      }
      return absl::UnavailableError(absl::StrCat("read barrier: ", what, why));
    };
    // Counted where the caller joins a marker round, so a count seen by a
    // test means the caller already knows which write it needs.
    ++stats_.barrier_calls;
    absl::StatusOr<int64_t> seq = WriteMarkerLocked(*timed_out);
    if (!seq.ok()) {
      result = absl::IsAborted(seq.status()) ? describe(seq.status().message()) : seq.status();
    } else {
      const int64_t want = *seq;
      auto seen = [this, want, &timed_out]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return marker_seen_seq_ >= want || stopping_ || !stopped_.ok() || *timed_out;
      };
      mu_.Await(absl::Condition(&seen));
      if (marker_seen_seq_ < want) {
        result = describe(absl::StrCat("marker ", config_.marker_id, "/", want,
                                       " did not come back through electric"));
      } else {
        const uint64_t target = marker_lsn_;
        auto entry = barrier_targets_.insert(target);
        WakeShapes();  // Behind shapes leave their long polls for a non-live request.
        auto settled = [this, target, &timed_out]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
          return CaughtUpLocked(target) || stopping_ || !stopped_.ok() || *timed_out;
        };
        mu_.Await(absl::Condition(&settled));
        barrier_targets_.erase(entry);
        if (!CaughtUpLocked(target)) {
          uint64_t delivered = UINT64_MAX;
          for (size_t i = 0; i < progress_.size(); ++i) {
            if (shapes_[i]->markers) continue;
            delivered = std::min(delivered, progress_[i].synced ? progress_[i].lsn : 0);
          }
          result = describe(absl::StrCat("electric has not delivered position ", FormatLsn(target),
                                         " (the marker's) to every shape", "; delivered up to ",
                                         FormatLsn(delivered)));
        }
      }
    }
  }
  timer->Disable();
  return result;
}

ElectricSyncSource::Stats ElectricSyncSource::stats() {
  absl::MutexLock lock(&mu_);
  return stats_;
}

void ElectricSyncSource::Stop() {
  absl::MutexLock stop_lock(&stop_mu_);
  bool was_running;
  {
    absl::MutexLock lock(&mu_);
    was_running = started_ && !stopping_;
    stopping_ = true;
  }
  WakeShapes();
  for (auto& shape : shapes_) {
    if (shape->thread.joinable()) shape->thread.join();
  }
  if (was_running) {
    const Stats stats = this->stats();
    common::LogInfo("electric_sync_stats", {{"barrier_calls", stats.barrier_calls},
                                            {"marker_writes", stats.marker_writes}});
  }
}

void ElectricSyncSource::WakeShapes() {
  for (auto& shape : shapes_) shape->http->Wakeup();
}

bool ElectricSyncSource::BarrierWantedLocked(size_t index) const {
  return !shapes_[index]->markers && !barrier_targets_.empty() &&
         *barrier_targets_.rbegin() > progress_[index].lsn;
}

bool ElectricSyncSource::CaughtUpLocked(uint64_t lsn) const {
  for (size_t i = 0; i < progress_.size(); ++i) {
    if (shapes_[i]->markers) continue;
    if (!progress_[i].synced || progress_[i].lsn < lsn) return false;
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
    auto done = [this, &fired]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return *fired || stopping_; };
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
    common::LogInfo("electric_must_refetch", {{"shape", shapes_[index]->name}, {"epoch", epoch_}});
    WakeShapes();  // The other shapes drop their position too.
  }
  return epoch_;
}

void ElectricSyncSource::ReportFailure(size_t index, const absl::Status& status) {
  if (IsRejection(status)) {
    common::LogError("electric_shape_rejected",
                     {{"shape", shapes_[index]->name}, {"error", status}});
  } else {
    common::LogWarn("electric_request_failed",
                    {{"shape", shapes_[index]->name}, {"error", status}});
  }
  {
    absl::MutexLock lock(&mu_);
    last_error_ = status;
    if (stopping_) return;
  }
  absl::MutexLock observer_lock(&observer_mu_);
  observer_->OnDisconnected(status);
}

void ElectricSyncSource::StopWithError(size_t index, const absl::Status& status) {
  {
    absl::MutexLock lock(&mu_);
    if (stopping_ || !stopped_.ok()) return;
    last_error_ = status;
    if (!up_to_date_once_) {
      fatal_ = status;  // Start() returns it.
    } else {
      stopped_ = status;
    }
  }
  WakeShapes();  // The other shapes stop too.
  common::LogError("electric_sync_stopped", {{"shape", shapes_[index]->name}, {"error", status}});
  absl::MutexLock observer_lock(&observer_mu_);
  observer_->OnDisconnected(status);
}

void ElectricSyncSource::NoteXidReference(int64_t xid8) {
  absl::MutexLock lock(&xid_mu_);
  xid_reference_ = std::max(xid_reference_, xid8);
}

int64_t ElectricSyncSource::WidenXid(int64_t xid) {
  // Already an xid8 (a server that sends them): nothing to widen.
  if (xid > kMaxXid32) return xid;
  absl::MutexLock lock(&xid_mu_);
  const int64_t full = pgoutput::ExtendXid(static_cast<uint32_t>(xid), xid_reference_);
  xid_reference_ = std::max(xid_reference_, full);
  return full;
}

absl::Status ElectricSyncSource::Decode(const Shape& shape, const ShapeChange& change,
                                        Assembled* out) {
  const bool full_row = change.op != ChangeOp::kDelete;
  absl::Status status;
  if (shape.markers) {
    absl::StatusOr<MarkerRow> marker = MarkerRowFromShapeValue(change.value, full_row);
    if (marker.ok() && marker->replica_id == config_.marker_id && change.op != ChangeOp::kDelete) {
      out->marker_seq = std::max(out->marker_seq, marker->seq);
    }
    status = marker.status();
  } else {
    RowChange row;
    row.table = shape.table;
    row.op = change.op;
    if (shape.table == SyncTable::kRegistrations) {
      absl::StatusOr<Registration> r = RegistrationFromShapeValue(change.value, full_row);
      if (r.ok()) row.registration = std::move(*r);
      status = r.status();
    } else {
      absl::StatusOr<WakeRow> w = WakeRowFromShapeValue(change.value, full_row);
      if (w.ok()) row.wake = std::move(*w);
      status = w.status();
    }
    if (status.ok()) out->batch.changes.push_back(std::move(row));
  }
  if (status.ok()) return status;
  const std::string column = ShapeValueErrorColumn(status);
  absl::Status stopped = absl::DataLossError(absl::StrCat(
      "electric sync stopped: a row of ", shape.name, " cannot be decoded (key ", change.key,
      ", column ", column.empty() ? "?" : column, "): ", status.message()));
  return stopped;
}

absl::StatusOr<ElectricSyncSource::Assembled> ElectricSyncSource::Assemble(
    const Shape& shape, const ShapeResponse& response, OpenTransaction* open) {
  if (response.snapshot_xmin.has_value()) NoteXidReference(*response.snapshot_xmin);
  Assembled out;
  std::vector<int64_t> seen;
  auto close = [&]() -> absl::Status {
    for (const ShapeChange& change : open->changes) {
      if (absl::Status s = Decode(shape, change, &out); !s.ok()) return s;
      for (int64_t txid : change.txids) {
        const int64_t full = WidenXid(txid);
        if (std::find(seen.begin(), seen.end(), full) == seen.end()) {
          seen.push_back(full);
          out.batch.txids.push_back(full);
        }
      }
    }
    *open = OpenTransaction{};
    return absl::OkStatus();
  };
  for (const ShapeChange& change : response.changes) {
    const std::string id = TransactionId(change);
    if (id.empty()) {
      // A snapshot row: no transaction to wait for.
      if (!open->changes.empty()) {
        if (absl::Status s = close(); !s.ok()) return s;
      }
      if (absl::Status s = Decode(shape, change, &out); !s.ok()) return s;
      continue;
    }
    // A message of another transaction: the open one ended (the log is in
    // commit order and a transaction's messages are contiguous).
    if (!open->changes.empty() && open->id != id) {
      if (absl::Status s = close(); !s.ok()) return s;
    }
    open->id = id;
    open->changes.push_back(change);
    // Electric marks a transaction's last message in the shape with
    // `last: true` (lib/electric/shapes/consumer.ex maybe_mark_last_change).
    if (change.last) {
      if (absl::Status s = close(); !s.ok()) return s;
    }
  }
  // An up-to-date is only sent at a transaction boundary.
  if (response.up_to_date && !open->changes.empty()) {
    if (absl::Status s = close(); !s.ok()) return s;
  }
  return out;
}

bool ElectricSyncSource::Deliver(size_t index, uint64_t epoch, Assembled assembled,
                                 const ShapeResponse& response) {
  const bool markers = shapes_[index]->markers;
  absl::MutexLock observer_lock(&observer_mu_);
  bool reset;
  {
    absl::MutexLock lock(&mu_);
    if (stopping_ || !stopped_.ok() || epoch_ != epoch) return false;
    reset = reset_delivered_epoch_ != epoch;
    reset_delivered_epoch_ = epoch;
    if (markers) {
      progress_[index].marker_seq = std::max(progress_[index].marker_seq, assembled.marker_seq);
    }
  }
  if (reset) observer_->OnReset();
  SyncBatch& batch = assembled.batch;
  if (!markers && (!batch.changes.empty() || !batch.txids.empty())) {
    observer_->OnBatch(std::move(batch));
  }
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
  if (markers && progress.marker_seq > marker_seen_seq_) {
    // Electric has processed the marker's transaction: every transaction
    // committed before the marker was written is at or below this position.
    marker_seen_seq_ = progress.marker_seq;
    marker_lsn_ = std::max(marker_lsn_, progress.lsn);
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
  OpenTransaction open;
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
      if (stopping_ || !fatal_.ok() || !stopped_.ok()) return;
      if (epoch_ != epoch) {  // Another shape started a resync.
        epoch = epoch_;
        position = ShapePosition{};
        open = OpenTransaction{};
      }
      live = progress_[index].synced && !BarrierWantedLocked(index);
    }
    auto should_abort = [this, index, epoch, live] {
      absl::MutexLock lock(&mu_);
      return stopping_ || !stopped_.ok() || epoch_ != epoch || (live && BarrierWantedLocked(index));
    };
    absl::StatusOr<ShapeResponse> response = shape.client->Fetch(position, live, should_abort);

    absl::Status failure = response.status();
    OpenTransaction next_open = open;
    absl::StatusOr<Assembled> assembled = Assembled{};
    if (failure.ok() && !response->must_refetch) {
      assembled = Assemble(shape, *response, &next_open);
      failure = assembled.status();
    }
    if (absl::IsCancelled(failure)) continue;  // Stop, reset or barrier: decide again.
    if (absl::IsDataLoss(failure)) {
      StopWithError(index, failure);
      return;
    }
    if (!failure.ok()) {
      if (IsRejection(failure)) {
        absl::MutexLock lock(&mu_);
        if (!up_to_date_once_) {  // Still starting: a rejected shape ends Start().
          fatal_ = failure;
          last_error_ = failure;
          common::LogError("electric_shape_rejected", {{"shape", shape.name}, {"error", failure}});
          return;
        }
      }
      ReportFailure(index, failure);
      absl::Duration delay = backoff.Next();
      // A rejection only goes away when someone changes a configuration.
      if (IsRejection(failure)) delay = std::max(delay, config_.backoff_max);
      if (std::optional<absl::Duration> retry_after = RetryAfter(failure)) {
        delay = std::max(delay, *retry_after);
      }
      if (!Pause(delay)) return;
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
      open = OpenTransaction{};
      epoch = BeginReset(index, epoch);
      if (++refetches > 1 && !Pause(backoff.Next())) return;  // Do not spin on refetches.
      continue;
    }

    if (!Deliver(index, epoch, std::move(*assembled), *response)) continue;
    open = std::move(next_open);
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
      // Electric has not reported the marker's position for this shape yet:
      // ask again shortly rather than hammering it.
      if (still_behind && !Pause(config_.barrier_poll_interval)) return;
    }
  }
}

}  // namespace wake::sync
