#include "registry-service/subscribe_reactor.h"

#include <utility>

#include "common/status_util.h"
#include "registry-service/conversions.h"

namespace wake::registry {

SubscribeReactor::SubscribeReactor(ChangeFeed& feed, sync::RegistrationCollection& collection,
                                   const v1::SubscribeChangesRequest& request)
    : feed_(feed), collection_(collection) {
  FeedFilter filter;
  filter.all_tenants = request.all_tenants();
  filter.tenant_id = request.tenant_id();
  for (int kind : request.kinds()) filter.kinds.insert(kind);
  const std::string& from = request.from_offset();
  {
    // Never hold mu_ while calling Watch: the feed calls Pump (which takes
    // mu_) with its watcher lock held.
    absl::MutexLock lock(&mu_);
    if (from.empty() || from == "-1") {
      // Head first, then the snapshot: anything in between is sent twice,
      // never missed (consumers apply events idempotently by id). The
      // snapshot is read a page at a time as the client takes it (Pump),
      // so no subscriber copies the collection.
      const uint64_t head = feed_.head();
      snapshot_.emplace();
      snapshot_->offset = feed_.Offset(head);
      snapshot_->tenant =
          filter.all_tenants ? std::nullopt : std::optional<std::string>(filter.tenant_id);
      snapshot_->registrations.done = !filter.Wants(v1::ChangeEvent::REGISTRATION);
      snapshot_->wakes_done = !filter.Wants(v1::ChangeEvent::WAKE);
      cursor_.emplace(feed_, std::move(filter), head, FeedCursor::Start::kUpToDate);
    } else if (from == "now") {
      const uint64_t head = feed_.head();
      queue_.push_back(ControlEvent(v1::UP_TO_DATE, feed_.Offset(head)));
      cursor_.emplace(feed_, std::move(filter), head, FeedCursor::Start::kUpToDate);
    } else {
      uint64_t after = 0;
      if (!feed_.ParseOffset(from, &after) || after > feed_.head()) {
        queue_.push_back(ControlEvent(v1::MUST_REFETCH, from));
        finish_when_drained_ = true;
      } else {
        cursor_.emplace(feed_, std::move(filter), after, FeedCursor::Start::kResumed);
      }
    }
  }
  watch_ = feed_.Watch([this] { Pump(); });
}

void SubscribeReactor::Start() { Pump(); }

void SubscribeReactor::OnWriteDone(bool ok) {
  {
    absl::MutexLock lock(&mu_);
    writing_ = false;
    if (!ok) {
      FinishLocked(grpc::Status::OK);
      return;
    }
  }
  Pump();
}

void SubscribeReactor::OnCancel() {
  absl::MutexLock lock(&mu_);
  FinishLocked(grpc::Status::CANCELLED);
}

void SubscribeReactor::OnDone() {
  feed_.Unwatch(watch_);
  delete this;
}

void SubscribeReactor::FinishLocked(const grpc::Status& status) {
  if (finished_) return;
  finished_ = true;
  Finish(status);
}

void SubscribeReactor::Pump() {
  absl::MutexLock lock(&mu_);
  if (writing_ || finished_) return;
  if (queue_.empty() && snapshot_.has_value()) RefillSnapshotLocked();
  if (queue_.empty()) {
    if (finish_when_drained_) {
      FinishLocked(grpc::Status::OK);
      return;
    }
    if (cursor_.has_value() && !cursor_->Refill(256, &queue_)) finish_when_drained_ = true;
  }
  if (queue_.empty()) return;  // Idle until the feed pokes us.
  current_ = std::move(queue_.front());
  queue_.pop_front();
  writing_ = true;
  StartWrite(&current_);
}

void SubscribeReactor::RefillSnapshotLocked() {
  constexpr size_t kPage = 256;
  SubscriberSnapshot& snapshot = *snapshot_;
  if (!snapshot.registrations.done) {
    for (const sync::Registration& row :
         collection_.SnapshotPage(snapshot.tenant, &snapshot.registrations, kPage)) {
      v1::ChangeEvent event;
      event.set_offset(snapshot.offset);
      event.mutable_registration()->set_op(v1::INSERT);
      ToProto(row, event.mutable_registration()->mutable_registration());
      queue_.push_back(std::move(event));
    }
    if (!queue_.empty()) return;
  }
  if (!snapshot.wakes_done) {
    for (const sync::WakeRow& wake :
         collection_.PendingWakesPage(snapshot.tenant, &snapshot.wakes_after, kPage)) {
      v1::ChangeEvent event;
      event.set_offset(snapshot.offset);
      v1::WakeAvailable* available = event.mutable_wake();
      available->set_tenant_id(wake.tenant_id);
      available->set_stream(wake.stream);
      available->set_wake_id(wake.id);
      available->set_registration_id(wake.registration_id);
      queue_.push_back(std::move(event));
    }
    if (!queue_.empty()) return;
    snapshot.wakes_done = true;
  }
  queue_.push_back(ControlEvent(v1::UP_TO_DATE, snapshot.offset));
  snapshot_.reset();
}

RejectReactor::RejectReactor(const absl::Status& status) { Finish(common::ToGrpcStatus(status)); }

void RejectReactor::OnDone() { delete this; }

}  // namespace wake::registry
