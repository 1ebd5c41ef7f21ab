// Claims follow runners, end to end: two runtime replicas follow one
// registry, and runners connect to only one of them at a time. The runtime
// without a runner for a stream must not claim it (on main, it claimed and
// held most streams: 33 of 40 wakes were still undelivered after 20 s), and
// a runner that moves from one runtime to the other gets its stream's wakes
// there, including the ones it held, without waiting for any lease.
//
// What it catches: a runtime that claims without an eligible runner, or
// extends a claim it cannot dispatch; a release that is not announced (the
// other runtime then waits a lease); a wake lost or doubled on the way; and
// rescans that report wakes the change stream did announce (false positives).
#include <iostream>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/e2e/e2e_support.h"
#include "tests/support/service_process.h"
#include "tests/support/test_database.h"
#include "tests/support/wait_until.h"

namespace wake::testing {
namespace {

using ::testing::IsEmpty;

std::string Parent(int p) { return absl::StrCat("/parents/p", p); }
std::string Child(int p, int c) { return absl::StrCat("/parents/p", p, "/children/c", c); }

// Registers `parents` x `children` run_finished waits.
void RegisterFamilies(RegistryClient& client, int parents, int children) {
  absl::Mutex mu;
  std::vector<std::string> errors;
  ParallelFor(parents * children, 8, [&](int n) {
    absl::StatusOr<int64_t> id =
        client.RegisterRunFinished(Parent(n / children), Child(n / children, n % children));
    if (!id.ok()) {
      absl::MutexLock lock(&mu);
      errors.push_back(id.status().ToString());
    }
  });
  ASSERT_THAT(errors, IsEmpty());
}

// Finishes run `run` of every child, many at once; the ids of the wakes.
std::set<int64_t> FinishAll(RegistryClient& client, int parents, int children,
                            const std::string& run) {
  absl::Mutex mu;
  std::set<int64_t> ids;
  std::vector<std::string> errors;
  ParallelFor(parents * children, 16, [&](int n) {
    const int p = n / children;
    const int c = n % children;
    absl::StatusOr<std::vector<v1::Wake>> wakes =
        client.FinishRun(Child(p, c), absl::StrCat(run, "-", p, "-", c));
    absl::MutexLock lock(&mu);
    if (!wakes.ok() || wakes->size() != 1) {
      errors.push_back(absl::StrCat(
          Child(p, c), ": ",
          wakes.ok() ? absl::StrCat(wakes->size(), " wakes") : wakes.status().ToString()));
      return;
    }
    ids.insert((*wakes)[0].id());
  });
  EXPECT_THAT(errors, IsEmpty());
  return ids;
}

// Waits until `done(health)` holds for the runtime at `address`.
bool AwaitHealth(const std::string& address,
                 const std::function<bool(const v1::GetHealthResponse&)>& done,
                 absl::Duration timeout) {
  return WaitUntil(
      [&] {
        absl::StatusOr<v1::GetHealthResponse> health = RuntimeHealth(address);
        return health.ok() && done(*health);
      },
      absl::Now() + timeout);
}

// 1,000 wakes (50 parents x 20 children, all finishing at once), runners on
// one runtime only: the parameter says which.
class RunnersOnOneRuntimeTest : public ::testing::TestWithParam<int> {};

TEST_P(RunnersOnOneRuntimeTest, EveryWakeIsAckedOnceWithinSecondsOfTheLastEvaluation) {
  constexpr int kParents = 50;
  constexpr int kChildren = 20;
  auto db = TestDatabase::Create();
  ASSERT_TRUE(db.ok()) << db.status();
  auto registry = StartRegistry((*db)->url());
  ASSERT_TRUE(registry.ok()) << registry.status();
  // The lease of the measurement on main (5s); frequent rescans, which must
  // find nothing the change stream did not announce.
  std::vector<ServiceProcess> runtimes;
  for (int i = 0; i < 2; ++i) {
    auto runtime = StartRuntime(registry->address, {absl::StrCat("--runtime-id=runtime-", i),
                                                    "--lease=5s", "--rescan-interval=1s"});
    ASSERT_TRUE(runtime.ok()) << runtime.status();
    runtimes.push_back(std::move(*runtime));
  }
  const ServiceProcess& with = runtimes[GetParam()];
  const ServiceProcess& without = runtimes[1 - GetParam()];

  Ledger ledger;
  std::vector<std::unique_ptr<RecordingRunner>> runners;
  for (int r = 0; r < 4; ++r) {
    RecordingRunnerOptions options;
    options.runner.runner_id = absl::StrCat("runner-", r);
    auto runner = RecordingRunner::Connect(Connect(with.address), options, ledger);
    ASSERT_TRUE(runner.ok()) << runner.status();
    runners.push_back(std::move(*runner));
  }

  RegistryClient client(registry->address);
  RegisterFamilies(client, kParents, kChildren);
  const absl::Time start = absl::Now();
  const std::set<int64_t> ids = FinishAll(client, kParents, kChildren, "run");
  ASSERT_EQ(ids.size(), static_cast<size_t>(kParents * kChildren));
  const absl::Time last_evaluation = absl::Now();
  const bool all_acked = ledger.AwaitAcked(ids, absl::Seconds(5));
  const absl::Duration after_last = absl::Now() - last_evaluation;
  ASSERT_TRUE(all_acked) << "acked " << ledger.AckCounts().size() << " of " << ids.size()
                         << " within 5s of the last evaluation\nruntime with runners:\n"
                         << with.process->ReadLog() << "\nruntime without:\n"
                         << without.process->ReadLog();
  for (auto& runner : runners) runner->Disconnect();

  // Exactly once: one delivery and one ack per wake.
  for (const auto& [id, count] : ledger.DeliveryCounts()) EXPECT_EQ(count, 1) << "wake " << id;
  const std::map<int64_t, int> acks = ledger.AckCounts();
  EXPECT_EQ(acks.size(), ids.size());
  for (const auto& [id, count] : acks) EXPECT_EQ(count, 1) << "wake " << id;
  EXPECT_THAT(ledger.RedeliveredAfterAck(), IsEmpty());
  EXPECT_THAT(ledger.OverlappingWindows(), IsEmpty());
  EXPECT_EQ((*db)->QueryValue("SELECT count(*) FROM wakes"), "0");

  // The runtime without runners heard of every wake and claimed none.
  auto idle = RuntimeHealth(without.address);
  ASSERT_TRUE(idle.ok()) << idle.status();
  EXPECT_GE(idle->counters().events_received(), static_cast<int64_t>(ids.size()));
  EXPECT_EQ(idle->counters().claims_succeeded(), 0);
  EXPECT_EQ(idle->counters().claims_skipped(), 0);
  EXPECT_EQ(idle->counters().claims_dispatched(), 0);
  EXPECT_EQ(idle->active_claims(), 0);
  // Its parked streams are forgotten by a rescan once nothing is pending.
  EXPECT_TRUE(AwaitHealth(
      without.address, [](const v1::GetHealthResponse& h) { return h.waiting_for_runner() == 0; },
      absl::Seconds(10)));

  // Rescans ran on both, after all the traffic, and found nothing.
  for (const ServiceProcess* runtime : {&with, &without}) {
    const int64_t before = RuntimeHealth(runtime->address)->counters().rescans();
    EXPECT_TRUE(AwaitHealth(
        runtime->address,
        [before](const v1::GetHealthResponse& h) { return h.counters().rescans() > before; },
        absl::Seconds(10)));
    auto health = RuntimeHealth(runtime->address);
    ASSERT_TRUE(health.ok()) << health.status();
    EXPECT_EQ(health->counters().rescan_found(), 0) << runtime->process->ReadLog();
  }
  auto busy = RuntimeHealth(with.address);
  ASSERT_TRUE(busy.ok()) << busy.status();
  EXPECT_EQ(busy->counters().claims_dispatched(), static_cast<int64_t>(ledger.Deliveries().size()));
  std::cout << "runners on runtime " << GetParam() << ": evaluations took "
            << absl::FormatDuration(last_evaluation - start) << ", last ack "
            << absl::FormatDuration(after_last) << " after the last evaluation, "
            << ledger.Deliveries().size() << " claims\n";
}

INSTANTIATE_TEST_SUITE_P(Arrangements, RunnersOnOneRuntimeTest, ::testing::Values(0, 1),
                         [](const ::testing::TestParamInfo<int>& info) {
                           return info.param == 0 ? "RunnersOnTheFirst" : "RunnersOnTheSecond";
                         });

// A runner holding claims on runtime A goes away without acking and comes
// back on runtime B: every wake of its streams, the held ones included and
// those that arrived meanwhile, reaches it there, once, long before a lease
// (30s) could have run out.
TEST(RunnerMovingBetweenRuntimesTest, ItsStreamsWakesFollowItToTheOtherRuntime) {
  constexpr int kParents = 10;
  constexpr int kChildren = 3;
  auto db = TestDatabase::Create();
  ASSERT_TRUE(db.ok()) << db.status();
  auto registry = StartRegistry((*db)->url());
  ASSERT_TRUE(registry.ok()) << registry.status();
  auto runtime_a = StartRuntime(registry->address, {"--runtime-id=runtime-a", "--lease=30s"});
  ASSERT_TRUE(runtime_a.ok()) << runtime_a.status();
  auto runtime_b = StartRuntime(registry->address, {"--runtime-id=runtime-b", "--lease=30s"});
  ASSERT_TRUE(runtime_b.ok()) << runtime_b.status();

  RegistryClient client(registry->address);
  RegisterFamilies(client, kParents, kChildren);
  Ledger at_a;
  RecordingRunnerOptions holding;
  holding.runner.runner_id = "runner-moving";
  holding.runner.session_id = "session-1";
  holding.ack = false;
  auto first = RecordingRunner::Connect(Connect(runtime_a->address), holding, at_a);
  ASSERT_TRUE(first.ok()) << first.status();

  std::set<int64_t> ids = FinishAll(client, kParents, kChildren, "first");
  ASSERT_EQ(ids.size(), static_cast<size_t>(kParents * kChildren));
  // One claim per parent reaches the runner (a child that finished after
  // its parent's claim was taken waits behind it).
  ASSERT_TRUE(at_a.AwaitDeliveries(kParents, absl::Seconds(10))) << runtime_a->process->ReadLog();
  // More children finish while the runner holds its parents' claims.
  for (int64_t id : FinishAll(client, kParents, kChildren, "second")) ids.insert(id);
  ASSERT_EQ(ids.size(), static_cast<size_t>(2 * kParents * kChildren));

  const absl::Time moved = absl::Now();
  (*first)->Disconnect();
  Ledger at_b;
  RecordingRunnerOptions acking;
  acking.runner.runner_id = "runner-moving";
  acking.runner.session_id = "session-2";
  auto second = RecordingRunner::Connect(Connect(runtime_b->address), acking, at_b);
  ASSERT_TRUE(second.ok()) << second.status();
  ASSERT_TRUE(at_b.AwaitAcked(ids, absl::Seconds(10)))
      << "acked " << at_b.AckCounts().size() << " of " << ids.size() << "\nruntime a:\n"
      << runtime_a->process->ReadLog() << "\nruntime b:\n"
      << runtime_b->process->ReadLog();
  const absl::Duration handover = absl::Now() - moved;
  EXPECT_LT(handover, absl::Seconds(5));  // Released and announced, no lease waited for.
  (*second)->Disconnect();

  // Runtime A delivered each stream once, and nothing was acked there.
  std::set<std::string> held_streams;
  for (const Delivery& delivery : at_a.Deliveries()) {
    EXPECT_FALSE(delivery.ack_attempted);
    EXPECT_TRUE(held_streams.insert(delivery.claim.stream()).second) << delivery.claim.stream();
  }
  EXPECT_EQ(held_streams.size(), static_cast<size_t>(kParents));
  // Runtime B delivered every wake exactly once, and each was acked once.
  for (const auto& [id, count] : at_b.DeliveryCounts()) EXPECT_EQ(count, 1) << "wake " << id;
  const std::map<int64_t, int> acks = at_b.AckCounts();
  EXPECT_EQ(acks.size(), ids.size());
  for (const auto& [id, count] : acks) EXPECT_EQ(count, 1) << "wake " << id;
  EXPECT_THAT(at_b.OverlappingWindows(), IsEmpty());
  EXPECT_EQ((*db)->QueryValue("SELECT count(*) FROM wakes"), "0");
  EXPECT_EQ((*db)->QueryValue("SELECT count(*) FROM stream_claims"), "0");

  auto health_a = RuntimeHealth(runtime_a->address);
  ASSERT_TRUE(health_a.ok()) << health_a.status();
  EXPECT_EQ(health_a->counters().claims_dispatched(), kParents);
  EXPECT_EQ(health_a->counters().claims_released(), kParents);
  EXPECT_EQ(health_a->active_claims(), 0);
  std::cout << "handover to runtime b took " << absl::FormatDuration(handover) << ", "
            << at_b.Deliveries().size() << " claims there\n";
}

}  // namespace
}  // namespace wake::testing
