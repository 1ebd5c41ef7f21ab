#include "tests/chaos/producer.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "grpcpp/grpcpp.h"
#include "tests/chaos/delay_queue.h"

namespace wake::chaos {
namespace {

// Codes a real client gives up on at once: the request itself is wrong.
bool Permanent(grpc::StatusCode code) {
  return code == grpc::StatusCode::INVALID_ARGUMENT || code == grpc::StatusCode::UNIMPLEMENTED ||
         code == grpc::StatusCode::PERMISSION_DENIED || code == grpc::StatusCode::UNAUTHENTICATED ||
         code == grpc::StatusCode::OUT_OF_RANGE;
}

const char* CodeName(int code) {
  static const char* const kNames[] = {"OK",
                                       "CANCELLED",
                                       "UNKNOWN",
                                       "INVALID_ARGUMENT",
                                       "DEADLINE_EXCEEDED",
                                       "NOT_FOUND",
                                       "ALREADY_EXISTS",
                                       "PERMISSION_DENIED",
                                       "RESOURCE_EXHAUSTED",
                                       "FAILED_PRECONDITION",
                                       "ABORTED",
                                       "OUT_OF_RANGE",
                                       "UNIMPLEMENTED",
                                       "INTERNAL",
                                       "UNAVAILABLE",
                                       "DATA_LOSS",
                                       "UNAUTHENTICATED"};
  return code >= 0 && code <= 16 ? kNames[code] : "?";
}

std::shared_ptr<grpc::Channel> Channel(const std::string& address) {
  grpc::ChannelArguments args;
  // A restarted registry is used again within a second, as with any client
  // that tunes its reconnect backoff for a replicated service.
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
  return grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), args);
}

}  // namespace

Producer::Producer(ProducerOptions options, std::vector<FamilyPlan> families)
    : options_(std::move(options)), families_(std::move(families)), rng_(options_.seed) {
  for (const std::string& address : options_.registries) {
    stubs_.push_back(v1::WakeRegistry::NewStub(Channel(address)));
  }
  {
    absl::MutexLock lock(&mu_);
    state_.resize(families_.size());
    for (size_t f = 0; f < families_.size(); ++f) state_[f].plan = &families_[f];
  }
  queue_ = std::make_unique<DelayQueue>(options_.workers);
}

Producer::~Producer() { queue_.reset(); }

bool Producer::Stopping() const {
  return (options_.abort != nullptr && options_.abort->load()) || absl::Now() > options_.give_up_at;
}

int Producer::RandomInt(int lo, int hi) {
  absl::MutexLock lock(&mu_);
  return std::uniform_int_distribution<int>(lo, hi)(rng_);
}

absl::Duration Producer::RandomDuration(absl::Duration lo, absl::Duration hi) {
  absl::MutexLock lock(&mu_);
  return RandomDurationLocked(lo, hi);
}

void Producer::Run() {
  int64_t total = 0;
  for (const FamilyPlan& family : families_) total += family.wakes();
  // Family starts are paced so that the wakes they carry spread evenly over
  // the first 90% of the window; their later rounds fill the rest.
  const absl::Duration release = options_.window * 0.9;
  const absl::Time start = absl::Now();
  int64_t before = 0;
  int started = 0;
  for (size_t f = 0; f < families_.size(); ++f) {
    const absl::Time at =
        start + release * (static_cast<double>(before) / std::max<int64_t>(total, 1));
    while (absl::Now() < at && !Stopping()) {
      absl::SleepFor(std::min(at - absl::Now(), absl::Milliseconds(100)));  // Pacing.
    }
    if (Stopping()) break;
    StartFamily(static_cast<int>(f));
    ++started;
    before += families_[f].wakes();
  }
  // Every started family ends: its calls succeed or, once Stopping(), are
  // abandoned at their next attempt.
  absl::MutexLock lock(&mu_);
  auto done = [this, started]()
                  ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return families_done_ == started; };
  mu_.Await(absl::Condition(&done));
}

void Producer::StartFamily(int f) {
  const FamilyPlan& plan = families_[f];
  {
    absl::MutexLock lock(&mu_);
    state_[f].registration_ids.assign(plan.children.size(), 0);
    state_[f].pending = static_cast<int>(plan.children.size());
  }
  for (size_t c = 0; c < plan.children.size(); ++c) {
    queue_->Post(absl::Now(), [this, f, c] { Register(f, static_cast<int>(c)); });
  }
}

template <typename Call>
bool Producer::WithRetries(Call call, std::vector<Attempt>* attempts, int64_t* calls) {
  int registry = RandomInt(0, static_cast<int>(stubs_.size()) - 1);
  absl::Duration backoff = absl::Milliseconds(100);
  for (;;) {
    if (Stopping()) return false;
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + options_.rpc_deadline));
    Attempt attempt;
    attempt.registry = registry;
    attempt.start = absl::Now();
    int wakes = 0;
    const grpc::Status status = call(*stubs_[registry], &context, &wakes);
    attempt.took = absl::Now() - attempt.start;
    attempt.code = status.error_code();
    attempt.wakes = wakes;
    attempts->push_back(attempt);
    {
      absl::MutexLock lock(&mu_);
      ++*calls;
      if (!status.ok()) ++stats_.failures_by_code[status.error_code()];
    }
    if (status.ok()) return true;
    if (Permanent(status.error_code())) return false;
    registry = (registry + 1) % static_cast<int>(stubs_.size());
    absl::SleepFor(RandomDuration(backoff / 2, backoff));  // Client retry backoff.
    backoff = std::min(backoff * 2, absl::Seconds(2));
  }
}

