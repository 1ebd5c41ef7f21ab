// The registry's change log for SubscribeChanges: every registration change
// and wake-available event of the synced collection, numbered in commit order
// and kept in a bounded ring. Subscribers read from it by sequence number, so
// a slow subscriber costs nothing but its cursor; one that falls out of the
// ring is told to refetch.
//
// Offsets are "<epoch>_<seq>": the epoch is random per process, so an offset
// from another replica or an earlier run is recognised and answered with
// MUST_REFETCH instead of being misread.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "common/sync/registration_collection.h"
#include "wake/v1/registry.pb.h"

namespace wake::registry {

struct FeedEntry {
  uint64_t seq = 0;
  std::string tenant_id;
  v1::ChangeEvent event;  // Offset filled in.
};

class ChangeFeed {
 public:
  // Follows `collection` until destroyed; keeps the last `capacity` entries.
  ChangeFeed(sync::RegistrationCollection& collection, size_t capacity = 1 << 16,
             std::string epoch = "");
  ~ChangeFeed();

  const std::string& epoch() const { return epoch_; }
  // Sequence number of the newest entry (0 when none yet).
  uint64_t head();
  std::string Offset(uint64_t seq) const;
  // Parses an offset of this feed into its sequence number. False when it is
  // malformed or from another epoch.
  bool ParseOffset(const std::string& offset, uint64_t* seq) const;

  enum class ReadStatus { kOk, kGone };
  // Appends up to `max` entries with seq > after to `out`. kGone when entries
  // after `after` have already left the ring.
  ReadStatus Read(uint64_t after, size_t max, std::vector<std::shared_ptr<const FeedEntry>>* out);

  // Called (from the sync thread) after entries are appended. The callback
  // must not call Watch/Unwatch.
  int Watch(std::function<void()> callback);
  // After it returns, the callback is not running and will not run.
  void Unwatch(int handle);

  // For tests: appends an event directly.
  void AppendForTest(const sync::CollectionEvent& event) { OnCollectionEvent(event); }

 private:
  void OnCollectionEvent(const sync::CollectionEvent& event);

  sync::RegistrationCollection& collection_;
  const size_t capacity_;
  const std::string epoch_;
  int listener_ = 0;

  absl::Mutex mu_;
  std::deque<std::shared_ptr<const FeedEntry>> ring_ ABSL_GUARDED_BY(mu_);
  uint64_t head_ ABSL_GUARDED_BY(mu_) = 0;

  absl::Mutex watchers_mu_;
  std::map<int, std::function<void()>> watchers_ ABSL_GUARDED_BY(watchers_mu_);
  int next_watcher_ ABSL_GUARDED_BY(watchers_mu_) = 1;
};

// What one subscriber wants from the feed.
struct FeedFilter {
  bool all_tenants = false;
  std::string tenant_id;  // Used when !all_tenants.
  std::set<int> kinds;    // v1::ChangeEvent::Kind values; empty = every kind.

  bool Wants(int kind) const { return kinds.empty() || kinds.count(kind) > 0; }
};

// One subscriber's position in a ChangeFeed: reads the entries after it,
// keeps those that pass its filter, and says when the subscriber has caught
// up. Not thread-safe: its owner serialises the calls.
//
// UP_TO_DATE follows every catch-up that delivered at least one event, and
// the first catch-up of a resumed subscription. While only entries the filter
// drops arrive (registrations for a subscriber of wakes, another tenant's
// changes) it is sent once per `quiet_up_to_date` dropped entries instead of
// after each batch: enough to keep the subscriber's resume offset inside the
// ring, without a message per write to a subscriber that wants none of them.
class FeedCursor {
 public:
  static constexpr uint64_t kQuietUpToDate = 1024;

  // Where the subscriber stands at `after`.
  enum class Start {
    // It was just told UP_TO_DATE there (after a snapshot, or for "now").
    kUpToDate,
    // It resumes from an offset it was sent earlier: UP_TO_DATE follows its
    // first catch-up, whether or not anything new arrived.
    kResumed,
  };

  FeedCursor(ChangeFeed& feed, FeedFilter filter, uint64_t after, Start start,
             uint64_t quiet_up_to_date = kQuietUpToDate);

  uint64_t position() const { return after_; }

  // Appends the wanted events after the cursor (at most about `max` entries
  // are read), then UP_TO_DATE when the rules above call for it. Returns
  // false when the cursor fell out of the ring; MUST_REFETCH is then appended
  // and the subscription is over.
  bool Refill(size_t max, std::deque<v1::ChangeEvent>* out);

 private:
  ChangeFeed& feed_;
  const FeedFilter filter_;
  const uint64_t quiet_up_to_date_;
  uint64_t after_;
  bool owed_ = false;     // Events sent (or a resume) since the last UP_TO_DATE.
  uint64_t dropped_ = 0;  // Entries filtered out since the last UP_TO_DATE.
};

// A control event (UP_TO_DATE, MUST_REFETCH) at `offset`.
v1::ChangeEvent ControlEvent(v1::ControlKind kind, const std::string& offset);

// The ChangeEvent for a collection event (nullopt for kinds the feed skips).
std::optional<v1::ChangeEvent> ToChangeEvent(const sync::CollectionEvent& event);

}  // namespace wake::registry
