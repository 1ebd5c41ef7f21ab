// Group commit: concurrent callers of Submit() share one database round trip
// and one transaction (one WAL flush, one replicated transaction) instead of
// paying for one each.
//
// A caller that arrives while fewer than `max_in_flight` batches run leads
// the next batch: it takes every queued item (its own included, up to
// `max_batch`), runs them with one call of `run`, and hands every caller its
// result. Callers arriving meanwhile queue up and are taken by the next
// leader, so batches grow with concurrency; a lone caller runs at once, alone.
#pragma once

#include <cstddef>
#include <deque>
#include <functional>
#include <optional>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"

namespace wake::registry {

template <typename Item, typename Result>
class GroupCommit {
 public:
  // Runs one batch; returns one result per item, in the items' order.
  using Run = std::function<std::vector<absl::StatusOr<Result>>(const std::vector<const Item*>&)>;

  GroupCommit(int max_in_flight, size_t max_batch, Run run)
      : max_in_flight_(max_in_flight < 1 ? 1 : max_in_flight),
        max_batch_(max_batch < 1 ? 1 : max_batch),
        run_(std::move(run)) {}

  GroupCommit(const GroupCommit&) = delete;
  GroupCommit& operator=(const GroupCommit&) = delete;

  // Blocks until `item` ran (in this thread's batch or another's).
  absl::StatusOr<Result> Submit(const Item& item) {
    Slot slot;
    slot.item = &item;
    absl::MutexLock lock(&mu_);
    queue_.push_back(&slot);
    for (;;) {
      auto ready = [this, &slot]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return slot.result.has_value() || (!slot.taken && in_flight_ < max_in_flight_);
      };
      mu_.Await(absl::Condition(&ready));
      if (slot.result.has_value()) break;
      LeadLocked();
    }
    return std::move(*slot.result);
  }

  // Items waiting for a leader (for tests).
  size_t queued() {
    absl::MutexLock lock(&mu_);
    return queue_.size();
  }

  // Batches run so far and items they held (for tests and benchmarks).
  std::pair<size_t, size_t> Stats() {
    absl::MutexLock lock(&mu_);
    return {batches_, items_};
  }

 private:
  struct Slot {
    const Item* item = nullptr;
    bool taken = false;
    std::optional<absl::StatusOr<Result>> result;
  };

  void LeadLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    std::vector<Slot*> batch;
    std::vector<const Item*> items;
    while (!queue_.empty() && batch.size() < max_batch_) {
      Slot* next = queue_.front();
      queue_.pop_front();
      next->taken = true;
      batch.push_back(next);
      items.push_back(next->item);
    }
    ++in_flight_;
    ++batches_;
    items_ += batch.size();
    mu_.Unlock();
    std::vector<absl::StatusOr<Result>> results = run_(items);
    mu_.Lock();
    --in_flight_;
    for (size_t i = 0; i < batch.size(); ++i) {
      if (results.size() == batch.size()) {
        batch[i]->result = std::move(results[i]);
      } else {
        batch[i]->result = absl::InternalError("group commit: batch returned a wrong count");
      }
    }
  }

  const int max_in_flight_;
  const size_t max_batch_;
  const Run run_;

  absl::Mutex mu_;
  std::deque<Slot*> queue_ ABSL_GUARDED_BY(mu_);
  int in_flight_ ABSL_GUARDED_BY(mu_) = 0;
  size_t batches_ ABSL_GUARDED_BY(mu_) = 0;
  size_t items_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace wake::registry
