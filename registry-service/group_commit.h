// Group commit: concurrent callers of Submit() share one database round trip
// and one transaction (one WAL flush, one replicated transaction) instead of
// paying for one each.
//
// A caller that arrives while fewer than `max_in_flight` batches run leads
// the next batch: it takes every queued item (its own included, up to
// `max_batch`), runs them with one call of `run`, and hands every caller its
// result. Callers arriving meanwhile queue up and are taken by the next
// leader, so batches grow with concurrency; a lone caller runs at once, alone.
//
// SubmitAsync() parks no thread: its item waits in the same queue, and when
// no blocked caller can lead, one task on the executor leads batches until
// the queue is empty. The callbacks of one batch run together in one task
// on the executor, while the next batch starts.
#pragma once

#include <cstddef>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "common/executor.h"

namespace wake::registry {

template <typename Item, typename Result>
class GroupCommit {
 public:
  // Runs one batch; returns one result per item, in the items' order.
  using Run = std::function<std::vector<absl::StatusOr<Result>>(const std::vector<const Item*>&)>;

  using Done = std::function<void(absl::StatusOr<Result>)>;

  // `executor` runs the batches of SubmitAsync() callers (only they need it).
  GroupCommit(int max_in_flight, size_t max_batch, Run run, common::Executor* executor = nullptr)
      : max_in_flight_(max_in_flight < 1 ? 1 : max_in_flight),
        max_batch_(max_batch < 1 ? 1 : max_batch),
        run_(std::move(run)),
        executor_(executor) {}

  // Waits for the lead tasks still running (their batches finish first).
  ~GroupCommit() {
    absl::MutexLock lock(&mu_);
    auto idle = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return leaders_posted_ == 0; };
    mu_.Await(absl::Condition(&idle));
  }

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
    MaybePostLeaderLocked();  // Async items left behind need a leader.
    return std::move(*slot.result);
  }

  // Submit for several items at once, so they can share a batch (they are
  // queued together, in order); blocks until every one ran. One result per
  // item, in order.
  std::vector<absl::StatusOr<Result>> SubmitMany(const std::vector<Item>& items) {
    std::vector<Slot> slots(items.size());
    absl::MutexLock lock(&mu_);
    for (size_t i = 0; i < items.size(); ++i) {
      slots[i].item = &items[i];
      queue_.push_back(&slots[i]);
    }
    for (;;) {
      auto ready = [this, &slots]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        bool all_done = true;
        for (const Slot& slot : slots) {
          if (slot.result.has_value()) continue;
          all_done = false;
          if (!slot.taken && in_flight_ < max_in_flight_) return true;
        }
        return all_done;
      };
      mu_.Await(absl::Condition(&ready));
      bool all_done = true;
      for (const Slot& slot : slots) all_done &= slot.result.has_value();
      if (all_done) break;
      LeadLocked();
    }
    MaybePostLeaderLocked();
    std::vector<absl::StatusOr<Result>> results;
    results.reserve(slots.size());
    for (Slot& slot : slots) results.push_back(std::move(*slot.result));
    return results;
  }

  // Queues `item`; `done` gets its result later, on the executor (or on a
  // blocked caller's thread that led the batch). Needs an executor.
  void SubmitAsync(Item item, Done done) {
    auto slot = std::make_unique<Slot>();
    slot->owned = std::make_unique<Item>(std::move(item));
    slot->item = slot->owned.get();
    slot->done = std::move(done);
    absl::MutexLock lock(&mu_);
    queue_.push_back(slot.release());
    ++async_queued_;
    MaybePostLeaderLocked();
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
    // Async slots only: they own their item and are deleted once done.
    std::unique_ptr<Item> owned;
    Done done;
  };

  // A lead task is needed when async items wait and a batch could start.
  void MaybePostLeaderLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (async_queued_ == 0 || in_flight_ + leaders_posted_ >= max_in_flight_) return;
    ++leaders_posted_;
    executor_->Post([this] {
      absl::MutexLock lock(&mu_);
      // Lead until nothing is left (or the other in-flight slots are busy):
      // no hop back to the executor between batches.
      while (!queue_.empty() && in_flight_ < max_in_flight_) LeadLocked();
      --leaders_posted_;
      MaybePostLeaderLocked();
    });
  }

  void LeadLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    std::vector<Slot*> batch;
    std::vector<const Item*> items;
    while (!queue_.empty() && batch.size() < max_batch_) {
      Slot* next = queue_.front();
      queue_.pop_front();
      next->taken = true;
      if (next->done) --async_queued_;
      batch.push_back(next);
      items.push_back(next->item);
    }
    ++in_flight_;
    ++batches_;
    items_ += batch.size();
    mu_.Unlock();
    std::vector<absl::StatusOr<Result>> results = run_(items);
    std::vector<std::pair<Slot*, absl::StatusOr<Result>>> finished;
    mu_.Lock();
    --in_flight_;
    for (size_t i = 0; i < batch.size(); ++i) {
      absl::StatusOr<Result> result =
          results.size() == batch.size()
              ? std::move(results[i])
              : absl::InternalError("group commit: batch returned a wrong count");
      if (batch[i]->done) {
        finished.emplace_back(batch[i], std::move(result));
      } else {
        batch[i]->result = std::move(result);
      }
    }
    if (finished.empty()) return;
    // One task runs the callbacks, so the next batch need not wait for them.
    executor_->Post([finished = std::move(finished)]() mutable {
      for (auto& [slot, result] : finished) {
        slot->done(std::move(result));
        delete slot;
      }
    });
  }

  const int max_in_flight_;
  const size_t max_batch_;
  const Run run_;
  common::Executor* const executor_;

  absl::Mutex mu_;
  std::deque<Slot*> queue_ ABSL_GUARDED_BY(mu_);
  int in_flight_ ABSL_GUARDED_BY(mu_) = 0;
  // Async slots in queue_, and lead tasks posted but not finished.
  size_t async_queued_ ABSL_GUARDED_BY(mu_) = 0;
  int leaders_posted_ ABSL_GUARDED_BY(mu_) = 0;
  size_t batches_ ABSL_GUARDED_BY(mu_) = 0;
  size_t items_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace wake::registry
