#include "runtime-service/rescanner_impl.h"

#include <memory>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "common/status_util.h"

namespace wake::runtime {
namespace {

// Splits a registry offset "<epoch>_<seq>"; false for anything else ("-1",
// offsets of other registries).
bool ParseOffset(const std::string& offset, std::string* epoch, uint64_t* seq) {
  const size_t at = offset.rfind('_');
  if (at == std::string::npos || at == 0) return false;
  *epoch = offset.substr(0, at);
  return absl::SimpleAtoi(absl::string_view(offset).substr(at + 1), seq);
}

}  // namespace

RescannerImpl::RescannerImpl(v1::WakeRegistry::StubInterface& registry, RegistryFollower& follower,
                             WakeAccounting& accounting, TriggerSink& triggers,
                             common::TimeSource& time, common::Executor& executor,
                             RescanOptions options)
    : registry_(registry),
      follower_(follower),
      accounting_(accounting),
      triggers_(triggers),
      time_(time),
      executor_(executor),
      options_(std::move(options)),
      timer_(time.CreateTimer([this] { OnTimer(); })) {}

RescannerImpl::~RescannerImpl() {
  Stop();
  absl::MutexLock lock(&mu_);
  auto idle = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return !reading_; };
  mu_.Await(absl::Condition(&idle));
}

void RescannerImpl::Start() {
  absl::MutexLock lock(&mu_);
  if (started_ || stopping_ || options_.interval <= absl::ZeroDuration()) return;
  started_ = true;
  timer_->Enable(options_.interval);
}

void RescannerImpl::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    if (context_ != nullptr) context_->TryCancel();
  }
  // Not under mu_: Disable waits for a running callback, which takes mu_.
  timer_->Disable();
}

RescanStatus RescannerImpl::Status() {
  absl::MutexLock lock(&mu_);
  return status_;
}

void RescannerImpl::OnTimer() {
  Stage stage;
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) return;
    stage = stage_;
    if (stage == Stage::kIdle) {
      stage_ = Stage::kReading;
      reading_ = true;
    }
  }
  switch (stage) {
    case Stage::kIdle:
      // A blocking stream read: not on the timer's thread.
      executor_.Post([this] { Read(); });
      break;
    case Stage::kCatchingUp:
      CatchUp();
      break;
    case Stage::kSettling:
      Recheck();
      break;
    case Stage::kReading:
      break;
  }
}

void RescannerImpl::Read() {
  // The destructor waits until this has returned.
  struct Done {
    RescannerImpl* self;
    ~Done() {
      absl::MutexLock lock(&self->mu_);
      self->reading_ = false;
    }
  } done{this};

  auto context = std::make_unique<grpc::ClientContext>();
  context->set_deadline(absl::ToChronoTime(time_.SystemNow() + options_.read_timeout));
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) return;
    context_ = context.get();
  }
  const common::MonotonicTime started = time_.MonotonicNow();
  v1::SubscribeChangesRequest request;
  request.set_all_tenants(true);
  request.set_from_offset("-1");
  request.add_kinds(v1::ChangeEvent::WAKE);
  request.add_kinds(v1::ChangeEvent::CONTROL);
  std::unique_ptr<grpc::ClientReaderInterface<v1::ChangeEvent>> reader =
      registry_.SubscribeChanges(context.get(), request);

  std::vector<PendingStream> pending;
  absl::flat_hash_map<std::pair<std::string, std::string>, size_t> index;
  std::string offset;
  std::string error;
  bool complete = false;
  v1::ChangeEvent event;
  while (reader->Read(&event)) {
    if (event.has_wake()) {
      const v1::WakeAvailable& wake = event.wake();
      std::pair<std::string, std::string> key(
          wake.tenant_id().empty() ? "default" : wake.tenant_id(), wake.stream());
      auto [it, added] = index.try_emplace(key, pending.size());
      if (added) pending.push_back(PendingStream{key.first, key.second, {}});
      if (wake.wake_id() != 0) pending[it->second].wake_ids.push_back(wake.wake_id());
    } else if (event.has_control() && event.control() == v1::UP_TO_DATE) {
      offset = event.offset();
      complete = true;
      break;
    } else if (event.has_control() && event.control() == v1::MUST_REFETCH) {
      error = "the snapshot was answered with MUST_REFETCH";
      break;
    }
  }
  context->TryCancel();  // Only the snapshot is wanted, not the live stream.
  const grpc::Status status = reader->Finish();
  if (!complete && error.empty()) {
    error = status.ok() ? "the change stream ended before UP_TO_DATE"
                        : common::FromGrpcStatus(status).ToString();
  }
  {
    absl::MutexLock lock(&mu_);
    context_ = nullptr;
    if (stopping_) return;
    if (!complete) {
      status_.last_error = absl::StrCat("rescan: ", error);
      common::LogWarn("rescan_failed", {{"error", error}});
      FinishLocked(/*completed=*/false);
      return;
    }
    snapshot_ = std::move(pending);
    snapshot_offset_ = offset;
    snapshot_started_ = started;
    snapshot_read_ = time_.MonotonicNow();
    follower_offset_seen_.clear();
    follower_still_since_ = snapshot_read_;
    stage_ = Stage::kCatchingUp;
  }
  CatchUp();
}

