#include "common/sync/registration_collection.h"

#include <algorithm>

#include "absl/hash/hash.h"
#include "absl/strings/str_cat.h"
#include "common/logging.h"

namespace wake::sync {
namespace {

// Enough to cover the window between a commit reaching the stream and its
// writer asking for it, many times over.
constexpr size_t kSeenTxidCapacity = 1 << 16;

bool MatchesFilters(const Registration& row, const std::string& source_url,
                    const std::string& subscriber_url) {
  return (source_url.empty() || row.source_url == source_url) &&
         (subscriber_url.empty() || row.subscriber_url == subscriber_url);
}

}  // namespace

RegistrationCollection::RegistrationCollection(common::TimeSource& time,
                                               common::Executor* callbacks)
    : time_(time), callbacks_(callbacks) {
  wait_timer_ = time_.CreateTimer([this] { OnWaitTimer(); });
}

RegistrationCollection::~RegistrationCollection() = default;

uint64_t RegistrationCollection::IndexKey(const std::string& tenant, const std::string& url) {
  return absl::Hash<std::pair<absl::string_view, absl::string_view>>()(
      std::make_pair(absl::string_view(tenant), absl::string_view(url)));
}

void RegistrationCollection::Insert(Table& table, RowPtr row) {
  const int64_t id = row->id;
  auto add = [id](IdList& ids) {
    // Ids mostly arrive in increasing order: usually an append.
    if (ids.empty() || ids.back() < id) {
      ids.push_back(id);
    } else {
      ids.insert(std::lower_bound(ids.begin(), ids.end(), id), id);
    }
  };
  add(table.by_source[IndexKey(row->tenant_id, row->source_url)]);
  add(table.by_subscriber[IndexKey(row->tenant_id, row->subscriber_url)]);
  table.by_tenant[row->tenant_id].insert(id);
  table.by_id[id] = std::move(row);
}

void RegistrationCollection::Erase(Table& table, int64_t id) {
  auto it = table.by_id.find(id);
  if (it == table.by_id.end()) return;
  const Registration& row = *it->second;
  auto drop = [id](Index& index, uint64_t key) {
    auto entry = index.find(key);
    if (entry == index.end()) return;
    IdList& ids = entry->second;
    ids.erase(std::remove(ids.begin(), ids.end(), id), ids.end());
    if (ids.empty()) index.erase(entry);
  };
  drop(table.by_source, IndexKey(row.tenant_id, row.source_url));
  drop(table.by_subscriber, IndexKey(row.tenant_id, row.subscriber_url));
  if (auto tenant = table.by_tenant.find(row.tenant_id); tenant != table.by_tenant.end()) {
    tenant->second.erase(id);
    if (tenant->second.empty()) table.by_tenant.erase(tenant);
  }
  table.by_id.erase(it);
}

void RegistrationCollection::Apply(Table& table, const RowChange& change,
                                   const std::vector<int64_t>& txids,
                                   std::vector<CollectionEvent>* events) {
  if (change.table == SyncTable::kWakes) {
    if (!change.wake.has_value()) return;
    const WakeRow& wake = *change.wake;
    auto known = table.pending_wakes.find(wake.id);
    if (change.op == ChangeOp::kDelete || !wake.pending) {
      if (known == table.pending_wakes.end()) return;
      auto count =
          table.pending_streams.find(StreamKey(known->second.tenant_id, known->second.stream));
      if (count != table.pending_streams.end() && --count->second <= 0) {
        table.pending_streams.erase(count);
      }
      table.pending_wakes.erase(known);
      return;
    }
    const bool was_pending = known != table.pending_wakes.end();
    if (!was_pending) ++table.pending_streams[StreamKey(wake.tenant_id, wake.stream)];
    table.pending_wakes[wake.id] = wake;
    if (!was_pending && events != nullptr) {
      CollectionEvent event;
      event.kind = CollectionEvent::Kind::kWakeAvailable;
      event.wake = wake;
      event.txids = txids;
      events->push_back(std::move(event));
    }
    return;
  }
  if (!change.registration.has_value()) return;
  const Registration& row = *change.registration;
  auto existing = table.by_id.find(row.id);
  if (change.op == ChangeOp::kDelete) {
    if (existing == table.by_id.end()) return;
    if (events != nullptr) {
      CollectionEvent event;
      event.kind = CollectionEvent::Kind::kExit;
      event.row = *existing->second;
      event.txids = txids;
      events->push_back(std::move(event));
    }
    Erase(table, row.id);
    return;
  }
  CollectionEvent event;
  event.txids = txids;
  event.row = row;
  if (existing != table.by_id.end()) {
    if (*existing->second == row) return;
    event.kind = CollectionEvent::Kind::kUpdate;
    event.old_row = *existing->second;
    Erase(table, row.id);
  } else {
    event.kind = CollectionEvent::Kind::kEnter;
  }
  Insert(table, std::make_shared<const Registration>(row));
  if (events != nullptr) events->push_back(std::move(event));
}

void RegistrationCollection::OnReset() {
  absl::MutexLock lock(&mu_);
  staged_ = std::make_unique<Table>();
}

void RegistrationCollection::OnBatch(SyncBatch batch) {
  std::vector<CollectionEvent> events;
  std::vector<std::function<void(bool)>> confirmed;
  {
    absl::MutexLock lock(&mu_);
    if (staged_ != nullptr) {
      // Building a snapshot: no events until it is swapped in.
      for (const RowChange& change : batch.changes) Apply(*staged_, change, batch.txids, nullptr);
    } else {
      for (const RowChange& change : batch.changes) Apply(table_, change, batch.txids, &events);
    }
    NoteTxidsLocked(batch.txids);
    if (!batch.txids.empty()) {
      absl::MutexLock lock(&txid_mu_);
      TakeSeenCallbacksLocked(batch.txids, &confirmed);
    }
  }
  // Listeners first: a caller told its write is confirmed must find it in
  // the change feed too (a SubscribeChanges from "-1" right after it).
  Notify(events);
  if (!confirmed.empty()) {
    if (callbacks_ != nullptr) {
      callbacks_->Post([confirmed = std::move(confirmed)] {
        for (auto& done : confirmed) done(true);
      });
    } else {
      for (auto& done : confirmed) done(true);
    }
  }
}

void RegistrationCollection::OnUpToDate() {
  std::vector<CollectionEvent> events;
  {
    absl::MutexLock lock(&mu_);
    if (staged_ != nullptr) {
      // Diff the old view against the new snapshot (in id order), then swap.
      std::vector<int64_t> old_ids;
      old_ids.reserve(table_.by_id.size());
      for (const auto& entry : table_.by_id) old_ids.push_back(entry.first);
      std::sort(old_ids.begin(), old_ids.end());
      for (int64_t id : old_ids) {
        const Registration& row = *table_.by_id.at(id);
        auto fresh = staged_->by_id.find(id);
        CollectionEvent event;
        if (fresh == staged_->by_id.end()) {
          event.kind = CollectionEvent::Kind::kExit;
          event.row = row;
          events.push_back(std::move(event));
        } else if (!(*fresh->second == row)) {
          event.kind = CollectionEvent::Kind::kUpdate;
          event.row = *fresh->second;
          event.old_row = row;
          events.push_back(std::move(event));
        }
      }
      std::vector<int64_t> new_ids;
      for (const auto& entry : staged_->by_id) {
        if (table_.by_id.count(entry.first) == 0) new_ids.push_back(entry.first);
      }
      std::sort(new_ids.begin(), new_ids.end());
      for (int64_t id : new_ids) {
        CollectionEvent event;
        event.kind = CollectionEvent::Kind::kEnter;
        event.row = *staged_->by_id.at(id);
        events.push_back(std::move(event));
      }
      // Every pending wake is announced again, not only those that were not
      // pending before: while this replica was not following, a wake it saw
      // pending may have been claimed and released (or its claim expired)
      // without its release reaching any subscriber of this replica.
      for (const auto& [id, wake] : staged_->pending_wakes) {
        CollectionEvent event;
        event.kind = CollectionEvent::Kind::kWakeAvailable;
        event.wake = wake;
        events.push_back(std::move(event));
      }
      table_ = std::move(*staged_);
      staged_.reset();
      // The snapshot holds every committed write: committed mutations are done.
      for (auto it = mutations_.begin(); it != mutations_.end();) {
        it = it->second.committed ? EraseMutationLocked(it) : std::next(it);
      }
    }
    up_to_date_ = true;
    events.push_back(CollectionEvent{CollectionEvent::Kind::kUpToDate, {}, {}, {}, {}});
  }
  Notify(events);
}

void RegistrationCollection::OnDisconnected(const absl::Status& why) {
  common::LogWarn("sync_disconnected", {{"error", std::string(why.message())}});
}

void RegistrationCollection::NoteTxidsLocked(const std::vector<int64_t>& txids) {
  if (txids.empty()) return;
  absl::MutexLock lock(&txid_mu_);  // Wakes the waiters of these txids.
  for (int64_t txid : txids) {
    if (!seen_txids_.insert(txid).second) continue;
    seen_order_.push_back(txid);
    if (seen_order_.size() > kSeenTxidCapacity) {
      seen_txids_.erase(seen_order_.front());
      seen_order_.pop_front();
    }
  }
  // Confirmed mutations give way to the synced rows.
  for (auto it = mutations_.begin(); it != mutations_.end();) {
    const bool confirmed = it->second.committed && SeenLocked(it->second.txid);
    it = confirmed ? EraseMutationLocked(it) : std::next(it);
  }
}

RegistrationCollection::MutationMap::iterator RegistrationCollection::EraseMutationLocked(
    MutationMap::iterator it) {
  if (it->second.kind == Mutation::Kind::kDelete) {
    for (int64_t id : it->second.ids) {
      auto hidden = hidden_ids_.find(id);
      if (hidden != hidden_ids_.end() && --hidden->second == 0) hidden_ids_.erase(hidden);
    }
  }
  return mutations_.erase(it);
}

void RegistrationCollection::Notify(const std::vector<CollectionEvent>& events) {
  if (events.empty()) return;
  absl::MutexLock lock(&listeners_mu_);
  for (const CollectionEvent& event : events) {
    for (const auto& [handle, listener] : listeners_) listener(event);
  }
}

bool RegistrationCollection::HiddenLocked(int64_t id) const {
  return !hidden_ids_.empty() && hidden_ids_.contains(id);
}

size_t RegistrationCollection::ForEachBySource(const std::string& tenant,
                                               const std::string& source_url,
                                               const std::function<void(const Registration&)>& fn) {
  absl::ReaderMutexLock lock(&mu_);
  size_t visited = 0;
  absl::flat_hash_set<int64_t> overlaid;
  for (const auto& [mid, mutation] : mutations_) {
    if (mutation.kind != Mutation::Kind::kUpsert || mutation.row.id == 0) continue;
    if (mutation.row.tenant_id != tenant || mutation.row.source_url != source_url) continue;
    if (HiddenLocked(mutation.row.id) || !overlaid.insert(mutation.row.id).second) continue;
    fn(mutation.row);
    ++visited;
  }
  auto it = table_.by_source.find(IndexKey(tenant, source_url));
  if (it == table_.by_source.end()) return visited;
  for (int64_t id : it->second) {
    if (overlaid.count(id) > 0 || HiddenLocked(id)) continue;
    const Registration& row = *table_.by_id.at(id);
    if (row.tenant_id != tenant || row.source_url != source_url) continue;  // Hash collision.
    fn(row);
    ++visited;
  }
  return visited;
}

std::vector<Registration> RegistrationCollection::BySource(const std::string& tenant,
                                                           const std::string& source_url) {
  std::vector<Registration> rows;
  ForEachBySource(tenant, source_url, [&rows](const Registration& row) { rows.push_back(row); });
  std::sort(rows.begin(), rows.end(),
            [](const Registration& a, const Registration& b) { return a.id < b.id; });
  return rows;
}

std::vector<Registration> RegistrationCollection::BySubscriber(const std::string& tenant,
                                                               const std::string& subscriber_url) {
  return List(tenant, "", subscriber_url, 0, SIZE_MAX);
}

std::optional<Registration> RegistrationCollection::Get(int64_t id) {
  absl::ReaderMutexLock lock(&mu_);
  if (HiddenLocked(id)) return std::nullopt;
  for (const auto& [mid, mutation] : mutations_) {
    if (mutation.kind == Mutation::Kind::kUpsert && mutation.row.id == id) return mutation.row;
  }
  auto it = table_.by_id.find(id);
  if (it == table_.by_id.end()) return std::nullopt;
  return *it->second;
}

std::vector<Registration> RegistrationCollection::List(const std::string& tenant,
                                                       const std::string& source_url,
                                                       const std::string& subscriber_url,
                                                       int64_t after_id, size_t limit) {
  // Optimistic rows first (few), then at most `limit` synced rows in id order:
  // the first `limit` of their union is the page.
  std::map<int64_t, Registration> rows;
  {
    absl::ReaderMutexLock lock(&mu_);
    auto wanted = [&](const Registration& row) {
      return row.tenant_id == tenant && MatchesFilters(row, source_url, subscriber_url);
    };
    for (const auto& [mid, mutation] : mutations_) {
      const Registration& row = mutation.row;
      if (mutation.kind != Mutation::Kind::kUpsert || row.id == 0 || row.id <= after_id) continue;
      if (wanted(row) && !HiddenLocked(row.id)) rows.emplace(row.id, row);
    }
    size_t taken = 0;
    // Returns false once the page is full. (Clang's analysis does not carry
    // the held lock into a lambda: the annotation says the caller holds it.)
    auto take = [&](int64_t id) ABSL_SHARED_LOCKS_REQUIRED(mu_) {
      if (taken >= limit) return false;
      if (rows.count(id) > 0 || HiddenLocked(id)) return true;
      const Registration& row = *table_.by_id.at(id);
      if (!wanted(row)) return true;  // The other filter, or a hash collision.
      rows.emplace(id, row);
      ++taken;
      return true;
    };
    if (!source_url.empty() || !subscriber_url.empty()) {
      // Walk the smaller index list that applies; the rest is checked per row.
      const IdList* ids = nullptr;
      auto consider = [&](const Index& index, const std::string& url) {
        if (url.empty()) return true;
        auto it = index.find(IndexKey(tenant, url));
        if (it == index.end()) return false;  // Nothing can match.
        if (ids == nullptr || it->second.size() < ids->size()) ids = &it->second;
        return true;
      };
      if (consider(table_.by_source, source_url) &&
          consider(table_.by_subscriber, subscriber_url)) {
        for (auto it = std::upper_bound(ids->begin(), ids->end(), after_id);
             it != ids->end() && take(*it); ++it) {
        }
      }
    } else if (auto ids = table_.by_tenant.find(tenant); ids != table_.by_tenant.end()) {
      for (auto it = ids->second.upper_bound(after_id); it != ids->second.end() && take(*it);
           ++it) {
      }
    }
  }
  std::vector<Registration> out;
  out.reserve(std::min(limit, rows.size()));
  for (auto& [id, row] : rows) {
    if (out.size() >= limit) break;
    out.push_back(std::move(row));
  }
  return out;
}

std::vector<Registration> RegistrationCollection::Snapshot(
    const std::optional<std::string>& tenant) {
  std::vector<Registration> rows;
  absl::ReaderMutexLock lock(&mu_);
  if (tenant.has_value()) {
    // Already in id order.
    auto ids = table_.by_tenant.find(*tenant);
    if (ids == table_.by_tenant.end()) return rows;
    rows.reserve(ids->second.size());
    for (int64_t id : ids->second) rows.push_back(*table_.by_id.at(id));
    return rows;
  }
  rows.reserve(table_.by_id.size());
  for (const auto& [id, row] : table_.by_id) rows.push_back(*row);
  std::sort(rows.begin(), rows.end(),
            [](const Registration& a, const Registration& b) { return a.id < b.id; });
  return rows;
}

std::vector<WakeRow> RegistrationCollection::PendingWakes(
    const std::optional<std::string>& tenant) {
  std::vector<WakeRow> wakes;
  absl::ReaderMutexLock lock(&mu_);
  for (const auto& [id, wake] : table_.pending_wakes) {
    if (!tenant.has_value() || wake.tenant_id == *tenant) wakes.push_back(wake);
  }
  return wakes;
}

std::vector<Registration> RegistrationCollection::SnapshotPage(
    const std::optional<std::string>& tenant, SnapshotCursor* cursor, size_t limit) {
  std::vector<Registration> rows;
  if (cursor->done) return rows;
  absl::ReaderMutexLock lock(&mu_);
  std::vector<const std::string*> tenants;
  if (tenant.has_value()) {
    if (table_.by_tenant.contains(*tenant))
      tenants.push_back(&table_.by_tenant.find(*tenant)->first);
  } else {
    for (const auto& [name, ids] : table_.by_tenant) {
      if (name >= cursor->tenant) tenants.push_back(&name);
    }
    std::sort(tenants.begin(), tenants.end(),
              [](const std::string* a, const std::string* b) { return *a < *b; });
  }
  for (const std::string* name : tenants) {
    const absl::btree_set<int64_t>& ids = table_.by_tenant.at(*name);
    const int64_t after = *name == cursor->tenant ? cursor->after_id : 0;
    for (auto it = ids.upper_bound(after); it != ids.end(); ++it) {
      if (rows.size() >= limit) return rows;
      rows.push_back(*table_.by_id.at(*it));
      cursor->tenant = *name;
      cursor->after_id = *it;
    }
  }
  cursor->done = true;
  return rows;
}

std::vector<WakeRow> RegistrationCollection::PendingWakesPage(
    const std::optional<std::string>& tenant, int64_t* after_id, size_t limit) {
  std::vector<WakeRow> wakes;
  absl::ReaderMutexLock lock(&mu_);
  for (auto it = table_.pending_wakes.upper_bound(*after_id);
       it != table_.pending_wakes.end() && wakes.size() < limit; ++it) {
    *after_id = it->first;
    if (!tenant.has_value() || it->second.tenant_id == *tenant) wakes.push_back(it->second);
  }
  return wakes;
}

bool RegistrationCollection::HasPendingWake(const std::string& tenant, const std::string& stream) {
  absl::ReaderMutexLock lock(&mu_);
  return table_.pending_streams.contains(StreamKey(tenant, stream));
}

std::string RegistrationCollection::StreamKey(const std::string& tenant,
                                              const std::string& stream) {
  std::string key;
  key.reserve(tenant.size() + 1 + stream.size());
  key.append(tenant).push_back('\0');
  key.append(stream);
  return key;
}

size_t RegistrationCollection::PendingWakeCount() {
  absl::ReaderMutexLock lock(&mu_);
  return table_.pending_wakes.size();
}

size_t RegistrationCollection::size() {
  absl::ReaderMutexLock lock(&mu_);
  return table_.by_id.size();
}

bool RegistrationCollection::up_to_date() {
  absl::ReaderMutexLock lock(&mu_);
  return up_to_date_;
}

RegistrationCollection::MutationId RegistrationCollection::BeginUpsert(const Registration& row) {
  absl::MutexLock lock(&mu_);
  const MutationId id = next_mutation_++;
  Mutation mutation;
  mutation.kind = Mutation::Kind::kUpsert;
  mutation.row = row;
  mutations_.emplace(id, std::move(mutation));
  return id;
}

RegistrationCollection::MutationId RegistrationCollection::BeginDelete(
    const std::vector<int64_t>& ids) {
  absl::MutexLock lock(&mu_);
  const MutationId id = next_mutation_++;
  Mutation mutation;
  mutation.kind = Mutation::Kind::kDelete;
  mutation.ids = ids;
  for (int64_t hidden : ids) ++hidden_ids_[hidden];
  mutations_.emplace(id, std::move(mutation));
  return id;
}

void RegistrationCollection::Commit(MutationId id, const std::optional<Registration>& row,
                                    int64_t txid) {
  absl::MutexLock lock(&mu_);
  auto it = mutations_.find(id);
  if (it == mutations_.end()) return;
  bool seen;
  {
    absl::MutexLock txid_lock(&txid_mu_);
    seen = SeenLocked(txid);
  }
  if (txid == 0 || seen) {
    // Nothing was written, or the stream already showed it.
    EraseMutationLocked(it);
    return;
  }
  it->second.committed = true;
  it->second.txid = txid;
  if (row.has_value()) it->second.row = *row;
}

void RegistrationCollection::Rollback(MutationId id) {
  absl::MutexLock lock(&mu_);
  if (auto it = mutations_.find(id); it != mutations_.end()) EraseMutationLocked(it);
}

bool RegistrationCollection::TxidSeen(int64_t txid) {
  absl::MutexLock lock(&txid_mu_);
  return SeenLocked(txid);
}

void RegistrationCollection::ArmWaitTimerLocked(common::MonotonicTime deadline) {
  if (deadline < wait_timer_at_) {
    // Usually armed already for an earlier waiter: deadlines only grow.
    wait_timer_at_ = deadline;
    wait_timer_->Enable(common::ToAbsl(deadline - time_.MonotonicNow()));
  }
}

void RegistrationCollection::TakeSeenCallbacksLocked(
    const std::vector<int64_t>& txids, std::vector<std::function<void(bool)>>* ready) {
  if (txid_callbacks_.empty()) return;
  for (int64_t txid : txids) {
    auto it = txid_callbacks_.find(txid);
    if (it == txid_callbacks_.end()) continue;
    for (TxidCallback& callback : it->second) {
      // Its deadline entry goes too (few share one deadline).
      for (auto d = callback_deadlines_.lower_bound(callback.deadline);
           d != callback_deadlines_.end() && d->first == callback.deadline; ++d) {
        if (d->second.second == callback.ticket) {
          callback_deadlines_.erase(d);
          break;
        }
      }
      ready->push_back(std::move(callback.done));
    }
    txid_callbacks_.erase(it);
  }
}

void RegistrationCollection::OnTxid(int64_t txid, absl::Duration timeout,
                                    std::function<void(bool)> done) {
  {
    absl::MutexLock lock(&txid_mu_);
    if (!SeenLocked(txid)) {
      const common::MonotonicTime deadline = time_.MonotonicNow() + common::ToChrono(timeout);
      const uint64_t ticket = next_ticket_++;
      txid_callbacks_[txid].push_back(TxidCallback{ticket, deadline, std::move(done)});
      callback_deadlines_.emplace(deadline, std::make_pair(txid, ticket));
      ArmWaitTimerLocked(deadline);
      return;
    }
  }
  done(true);
}

bool RegistrationCollection::AwaitTxid(int64_t txid, absl::Duration timeout) {
  absl::MutexLock lock(&txid_mu_);
  if (SeenLocked(txid)) return true;
  const common::MonotonicTime deadline = time_.MonotonicNow() + common::ToChrono(timeout);
  auto waiting = wait_deadlines_.insert(deadline);
  ArmWaitTimerLocked(deadline);
  auto done = [this, txid, deadline]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(txid_mu_) {
    return SeenLocked(txid) || waits_expired_up_to_ >= deadline;
  };
  txid_mu_.Await(absl::Condition(&done));
  // The timer stays armed: firing for nobody is cheaper than re-arming.
  wait_deadlines_.erase(waiting);
  return SeenLocked(txid);
}

void RegistrationCollection::OnWaitTimer() {
  std::vector<std::function<void(bool)>> expired;
  {
    absl::MutexLock lock(&txid_mu_);
    const common::MonotonicTime now = time_.MonotonicNow();
    waits_expired_up_to_ = std::max(waits_expired_up_to_, now);
    wait_timer_at_ = common::MonotonicTime::max();
    while (!callback_deadlines_.empty() && callback_deadlines_.begin()->first <= now) {
      const auto [txid, ticket] = callback_deadlines_.begin()->second;
      callback_deadlines_.erase(callback_deadlines_.begin());
      auto it = txid_callbacks_.find(txid);
      if (it == txid_callbacks_.end()) continue;
      std::vector<TxidCallback>& callbacks = it->second;
      for (auto c = callbacks.begin(); c != callbacks.end(); ++c) {
        if (c->ticket != ticket) continue;
        expired.push_back(std::move(c->done));
        callbacks.erase(c);
        break;
      }
      if (callbacks.empty()) txid_callbacks_.erase(it);
    }
    std::optional<common::MonotonicTime> next;
    if (auto w = wait_deadlines_.upper_bound(now); w != wait_deadlines_.end()) next = *w;
    if (!callback_deadlines_.empty() &&
        (!next.has_value() || callback_deadlines_.begin()->first < *next)) {
      next = callback_deadlines_.begin()->first;
    }
    if (next.has_value()) {
      wait_timer_at_ = *next;
      wait_timer_->Enable(common::ToAbsl(*next - now));
    }
  }
  for (auto& done : expired) done(false);
}

int RegistrationCollection::AddListener(Listener listener) {
  absl::MutexLock lock(&listeners_mu_);
  const int handle = next_listener_++;
  listeners_.emplace(handle, std::move(listener));
  return handle;
}

void RegistrationCollection::RemoveListener(int handle) {
  absl::MutexLock lock(&listeners_mu_);
  listeners_.erase(handle);
}

size_t RegistrationCollection::PendingMutations() {
  absl::ReaderMutexLock lock(&mu_);
  return mutations_.size();
}

}  // namespace wake::sync
