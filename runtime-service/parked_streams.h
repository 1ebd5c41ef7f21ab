// The streams the claim scheduler has parked: queued for a claim, but no
// connected runner may take them now. They are kept per tenant, oldest
// trigger first (by the sequence number the scheduler gave the trigger), so
// that a runner that connects or gains room takes its tenant's oldest first.
//
// Not thread-safe: the claim scheduler calls it under its own lock.
#pragma once

#include <cstdint>
#include <set>
#include <string>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "runtime-service/runner_pool.h"

namespace wake::runtime {

class ParkedStreams {
 public:
  // (sequence of the stream's first queued trigger, stream)
  using Queue = std::set<std::pair<uint64_t, StreamKey>>;

  // `key` must not be parked yet.
  void Park(uint64_t seq, const StreamKey& key) {
    by_tenant_[key.first].emplace(seq, key);
    ++count_;
  }

  // `key` must be parked, with `seq`.
  void Unpark(uint64_t seq, const StreamKey& key) {
    --count_;
    if (auto it = by_tenant_.find(key.first); it != by_tenant_.end()) {
      it->second.erase({seq, key});
      if (it->second.empty()) by_tenant_.erase(it);
    }
  }

  // The tenant's parked streams, oldest first; nullptr if it has none. Valid
  // until the next Park, Unpark or Clear.
  const Queue* OfTenant(const std::string& tenant_id) const {
    auto it = by_tenant_.find(tenant_id);
    return it == by_tenant_.end() ? nullptr : &it->second;
  }

  // Every tenant's parked streams (tenant_id -> its queue, never empty).
  const absl::flat_hash_map<std::string, Queue>& by_tenant() const { return by_tenant_; }

  void Clear() {
    by_tenant_.clear();
    count_ = 0;
  }

  int size() const { return count_; }
  bool empty() const { return count_ == 0; }

 private:
  absl::flat_hash_map<std::string, Queue> by_tenant_;
  int count_ = 0;
};

}  // namespace wake::runtime
