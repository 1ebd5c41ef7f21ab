// The chaos run's clients: registers each family's run_finished wakes, then
// finishes its children's runs in bursts, spreading the families over a time
// window. Every call goes to a random registry and, when it fails in a way a
// real client retries (UNAVAILABLE, DEADLINE_EXCEEDED, a dropped
// connection, ...), is retried against the other registry with backoff
// until it succeeds. Every evaluation carries an explicit offset, so a retry
// is the same event with the same idempotency key.
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "tests/chaos/accounting.h"
#include "tests/chaos/workload.h"
#include "wake/v1/registry.grpc.pb.h"

namespace wake::chaos {

struct ProducerOptions {
  std::vector<std::string> registries;  // host:port of each replica
  // Families start spread over this window (their later rounds run a little
  // past it).
  absl::Duration window = absl::Seconds(60);
  int workers = 32;
  absl::Duration rpc_deadline = absl::Seconds(5);
  uint64_t seed = 1;
  // Retries stop (the call is abandoned) when this is set or at give_up_at.
  const std::atomic<bool>* abort = nullptr;
  absl::Time give_up_at = absl::InfiniteFuture();
};

// One call of an RPC, as the client saw it.
struct Attempt {
  int registry = 0;
  absl::Time start;
  absl::Duration took;
  int code = 0;   // grpc::StatusCode
  int wakes = 0;  // EvaluateRunFinished: wakes in the response
};

// One child run finish: the event the registry must turn into exactly one wake.
struct EventRecord {
  WakeKey key;  // (registration id, offset)
  std::string parent;
  std::string source;
  std::vector<Attempt> attempts;
  bool succeeded = false;
  std::vector<v1::Wake> returned;  // wakes the successful response carried
};

struct ProducerStats {
  int64_t registrations = 0;  // RegisterWake intents that succeeded
  int64_t register_calls = 0;
  int64_t evaluations = 0;  // EvaluateRunFinished intents (events)
  int64_t evaluate_calls = 0;
  int64_t abandoned = 0;             // intents given up (abort, give-up time, or a permanent error)
  int64_t no_wake_on_only_call = 0;  // evaluations that succeeded at once and matched nothing
  int64_t foreign_wakes = 0;         // response wakes for another registration or event
  std::map<int, int64_t> failures_by_code;  // failed calls, by grpc::StatusCode
};

class Producer {
 public:
  Producer(ProducerOptions options, std::vector<FamilyPlan> families);
  ~Producer();

  // Blocks until every family is done (or abandoned).
  void Run();

  // After Run.
  const std::deque<EventRecord>& events() const { return events_; }
  const EventRecord* FindEvent(const WakeKey& key) const;
  ProducerStats stats();
  // A one-line history of an event's calls ("b UNAVAILABLE 5.0s, a OK 1 wake").
  static std::string History(const EventRecord& event);

 private:
  struct FamilyState {
    const FamilyPlan* plan = nullptr;
    std::vector<int64_t> registration_ids;  // 0 = registration abandoned
    int pending = 0;
    int round = 0;
  };

  void StartFamily(int f);
  void Register(int f, int c);
  void StartRound(int f, int round);
  void Evaluate(int f, EventRecord* event);
  void FamilyDone() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Calls `call(stub, context)` until it succeeds or must stop; false if abandoned.
  template <typename Call>
  bool WithRetries(Call call, std::vector<Attempt>* attempts, int64_t* calls);
  bool Stopping() const;
  int RandomInt(int lo, int hi);
  absl::Duration RandomDuration(absl::Duration lo, absl::Duration hi);
  absl::Duration RandomDurationLocked(absl::Duration lo, absl::Duration hi)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const ProducerOptions options_;
  const std::vector<FamilyPlan> families_;
  std::vector<std::unique_ptr<v1::WakeRegistry::Stub>> stubs_;

  absl::Mutex mu_;
  std::vector<FamilyState> state_ ABSL_GUARDED_BY(mu_);
  std::deque<EventRecord> events_;  // Appended under mu_; each record then belongs to one job.
  std::map<WakeKey, size_t> event_index_;
  int64_t next_event_ ABSL_GUARDED_BY(mu_) = 0;
  int families_done_ ABSL_GUARDED_BY(mu_) = 0;
  ProducerStats stats_ ABSL_GUARDED_BY(mu_);
  std::mt19937_64 rng_ ABSL_GUARDED_BY(mu_);

  // Last: its workers run jobs that use everything above.
  std::unique_ptr<class DelayQueue> queue_;
};

}  // namespace wake::chaos
