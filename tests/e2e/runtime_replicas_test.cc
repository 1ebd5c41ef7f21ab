// Two runtime replicas follow one registry while children keep finishing;
// runners connect to one of them only. At no moment may two claims of one
// stream be live: seen from the runners (each claim's window from its arrival
// to its ack lies inside the claim's life, so overlapping windows prove
// overlapping claims) and in the database (every claimed wake belongs to its
// stream's one live claim row), sampled throughout. Claims follow runners, so
// the replica without runners must not claim anything: it hears of every
// wake and leaves them to the other.
//
// What it catches: claims taken over while still leased, a runtime that
// dispatches a claim it lost or never won (ALREADY_CLAIMED), a runtime that
// claims streams it has no runner for (keeping them from the one that has),
// wakes of one stream split between two claims, and lost or doubled wakes.
#include <atomic>
#include <iostream>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/e2e/e2e_support.h"
#include "tests/support/service_process.h"
#include "tests/support/test_database.h"

namespace wake::testing {
namespace {

using ::testing::IsEmpty;

constexpr int kParents = 20;
constexpr int kChildren = 5;
constexpr int kRunsPerChild = 10;

std::string Parent(int p) { return absl::StrCat("/parents/p", p); }
std::string Child(int p, int c) { return absl::StrCat("/parents/p", p, "/children/c", c); }

// Claimed wakes whose stream's live claim row holds another token (or none):
// two claims on one stream, or wakes left behind by an ended claim.
constexpr char kStrayClaimedWakes[] =
    "SELECT count(*) FROM wakes w LEFT JOIN stream_claims c "
    "ON c.tenant_id = w.tenant_id AND c.stream = w.stream "
    "WHERE w.claim_token IS NOT NULL AND c.claim_token IS DISTINCT FROM w.claim_token";

TEST(RuntimeReplicasTest, TwoRuntimesNeverHoldOneStreamAtOnce) {
  auto db = TestDatabase::Create();
  ASSERT_TRUE(db.ok()) << db.status();
  auto registry = StartRegistry((*db)->url());
  ASSERT_TRUE(registry.ok()) << registry.status();
  // The lease of the measurement on main, where runtime b claimed streams
  // it had no runner for and a were left waiting; the runners' claims last
  // milliseconds.
  auto runtime_a = StartRuntime(registry->address, {"--runtime-id=runtime-a", "--lease=5s"});
  ASSERT_TRUE(runtime_a.ok()) << runtime_a.status();
  auto runtime_b = StartRuntime(registry->address, {"--runtime-id=runtime-b", "--lease=5s"});
  ASSERT_TRUE(runtime_b.ok()) << runtime_b.status();

  Ledger ledger;
  std::vector<std::unique_ptr<RecordingRunner>> runners;
  for (int r = 0; r < 4; ++r) {
    RecordingRunnerOptions options;
    options.runner.runner_id = absl::StrCat("runner-a", r);
    options.hold = absl::Milliseconds(2);
    auto runner = RecordingRunner::Connect(Connect(runtime_a->address), options, ledger);
    ASSERT_TRUE(runner.ok()) << runner.status();
    runners.push_back(std::move(*runner));
  }

  RegistryClient client(registry->address);
  for (int p = 0; p < kParents; ++p) {
    for (int c = 0; c < kChildren; ++c) {
      ASSERT_TRUE(client.RegisterRunFinished(Parent(p), Child(p, c)).ok());
    }
  }

  // Samples the database's view until the runners are done.
  std::atomic<bool> done{false};
  std::atomic<int> samples{0};
  std::vector<std::string> stray;
  std::thread monitor([&] {
    while (!done.load()) {
      const std::string count = (*db)->QueryValue(kStrayClaimedWakes);
      ++samples;
      if (count != "0") {
        stray.push_back(absl::StrCat(count, " stray claimed wakes:\n",
                                     (*db)->QueryRows("SELECT w.stream, w.claim_token, "
                                                      "c.claim_token, c.runner_id FROM wakes w "
                                                      "LEFT JOIN stream_claims c USING "
                                                      "(tenant_id, stream) WHERE w.claim_token "
                                                      "IS NOT NULL")));
      }
      absl::SleepFor(absl::Milliseconds(5));  // Sampling rate, not synchronisation.
    }
  });

  absl::Mutex mu;
  std::set<int64_t> ids;
  std::vector<std::string> errors;
  ParallelFor(kParents * kChildren * kRunsPerChild, 8, [&](int n) {
    const int run = n / (kParents * kChildren);
    const int p = (n / kChildren) % kParents;
    const int c = n % kChildren;
    absl::StatusOr<std::vector<v1::Wake>> wakes =
        client.FinishRun(Child(p, c), absl::StrCat("run-", run));
    absl::MutexLock lock(&mu);
    if (!wakes.ok() || wakes->size() != 1) {
      errors.push_back(absl::StrCat(
          Child(p, c), " run ", run, ": ",
          wakes.ok() ? absl::StrCat(wakes->size(), " wakes") : wakes.status().ToString()));
      return;
    }
    ids.insert((*wakes)[0].id());
  });
  ASSERT_THAT(errors, IsEmpty());
  ASSERT_EQ(ids.size(), static_cast<size_t>(kParents * kChildren * kRunsPerChild));

  const bool all_acked = ledger.AwaitAcked(ids, absl::Seconds(10));
  done.store(true);
  monitor.join();
  ASSERT_TRUE(all_acked) << "acked " << ledger.AckCounts().size() << " of " << ids.size();
  for (auto& runner : runners) runner->Disconnect();

  EXPECT_THAT(ledger.OverlappingWindows(), IsEmpty());
  EXPECT_THAT(stray, IsEmpty());
  EXPECT_GT(samples.load(), 0);
  EXPECT_THAT(ledger.RedeliveredAfterAck(), IsEmpty());
  for (const auto& [id, count] : ledger.AckCounts()) EXPECT_EQ(count, 1) << "wake " << id;

  for (const Delivery& delivery : ledger.Deliveries()) {
    EXPECT_TRUE(delivery.ack_status.ok()) << delivery.ack_status;
  }
  // Runtime a, with the runners, delivered every claim; runtime b heard of
  // every wake (both follow the registry) and claimed none.
  auto health_a = RuntimeHealth(runtime_a->address);
  auto health_b = RuntimeHealth(runtime_b->address);
  ASSERT_TRUE(health_a.ok() && health_b.ok());
  EXPECT_EQ(health_a->counters().claims_dispatched(),
            static_cast<int64_t>(ledger.Deliveries().size()));
  EXPECT_GE(health_b->counters().events_received(), static_cast<int64_t>(ids.size()));
  EXPECT_EQ(health_b->counters().claims_succeeded(), 0);
  EXPECT_EQ(health_b->counters().claims_skipped(), 0);
  EXPECT_EQ(health_b->counters().claims_failed(), 0);
  EXPECT_EQ((*db)->QueryValue("SELECT count(*) FROM wakes"), "0");
  std::cout << "claims=" << ledger.Deliveries().size()
            << " skipped a=" << health_a->counters().claims_skipped()
            << " b events=" << health_b->counters().events_received()
            << " db samples=" << samples.load() << "\n";
}

}  // namespace
}  // namespace wake::testing
