// The server side of one SubscribeChanges stream: SubscribeReactor sends a
// subscriber its snapshot (when it starts from "-1"), then the change feed from
// its cursor; RejectReactor ends a stream that was refused before it began.
// The gRPC adapter (registry_service.cc) checks the caller and creates them.
#pragma once

#include <cstdint>
#include <deque>
#include <optional>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "common/sync/registration_collection.h"
#include "registry-service/change_feed.h"
#include "wake/v1/registry.grpc.pb.h"

namespace wake::registry {

// Where a subscriber's snapshot has got to. At namespace scope: clang cannot
// use the member initializers of a class nested in SubscribeReactor for the
// std::optional member inside SubscribeReactor's own definition.
struct SubscriberSnapshot {
  std::string offset;
  std::optional<std::string> tenant;
  sync::RegistrationCollection::SnapshotCursor registrations;
  int64_t wakes_after = 0;
  bool wakes_done = false;
};

// Streams one subscriber: snapshot (for "-1"), then the feed from its cursor,
// with UP_TO_DATE as FeedCursor decides. Writes one event at a time; the
// feed pokes it when new entries arrive. Deletes itself when gRPC is done.
class SubscribeReactor final : public grpc::ServerWriteReactor<v1::ChangeEvent> {
 public:
  // `request` is validated, and its tenants are ones the caller may read.
  // `feed` and `collection` must outlive the stream.
  SubscribeReactor(ChangeFeed& feed, sync::RegistrationCollection& collection,
                   const v1::SubscribeChangesRequest& request);

  // Starts writing; call once, right after construction.
  void Start();

  void OnWriteDone(bool ok) override;
  void OnCancel() override;
  void OnDone() override;

 private:
  void FinishLocked(const grpc::Status& status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Pump();
  // The next page of the snapshot; after its last page, UP_TO_DATE, and the
  // snapshot is over (the feed cursor takes over).
  void RefillSnapshotLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  ChangeFeed& feed_;
  sync::RegistrationCollection& collection_;
  int watch_ = 0;

  absl::Mutex mu_;
  std::deque<v1::ChangeEvent> queue_ ABSL_GUARDED_BY(mu_);
  v1::ChangeEvent current_ ABSL_GUARDED_BY(mu_);
  std::optional<FeedCursor> cursor_ ABSL_GUARDED_BY(mu_);            // Unset after a bad offset.
  std::optional<SubscriberSnapshot> snapshot_ ABSL_GUARDED_BY(mu_);  // While the snapshot is sent.
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  bool finish_when_drained_ ABSL_GUARDED_BY(mu_) = false;
};

// A stream refused before it began: finishes at once with `status`, and
// deletes itself when gRPC is done.
class RejectReactor final : public grpc::ServerWriteReactor<v1::ChangeEvent> {
 public:
  explicit RejectReactor(const absl::Status& status);
  void OnDone() override;
};

}  // namespace wake::registry