void RescannerImpl::CatchUp() {
  const FollowerStatus follower = follower_.Status();
  const std::string& follower_offset = follower.offset;
  {
    absl::MutexLock lock(&mu_);
    if (stopping_ || stage_ != Stage::kCatchingUp) return;
    const common::MonotonicTime now = time_.MonotonicNow();
    const absl::Duration waited = common::ToAbsl(now - snapshot_read_);
    if (follower_offset != follower_offset_seen_) {
      follower_offset_seen_ = follower_offset;
      follower_still_since_ = now;
    }
    std::string snapshot_epoch;
    std::string follower_epoch;
    uint64_t snapshot_seq = 0;
    uint64_t follower_seq = 0;
    if (ParseOffset(snapshot_offset_, &snapshot_epoch, &snapshot_seq) &&
        ParseOffset(follower_offset, &follower_epoch, &follower_seq) &&
        snapshot_epoch == follower_epoch) {
      // A follower of wakes only is told UP_TO_DATE once per 1024 entries it
      // does not want (registration changes): in a quiet registry its offset
      // can stay behind the snapshot's for good. Live, and given nothing for
      // the settle time, it has every wake announced before the snapshot.
      const bool idle =
          follower.up_to_date && common::ToAbsl(now - follower_still_since_) >= options_.settle;
      if (follower_seq < snapshot_seq && !idle) {
        if (waited >= options_.catch_up_timeout) {
          status_.last_error =
              absl::StrCat("rescan skipped: the change stream (at ", follower_offset,
                           ") did not reach the snapshot (at ", snapshot_offset_, ") within ",
                           absl::FormatDuration(options_.catch_up_timeout));
          common::LogWarn("rescan_skipped", {{"follower_offset", follower_offset},
                                             {"snapshot_offset", snapshot_offset_}});
          FinishLocked(/*completed=*/false);
        } else {
          timer_->Enable(options_.catch_up_poll);
        }
        return;
      }
    } else if (waited < options_.settle) {
      // Offsets of different registry processes cannot be compared.
      timer_->Enable(options_.settle - waited);
      return;
    }
  }
  Compare();
}

void RescannerImpl::Compare() {
  std::vector<PendingStream> snapshot;
  common::MonotonicTime started;
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) return;
    snapshot = std::move(snapshot_);
    snapshot_.clear();
    started = snapshot_started_;
  }
  std::vector<PendingStream> unaccounted = accounting_.Unaccounted(snapshot);
  const int forgotten = accounting_.ForgetParkedWithoutPending(snapshot, started);
  if (forgotten > 0) {
    common::LogInfo("rescan_forgot_parked_streams", {{"streams", forgotten}});
  }
  absl::MutexLock lock(&mu_);
  if (stopping_) return;
  if (unaccounted.empty()) {
    FinishLocked(/*completed=*/true);
    return;
  }
  candidates_ = std::move(unaccounted);
  stage_ = Stage::kSettling;
  timer_->Enable(options_.settle);
}

void RescannerImpl::Recheck() {
  std::vector<PendingStream> candidates;
  {
    absl::MutexLock lock(&mu_);
    if (stopping_ || stage_ != Stage::kSettling) return;
    candidates = std::move(candidates_);
    candidates_.clear();
  }
  const std::vector<PendingStream> found = accounting_.Unaccounted(candidates);
  for (const PendingStream& stream : found) {
    common::LogWarn("rescan_found_unannounced_wakes", {{"tenant_id", stream.tenant_id},
                                                       {"stream", stream.stream},
                                                       {"wakes", stream.wake_ids.size()},
                                                       {"first_wake_id", stream.wake_ids.front()}});
    for (const int64_t id : stream.wake_ids) triggers_.Trigger(stream.tenant_id, stream.stream, id);
  }
  absl::MutexLock lock(&mu_);
  status_.found += static_cast<int64_t>(found.size());
  FinishLocked(/*completed=*/true);
}

void RescannerImpl::FinishLocked(bool completed) {
  if (completed) ++status_.rescans;
  snapshot_.clear();
  candidates_.clear();
  stage_ = Stage::kIdle;
  if (!stopping_) timer_->Enable(options_.interval);
}

}  // namespace wake::runtime
