// A set of wake ids that forgets the oldest ones beyond a fixed size: the
// scheduler's bounded memory of the wakes it was told of or saw acked.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>

#include "absl/container/flat_hash_set.h"

namespace wake::runtime {

class BoundedIdSet {
 public:
  explicit BoundedIdSet(size_t capacity) : capacity_(capacity) {}

  // Adds `id`, forgetting the oldest id if the set is full. An id already
  // present keeps its age.
  void Insert(int64_t id) {
    if (!ids_.insert(id).second) return;
    order_.push_back(id);
    if (order_.size() > capacity_) {
      ids_.erase(order_.front());
      order_.pop_front();
    }
  }

  bool Contains(int64_t id) const { return ids_.contains(id); }
  size_t size() const { return order_.size(); }

 private:
  const size_t capacity_;
  absl::flat_hash_set<int64_t> ids_;
  std::deque<int64_t> order_;  // Oldest first.
};

}  // namespace wake::runtime
