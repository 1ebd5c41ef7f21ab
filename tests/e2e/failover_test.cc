// Crashes end to end: a runner that goes away holding claims, and a runtime
// killed with SIGKILL. Either way every wake it held reaches a runner again
// and is acked; nothing is lost.
#include <signal.h>

#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/proto_time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/e2e/e2e_support.h"
#include "tests/support/service_process.h"
#include "tests/support/status_matchers.h"
#include "tests/support/test_database.h"

namespace wake::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::wake::common::FromProto;

constexpr absl::Duration kWait = absl::Seconds(30);

std::string Parent(int p) { return absl::StrCat("/parents/p", p); }
std::string Child(int p, int c) { return absl::StrCat("/parents/p", p, "/children/c", c); }

class FailoverTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto db = TestDatabase::Create();
    ASSERT_TRUE(db.ok()) << db.status();
    db_ = std::move(*db);
    auto registry = StartRegistry(db_->url());
    ASSERT_TRUE(registry.ok()) << registry.status();
    registry_ = std::move(*registry);
    client_ = std::make_unique<RegistryClient>(registry_.address);
  }

  // Registers `parents` x `children` and returns nothing; FinishAll makes the wakes.
  void RegisterFamilies(int first_parent, int parents, int children) {
    for (int p = first_parent; p < first_parent + parents; ++p) {
      for (int c = 0; c < children; ++c) {
        ASSERT_TRUE(client_->RegisterRunFinished(Parent(p), Child(p, c)).ok());
      }
    }
  }

  // Finishes run `run` of every child; the ids of the wakes made.
  std::set<int64_t> FinishAll(int first_parent, int parents, int children, const std::string& run) {
    std::set<int64_t> ids;
    for (int p = first_parent; p < first_parent + parents; ++p) {
      for (int c = 0; c < children; ++c) {
        absl::StatusOr<std::vector<v1::Wake>> wakes =
            client_->FinishRun(Child(p, c), absl::StrCat(run, "-", p, "-", c));
        EXPECT_TRUE(wakes.ok()) << wakes.status();
        if (!wakes.ok()) continue;
        EXPECT_EQ(wakes->size(), 1u) << Child(p, c);
        for (int64_t id : WakeIds(*wakes)) ids.insert(id);
      }
    }
    return ids;
  }

  std::unique_ptr<RecordingRunner> Runner(const std::string& runtime_address, const std::string& id,
                                          bool ack) {
    RecordingRunnerOptions options;
    options.runner.runner_id = id;
    options.ack = ack;
    auto runner = RecordingRunner::Connect(Connect(runtime_address), options, ledger_);
    EXPECT_TRUE(runner.ok()) << runner.status();
    return runner.ok() ? std::move(*runner) : nullptr;
  }

  std::unique_ptr<TestDatabase> db_;
  ServiceProcess registry_;
  std::unique_ptr<RegistryClient> client_;
  Ledger ledger_;
};

// Runner gone mid-claim (stream closed, no ack): the runtime releases its
// claims at once and another connected runner gets the same wakes, long
// before any lease (30s) could have run out. Catches a runtime that forgets
// a departed runner's claims, or lets its stale claim tokens still ack.
TEST_F(FailoverTest, RunnerGoneMidClaimItsWakesGoToAnotherRunner) {
  // The wakes wait before the runtime starts, so each parent's three come
  // in one claim and the doomed runner ends up holding all of them.
  RegisterFamilies(0, 10, 3);
  const std::set<int64_t> ids = FinishAll(0, 10, 3, "run");
  ASSERT_EQ(ids.size(), 30u);
  auto runtime = StartRuntime(registry_.address, {"--lease=30s"});
  ASSERT_TRUE(runtime.ok()) << runtime.status();
  std::unique_ptr<RecordingRunner> doomed = Runner(runtime->address, "runner-doomed", false);
  ASSERT_NE(doomed, nullptr);
  ASSERT_TRUE(ledger_.AwaitReceivedBy("runner-doomed", ids, kWait));
  const std::vector<Delivery> held = ledger_.Deliveries();

  std::unique_ptr<RecordingRunner> survivor = Runner(runtime->address, "runner-survivor", true);
  ASSERT_NE(survivor, nullptr);
  const absl::Time gone = absl::Now();
  doomed->Disconnect();
  ASSERT_TRUE(ledger_.AwaitAcked(ids, absl::Seconds(20))) << "runtime log:\n"
                                                          << runtime->process->ReadLog();
  EXPECT_LT(absl::Now() - gone, absl::Seconds(20));  // Released, not left to expire.

  // Each wake twice: held by the doomed runner, then acked by the survivor.
  std::map<int64_t, int> to_survivor;
  for (const Delivery& delivery : ledger_.Deliveries()) {
    if (delivery.runner_id == "runner-doomed") {
      EXPECT_FALSE(delivery.ack_attempted);
      continue;
    }
    EXPECT_TRUE(delivery.ack_status.ok()) << delivery.ack_status;
    EXPECT_GE(delivery.received, gone);
    for (const v1::Wake& wake : delivery.claim.wakes()) ++to_survivor[wake.id()];
  }
  EXPECT_EQ(to_survivor.size(), ids.size());
  for (const auto& [id, count] : to_survivor) EXPECT_EQ(count, 1) << "wake " << id;

  // The departed runner's claims are over: acking one now changes nothing.
  absl::StatusOr<v1::AckClaimResponse> stale = doomed->runner().Ack(held.front().claim);
  EXPECT_THAT(stale, StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("claim_token")));
  EXPECT_THAT(ledger_.RedeliveredAfterAck(), IsEmpty());
  EXPECT_EQ(db_->QueryValue("SELECT count(*) FROM wakes"), "0");

  auto health = RuntimeHealth(runtime->address);
  ASSERT_TRUE(health.ok()) << health.status();
  EXPECT_EQ(health->counters().claims_released(), static_cast<int64_t>(held.size()));
}

