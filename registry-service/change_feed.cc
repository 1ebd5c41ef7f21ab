#include "registry-service/change_feed.h"

#include <algorithm>
#include <random>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "registry-service/conversions.h"

namespace wake::registry {
namespace {

std::string RandomEpoch() {
  std::random_device rd;
  const uint64_t value = (static_cast<uint64_t>(rd()) << 32) ^ rd();
  return absl::StrCat(absl::Hex(value, absl::kZeroPad16));
}

}  // namespace

std::optional<v1::ChangeEvent> ToChangeEvent(const sync::CollectionEvent& event) {
  using Kind = sync::CollectionEvent::Kind;
  v1::ChangeEvent out;
  for (int64_t txid : event.txids) out.add_txids(txid);
  switch (event.kind) {
    case Kind::kEnter:
      out.mutable_registration()->set_op(v1::INSERT);
      ToProto(event.row, out.mutable_registration()->mutable_registration());
      return out;
    case Kind::kUpdate:
      out.mutable_registration()->set_op(v1::UPDATE);
      ToProto(event.row, out.mutable_registration()->mutable_registration());
      return out;
    case Kind::kExit:
      out.mutable_registration()->set_op(v1::DELETE);
      ToProto(event.row, out.mutable_registration()->mutable_registration());
      return out;
    case Kind::kWakeAvailable: {
      v1::WakeAvailable* wake = out.mutable_wake();
      wake->set_tenant_id(event.wake.tenant_id);
      wake->set_stream(event.wake.stream);
      wake->set_wake_id(event.wake.id);
      wake->set_registration_id(event.wake.registration_id);
      return out;
    }
    case Kind::kUpToDate:
      break;
  }
  return std::nullopt;
}

ChangeFeed::ChangeFeed(sync::RegistrationCollection& collection, size_t capacity, std::string epoch)
    : collection_(collection),
      capacity_(capacity),
      epoch_(epoch.empty() ? RandomEpoch() : std::move(epoch)) {
  listener_ = collection_.AddListener(
      [this](const sync::CollectionEvent& event) { OnCollectionEvent(event); });
}

ChangeFeed::~ChangeFeed() { collection_.RemoveListener(listener_); }

uint64_t ChangeFeed::head() {
  absl::MutexLock lock(&mu_);
  return head_;
}

std::string ChangeFeed::Offset(uint64_t seq) const { return absl::StrCat(epoch_, "_", seq); }

bool ChangeFeed::ParseOffset(const std::string& offset, uint64_t* seq) const {
  const size_t sep = offset.find('_');
  if (sep == std::string::npos || offset.substr(0, sep) != epoch_) return false;
  return absl::SimpleAtoi(offset.substr(sep + 1), seq);
}

void ChangeFeed::OnCollectionEvent(const sync::CollectionEvent& event) {
  std::optional<v1::ChangeEvent> change = ToChangeEvent(event);
  if (!change.has_value()) return;
  {
    absl::MutexLock lock(&mu_);
    auto entry = std::make_shared<FeedEntry>();
    entry->seq = ++head_;
    entry->tenant_id = event.kind == sync::CollectionEvent::Kind::kWakeAvailable
                           ? event.wake.tenant_id
                           : event.row.tenant_id;
    entry->event = std::move(*change);
    entry->event.set_offset(Offset(entry->seq));
    ring_.push_back(std::move(entry));
    while (ring_.size() > capacity_) ring_.pop_front();
  }
  absl::MutexLock lock(&watchers_mu_);
  for (const auto& [handle, callback] : watchers_) callback();
}

ChangeFeed::ReadStatus ChangeFeed::Read(uint64_t after, size_t max,
                                        std::vector<std::shared_ptr<const FeedEntry>>* out) {
  absl::MutexLock lock(&mu_);
  if (after >= head_) return ReadStatus::kOk;
  const uint64_t oldest = ring_.empty() ? head_ + 1 : ring_.front()->seq;
  if (after + 1 < oldest) return ReadStatus::kGone;
  for (size_t i = after + 1 - oldest; i < ring_.size() && max > 0; ++i, --max) {
    out->push_back(ring_[i]);
  }
  return ReadStatus::kOk;
}

int ChangeFeed::Watch(std::function<void()> callback) {
  absl::MutexLock lock(&watchers_mu_);
  const int handle = next_watcher_++;
  watchers_.emplace(handle, std::move(callback));
  return handle;
}

void ChangeFeed::Unwatch(int handle) {
  absl::MutexLock lock(&watchers_mu_);
  watchers_.erase(handle);
}

v1::ChangeEvent ControlEvent(v1::ControlKind kind, const std::string& offset) {
  v1::ChangeEvent event;
  event.set_offset(offset);
  event.set_control(kind);
  return event;
}

FeedCursor::FeedCursor(ChangeFeed& feed, FeedFilter filter, uint64_t after, Start start,
                       uint64_t quiet_up_to_date)
    : feed_(feed),
      filter_(std::move(filter)),
      quiet_up_to_date_(std::max<uint64_t>(quiet_up_to_date, 1)),
      after_(after),
      owed_(start == Start::kResumed) {}

bool FeedCursor::Refill(size_t max, std::deque<v1::ChangeEvent>* out) {
  std::vector<std::shared_ptr<const FeedEntry>> entries;
  const size_t queued_before = out->size();
  // Stop at the first chunk that yields events: the rest waits for the next
  // refill, so a subscriber far behind is served in bounded steps.
  while (out->size() == queued_before) {
    entries.clear();
    if (feed_.Read(after_, max, &entries) == ChangeFeed::ReadStatus::kGone) {
      out->push_back(ControlEvent(v1::MUST_REFETCH, feed_.Offset(after_)));
      return false;
    }
    if (entries.empty()) break;
    for (const auto& entry : entries) {
      after_ = entry->seq;
      const int kind =
          entry->event.has_registration() ? v1::ChangeEvent::REGISTRATION : v1::ChangeEvent::WAKE;
      if ((!filter_.all_tenants && entry->tenant_id != filter_.tenant_id) || !filter_.Wants(kind)) {
        ++dropped_;
        continue;
      }
      out->push_back(entry->event);
      owed_ = true;
    }
  }
  // Caught up: the last read came back empty and nothing is left to send.
  if (out->size() == queued_before && filter_.Wants(v1::ChangeEvent::CONTROL) &&
      (owed_ || dropped_ >= quiet_up_to_date_)) {
    out->push_back(ControlEvent(v1::UP_TO_DATE, feed_.Offset(after_)));
    owed_ = false;
    dropped_ = 0;
  }
  return true;
}

}  // namespace wake::registry
