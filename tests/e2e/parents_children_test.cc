// The scenario Wakeline exists for, end to end: 100 parents each wait for 20
// children; all 2,000 children finish at once, the evaluations split across
// two registry replicas on one database; one runtime hands the wakes to
// runners that ack them. Every parent must receive every one of its child
// wakes, and none may come back once acked.
//
// What it catches: a trigger dropped or overwritten while a parent's claim
// is in flight (the bug of the system we replace: later children of a busy
// parent were lost), a registration registered on one replica not matched by
// an evaluation on the other, a wake produced twice, a wake redelivered after
// its ack, and a wake announced by the registry a moment before ClaimWakes can
// see it and never looked for again (it found exactly that, about one run in
// three, before the runtime kept looking for announced wakes).
#include <iostream>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/e2e/e2e_support.h"
#include "tests/support/service_process.h"
#include "tests/support/test_database.h"

namespace wake::testing {
namespace {

using ::testing::IsEmpty;

constexpr int kParents = 100;
constexpr int kChildren = 20;
constexpr int kRunners = 4;

std::string Parent(int p) { return absl::StrCat("/parents/p", p); }
std::string Child(int p, int c) { return absl::StrCat("/parents/p", p, "/children/c", c); }

// The lines of `log` about one of `streams`.
std::string LogOf(const std::string& log, const std::set<std::string>& streams) {
  std::string out;
  for (absl::string_view line : absl::StrSplit(log, '\n')) {
    for (const std::string& stream : streams) {
      const std::string field = absl::StrCat("stream=", stream);
      const size_t at = line.find(field);
      if (at == absl::string_view::npos) continue;
      const size_t end = at + field.size();
      if (end == line.size() || line[end] == ' ') absl::StrAppend(&out, line, "\n");
    }
  }
  return out;
}

TEST(ParentsChildrenTest, EveryParentReceivesEveryChildWakeOnceAcrossTwoRegistryReplicas) {
  auto db = TestDatabase::Create();
  ASSERT_TRUE(db.ok()) << db.status();
  auto registry_a = StartRegistry((*db)->url());
  ASSERT_TRUE(registry_a.ok()) << registry_a.status();
  auto registry_b = StartRegistry((*db)->url());
  ASSERT_TRUE(registry_b.ok()) << registry_b.status();
  // Debug logs: a failure shows the triggers and claims of the streams that lost wakes.
  auto runtime = StartRuntime(registry_a->address, {"--runtime-id=runtime-1", "--log-level=debug"});
  ASSERT_TRUE(runtime.ok()) << runtime.status();

  Ledger ledger;
  std::vector<std::unique_ptr<RecordingRunner>> runners;
  for (int r = 0; r < kRunners; ++r) {
    RecordingRunnerOptions options;
    options.runner.runner_id = absl::StrCat("runner-", r);
    // A parent's later children arrive while it holds a claim: they must
    // come together in its next claim, not one claim each.
    options.hold = absl::Milliseconds(5);
    auto runner = RecordingRunner::Connect(Connect(runtime->address), options, ledger);
    ASSERT_TRUE(runner.ok()) << runner.status();
    runners.push_back(std::move(*runner));
  }

  RegistryClient a(registry_a->address);
  RegistryClient b(registry_b->address);
  RegistryClient* replicas[2] = {&a, &b};

  // Each parent registers on one replica...
  absl::Mutex mu;
  std::vector<std::string> errors;
  ParallelFor(kParents * kChildren, 8, [&](int n) {
    const int p = n / kChildren;
    const int c = n % kChildren;
    absl::StatusOr<int64_t> id = replicas[p % 2]->RegisterRunFinished(Parent(p), Child(p, c));
    if (!id.ok()) {
      absl::MutexLock lock(&mu);
      errors.push_back(absl::StrCat("register ", Child(p, c), ": ", id.status().ToString()));
    }
  });
  ASSERT_THAT(errors, IsEmpty());

  // ...and its children finish on both, many at once: consecutive indices
  // are children of one parent, so its wakes pile up while it is claimed.
  std::map<int64_t, v1::Wake> produced;
  ParallelFor(kParents * kChildren, 16, [&](int n) {
    const int p = n / kChildren;
    const int c = n % kChildren;
    absl::StatusOr<std::vector<v1::Wake>> wakes =
        replicas[(p + c) % 2]->FinishRun(Child(p, c), absl::StrCat("run-", p, "-", c));
    absl::MutexLock lock(&mu);
    if (!wakes.ok()) {
      errors.push_back(absl::StrCat("finish ", Child(p, c), ": ", wakes.status().ToString()));
      return;
    }
    if (wakes->size() != 1 || (*wakes)[0].stream() != Parent(p)) {
      errors.push_back(absl::StrCat("finish ", Child(p, c), " produced ", wakes->size(),
                                    " wakes, expected one for ", Parent(p)));
    }
    for (const v1::Wake& wake : *wakes) produced[wake.id()] = wake;
  });
  ASSERT_THAT(errors, IsEmpty());
  ASSERT_EQ(produced.size(), static_cast<size_t>(kParents * kChildren));

  std::set<int64_t> ids;
  for (const auto& [id, wake] : produced) ids.insert(id);
  if (!ledger.AwaitAcked(ids, absl::Seconds(60))) {
    const std::map<int64_t, int> acked = ledger.AckCounts();
    std::vector<int64_t> missing;
    std::set<std::string> missing_streams;
    for (int64_t id : ids) {
      if (acked.count(id) == 0) {
        missing.push_back(id);
        missing_streams.insert(produced[id].stream());
      }
    }
    auto health = RuntimeHealth(runtime->address);
    FAIL() << "acked " << acked.size() << " of " << ids.size() << " wakes; missing "
           << absl::StrJoin(missing, ",") << "\nthe database's view of them:\n"
           << (*db)->QueryRows(absl::StrCat(
                  "SELECT w.id, w.stream, w.claim_token, c.claim_token, c.runner_id, "
                  "c.lease_expires_at FROM wakes w LEFT JOIN stream_claims c USING (tenant_id, "
                  "stream) WHERE w.id IN (",
                  absl::StrJoin(missing, ","), ")"))
           << "\nruntime health: " << (health.ok() ? health->DebugString() : "unavailable")
           << "\nruntime log of those streams:\n"
           << LogOf(runtime->process->ReadLog(), missing_streams);
  }
  for (auto& runner : runners) runner->Disconnect();

  // Every parent got each of its 20 children, in claims of its own stream.
  std::map<std::string, std::set<std::string>> children_seen;
  size_t claims = 0;
  size_t largest_batch = 0;
  for (const Delivery& delivery : ledger.Deliveries()) {
    ++claims;
    largest_batch = std::max<size_t>(largest_batch, delivery.claim.wakes_size());
    EXPECT_TRUE(delivery.ack_status.ok()) << delivery.claim.stream() << ": " << delivery.ack_status;
    for (const v1::Wake& wake : delivery.claim.wakes()) {
      EXPECT_EQ(wake.stream(), delivery.claim.stream());
      ASSERT_EQ(produced.count(wake.id()), 1u) << "unknown wake " << wake.id();
      children_seen[delivery.claim.stream()].insert(wake.message().source());
    }
  }
  for (int p = 0; p < kParents; ++p) {
    std::set<std::string> expected;
    for (int c = 0; c < kChildren; ++c) expected.insert(Child(p, c));
    EXPECT_EQ(children_seen[Parent(p)], expected) << Parent(p);
  }

  // Nothing failed here, so each wake went out exactly once.
  for (const auto& [id, count] : ledger.DeliveryCounts()) {
    EXPECT_EQ(count, 1) << "wake " << id << " of " << produced[id].stream();
  }
  EXPECT_THAT(ledger.RedeliveredAfterAck(), IsEmpty());
  EXPECT_THAT(ledger.OverlappingWindows(), IsEmpty());
  EXPECT_EQ((*db)->QueryValue("SELECT count(*) FROM wakes"), "0");
  EXPECT_EQ((*db)->QueryValue("SELECT count(*) FROM stream_claims"), "0");

  // Claims take every pending wake of a stream at once.
  EXPECT_GT(largest_batch, 1u);
  EXPECT_LT(claims, static_cast<size_t>(kParents * kChildren));

  auto health = RuntimeHealth(runtime->address);
  ASSERT_TRUE(health.ok()) << health.status();
  EXPECT_EQ(health->counters().claims_dispatched(), static_cast<int64_t>(claims));
  EXPECT_EQ(health->counters().claims_acked(), static_cast<int64_t>(claims));
  std::cout << "claims=" << claims << " largest_batch=" << largest_batch
            << " claims_skipped=" << health->counters().claims_skipped() << "\n";
}

}  // namespace
}  // namespace wake::testing