// The runtime dies (SIGKILL: no release, no goodbye) holding delivered
// claims, and more wakes arrive while it is down. A new runtime process
// delivers all of them once the dead one's leases (2s) expire. Catches a
// registry that never returns expired claims, a runtime that does not catch
// up on pending wakes when it starts, and a claim taken over before its
// lease ran out.
TEST_F(FailoverTest, RuntimeKilledAndRestartedLosesNothing) {
  RegisterFamilies(0, 10, 3);
  const std::set<int64_t> held_ids = FinishAll(0, 10, 3, "run");
  ASSERT_EQ(held_ids.size(), 30u);
  auto first = StartRuntime(registry_.address, {"--lease=2s", "--runtime-id=runtime-first"});
  ASSERT_TRUE(first.ok()) << first.status();
  std::unique_ptr<RecordingRunner> orphan = Runner(first->address, "runner-orphan", false);
  ASSERT_NE(orphan, nullptr);
  ASSERT_TRUE(ledger_.AwaitReceivedBy("runner-orphan", held_ids, kWait));

  first->process->Signal(SIGKILL);
  ASSERT_EQ(first->process->WaitForExit(absl::Seconds(10)), 128 + SIGKILL);
  EXPECT_THAT(orphan->runner().WaitClosed(absl::Seconds(10)),
              StatusIs(absl::StatusCode::kUnavailable, ::testing::_));
  orphan->Disconnect();

  // While no runtime runs: more wakes for the claimed parents, and wakes
  // for parents nobody has claimed yet.
  std::set<int64_t> ids = held_ids;
  for (int64_t id : FinishAll(0, 10, 1, "second")) ids.insert(id);
  RegisterFamilies(10, 5, 2);
  for (int64_t id : FinishAll(10, 5, 2, "run")) ids.insert(id);
  ASSERT_EQ(ids.size(), 50u);
  EXPECT_EQ(db_->QueryValue("SELECT count(*) FROM wakes"), "50");

  auto second = StartRuntime(registry_.address, {"--lease=2s", "--runtime-id=runtime-second"});
  ASSERT_TRUE(second.ok()) << second.status();
  std::unique_ptr<RecordingRunner> heir = Runner(second->address, "runner-heir", true);
  ASSERT_NE(heir, nullptr);
  ASSERT_TRUE(ledger_.AwaitAcked(ids, kWait))
      << "acked " << ledger_.AckCounts().size() << " of " << ids.size() << "; runtime log:\n"
      << second->process->ReadLog();
  heir->Disconnect();

  // No stream was handed to the heir while the orphan's lease on it ran.
  std::map<std::string, absl::Time> orphan_lease;
  for (const Delivery& delivery : ledger_.Deliveries()) {
    if (delivery.runner_id != "runner-orphan") continue;
    absl::Time& until = orphan_lease[delivery.claim.stream()];
    until = std::max(until, FromProto(delivery.claim.lease_expires_at()));
  }
  std::set<int64_t> to_heir;
  for (const Delivery& delivery : ledger_.Deliveries()) {
    if (delivery.runner_id != "runner-heir") continue;
    EXPECT_TRUE(delivery.ack_status.ok()) << delivery.ack_status;
    if (auto it = orphan_lease.find(delivery.claim.stream()); it != orphan_lease.end()) {
      EXPECT_GE(delivery.received, it->second) << delivery.claim.stream();
    }
    for (const v1::Wake& wake : delivery.claim.wakes()) to_heir.insert(wake.id());
  }
  EXPECT_EQ(to_heir, ids);
  EXPECT_THAT(ledger_.RedeliveredAfterAck(), IsEmpty());
  EXPECT_EQ(db_->QueryValue("SELECT count(*) FROM wakes"), "0");
  EXPECT_EQ(db_->QueryValue("SELECT count(*) FROM stream_claims"), "0");
}

}  // namespace
}  // namespace wake::testing