void Producer::Register(int f, int c) {
  const FamilyPlan& plan = families_[f];
  v1::RegisterWakeRequest request;
  request.set_subscriber_url(plan.parent);
  request.set_source_url(plan.children[c].source);
  request.mutable_condition()->mutable_run_finished();
  request.set_one_shot(plan.one_shot);
  v1::RegisterWakeResponse response;
  std::vector<Attempt> attempts;
  int64_t calls = 0;
  const bool ok = WithRetries([&](v1::WakeRegistry::Stub& stub, grpc::ClientContext* context,
                                  int*) { return stub.RegisterWake(context, request, &response); },
                              &attempts, &calls);
  absl::MutexLock lock(&mu_);
  stats_.register_calls += calls;
  FamilyState& state = state_[f];
  if (ok) {
    ++stats_.registrations;
    state.registration_ids[c] = response.registration().id();
  } else {
    ++stats_.abandoned;
  }
  if (--state.pending > 0) return;
  queue_->Post(absl::Now() + RandomDurationLocked(absl::ZeroDuration(), absl::Milliseconds(500)),
               [this, f] { StartRound(f, 1); });
}

absl::Duration Producer::RandomDurationLocked(absl::Duration lo, absl::Duration hi) {
  const int64_t ms = std::uniform_int_distribution<int64_t>(absl::ToInt64Milliseconds(lo),
                                                            absl::ToInt64Milliseconds(hi))(rng_);
  return absl::Milliseconds(ms);
}

void Producer::StartRound(int f, int round) {
  const FamilyPlan& plan = families_[f];
  std::vector<EventRecord*> burst;
  {
    absl::MutexLock lock(&mu_);
    FamilyState& state = state_[f];
    state.round = round;
    for (size_t c = 0; c < plan.children.size(); ++c) {
      if (plan.children[c].runs < round || state.registration_ids[c] == 0) continue;
      EventRecord event;
      // Offsets are taken in order, and a child's next run starts only after
      // its previous one was evaluated: offsets of one source only grow.
      event.key = {state.registration_ids[c], EventOffset(next_event_++)};
      event.parent = plan.parent;
      event.source = plan.children[c].source;
      event_index_[event.key] = events_.size();
      events_.push_back(std::move(event));
      burst.push_back(&events_.back());
    }
    state.pending = static_cast<int>(burst.size());
    if (burst.empty()) {
      FamilyDone();
      return;
    }
  }
  // Every child of the round at once: a burst on the parent stream.
  for (EventRecord* event : burst) {
    queue_->Post(absl::Now(), [this, f, event] { Evaluate(f, event); });
  }
}

void Producer::Evaluate(int f, EventRecord* event) {
  v1::EvaluateRunFinishedRequest request;
  request.set_source_url(event->source);
  request.set_run_key(absl::StrCat("run-", event->key.second));
  // Some runs fail: a failed run wakes the parent all the same.
  request.set_status(RandomInt(0, 9) == 0 ? v1::FAILED : v1::COMPLETED);
  request.set_offset(event->key.second);
  v1::EvaluateRunFinishedResponse response;
  int64_t calls = 0;
  const bool ok = WithRetries(
      [&](v1::WakeRegistry::Stub& stub, grpc::ClientContext* context, int* wakes) {
        response.Clear();
        grpc::Status status = stub.EvaluateRunFinished(context, request, &response);
        *wakes = response.wakes_size();
        return status;
      },
      &event->attempts, &calls);
  absl::MutexLock lock(&mu_);
  stats_.evaluate_calls += calls;
  ++stats_.evaluations;
  if (ok) {
    event->succeeded = true;
    event->returned.assign(response.wakes().begin(), response.wakes().end());
    for (const v1::Wake& wake : event->returned) {
      if (wake.registration_id() != event->key.first ||
          wake.source_event_key() != event->key.second) {
        ++stats_.foreign_wakes;
      }
    }
    if (event->attempts.size() == 1 && event->returned.empty()) ++stats_.no_wake_on_only_call;
  } else {
    ++stats_.abandoned;
  }
  FamilyState& state = state_[f];
  if (--state.pending > 0) return;
  if (state.round < families_[f].rounds()) {
    const int next = state.round + 1;
    queue_->Post(absl::Now() + RandomDurationLocked(absl::Milliseconds(200), absl::Seconds(2)),
                 [this, f, next] { StartRound(f, next); });
  } else {
    FamilyDone();
  }
}

void Producer::FamilyDone() { ++families_done_; }

const EventRecord* Producer::FindEvent(const WakeKey& key) const {
  auto it = event_index_.find(key);
  return it == event_index_.end() ? nullptr : &events_[it->second];
}

ProducerStats Producer::stats() {
  absl::MutexLock lock(&mu_);
  return stats_;
}

std::string Producer::History(const EventRecord& event) {
  std::vector<std::string> parts;
  for (const Attempt& attempt : event.attempts) {
    std::string part =
        absl::StrCat("registry-", std::string(1, static_cast<char>('a' + attempt.registry)), " ",
                     absl::FormatTime("%H:%M:%E3S", attempt.start, absl::LocalTimeZone()), " ",
                     CodeName(attempt.code), " after ",
                     absl::FormatDuration(absl::Trunc(attempt.took, absl::Milliseconds(1))));
    if (attempt.code == 0) absl::StrAppend(&part, " (", attempt.wakes, " wake(s))");
    parts.push_back(std::move(part));
  }
  return absl::StrJoin(parts, ", ");
}

}  // namespace wake::chaos
