// The registry's durable store: registrations, wakes and stream claims in
// PostgreSQL. Every method is one transaction; every write returns its
// transaction id (xid8) so callers can wait for the sync stream to show it.
// The claim methods are their own interface, ClaimStore (claim_store.h).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/sync/registration.h"
#include "registry-service/claim_store.h"
#include "wake/v1/registry.pb.h"

namespace wake::registry {

struct UpsertResult {
  sync::Registration row;
  bool created = false;
  int64_t txid = 0;  // 0 when the row already existed (nothing written).
};

struct UnregisterSelector {
  enum class Kind { kSubscriberManifest, kSubscriber, kSource, kSubscriberSource };
  Kind kind = Kind::kSubscriber;
  std::string tenant_id;
  std::string subscriber_url;
  std::string source_url;
  std::string manifest_key;
};

struct DeleteResult {
  std::vector<int64_t> ids;
  int64_t txid = 0;
};

// How a draft's source event key is remembered once its wake is gone
// (acked): re-evaluating the same event must never make a second wake.
enum class EventKeyKind {
  // Keys the store arbitrates otherwise ("timeout", debounce windows): only
  // the wakes table's unique key, while the wake exists.
  kInternal = 0,
  // "<op>:<key>": remembered for the retention window.
  kEvent = 1,
  // An offset of the source (offsets sort in event order, byte-wise):
  // remembered for a while (time for out-of-order evaluations), then folded
  // into the registration's high-water mark, which rejects every offset at
  // or below it.
  kOffset = 2,
};

// A wake to persist, with what must happen to its registration in the same
// transaction.
struct WakeDraft {
  std::string tenant_id;
  std::string stream;
  int64_t registration_id = 0;
  std::string source_event_key;
  v1::WakeMessage message;
  v1::RunStatus run_finished_status = v1::RUN_STATUS_UNSPECIFIED;
  bool include_response = true;
  // One-shot: delete the registration; if it is already gone, no wake.
  bool delete_registration = false;
  // The registration has a timeout: mark it consumed.
  bool consume_timeout = false;
  // A timeout wake: only if the timeout was not consumed yet.
  bool require_timeout_unconsumed = false;
  EventKeyKind key_kind = EventKeyKind::kInternal;
  // > 0: the match joins the registration's debounce window (opened if
  // none is open) instead of becoming a wake now, and the window's deadline
  // moves to now + debounce_ms. `message` then holds the one change.
  int32_t debounce_ms = 0;
};

// A debounced match stored in its registration's window.
struct BufferedMatch {
  std::string tenant_id;
  int64_t registration_id = 0;
  int64_t window_id = 0;
  // The window reached its size bound: its deadline is now, close it at once.
  bool full = false;
};

struct PersistResult {
  // Wakes inserted by this call (duplicates of earlier ones are skipped).
  std::vector<v1::Wake> wakes;
  // Debounced drafts stored by this call (duplicates are skipped).
  std::vector<BufferedMatch> buffered;
  int64_t txid = 0;
};

// What closing a debounce window did.
struct WindowResult {
  enum class Outcome {
    kFired,     // Closed: `wake` holds its wake (none if the registration is gone),
                // `more_wakes` the further parts of a window too large for one.
    kNotDue,    // Still open (a later match moved its deadline): due in `due_in`.
    kNoWindow,  // No window is open (another replica closed it).
  };
  Outcome outcome = Outcome::kNoWindow;
  std::optional<v1::Wake> wake;
  std::vector<v1::Wake> more_wakes;
  absl::Duration due_in;
  int64_t txid = 0;
};

// How long event keys are remembered after they made a wake.
struct KeyRetention {
  // "<op>:<key>" keys: then they are forgotten.
  absl::Duration events = absl::Hours(24);
  // Offsets: then they are folded into the registration's high-water mark,
  // which still rejects them (and every older offset) as replays.
  absl::Duration offsets = absl::Hours(1);
};

struct WindowKey {
  std::string tenant_id;
  int64_t registration_id = 0;
};

class WakeStore : public ClaimStore {
 public:
  ~WakeStore() override = default;

  // Inserts `row` (id and created_at ignored) or returns the identical
  // existing one. UNAVAILABLE when the database is unreachable.
  virtual absl::StatusOr<UpsertResult> UpsertRegistration(const sync::Registration& row) = 0;

  // UpsertRegistration without blocking the caller: `done` runs once with
  // the result, on a thread of the store's choosing (possibly the caller's).
  virtual void UpsertRegistrationAsync(const sync::Registration& row,
                                       std::function<void(absl::StatusOr<UpsertResult>)> done) = 0;

  virtual absl::StatusOr<DeleteResult> DeleteRegistrations(const UnregisterSelector& selector) = 0;

  // Persists the drafts in one transaction (idempotent per tenant,
  // registration and source event key).
  virtual absl::StatusOr<PersistResult> PersistWakes(const std::vector<WakeDraft>& drafts) = 0;

  // PersistWakes without waiting for a shared batch: `done` runs once with
  // the result, on a thread of the store's choosing (possibly the caller's,
  // which may then block on the database).
  virtual void PersistWakesAsync(const std::vector<WakeDraft>& drafts,
                                 std::function<void(absl::StatusOr<PersistResult>)> done) = 0;

  // Closes the registration's debounce window if its deadline has passed
  // (database time), turning its changes into one wake; deletes a one-shot
  // registration in the same transaction. Exactly one caller, across
  // replicas, closes a window.
  virtual absl::StatusOr<WindowResult> CloseDebounceWindow(const WindowKey& window) = 0;

  // Open windows whose deadline has passed, earliest first, at most `limit`.
  virtual absl::StatusOr<std::vector<WindowKey>> DueDebounceWindows(int limit) = 0;

  // Forgets up to `limit` event keys older than their retention, and as
  // many offsets (each registration's expired offsets raise its high-water
  // mark), and the marks of registrations that are gone. Returns how many
  // keys went.
  virtual absl::StatusOr<int64_t> SweepEventKeys(const KeyRetention& retention, int limit) = 0;
};

using WakeStorePtr = std::unique_ptr<WakeStore>;

}  // namespace wake::registry
