#include "runtime-service/runner_pool.h"

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/status_matchers.h"

namespace wake::runtime {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using ::wake::testing::StatusIs;

RunnerSpec Spec(const std::string& runner_id, const std::string& session_id,
                const std::string& tenant_id = "acme", int max_in_flight = 16,
                std::vector<std::string> prefixes = {}) {
  RunnerSpec spec;
  spec.runner_id = runner_id;
  spec.session_id = session_id;
  spec.tenant_id = tenant_id;
  spec.max_in_flight = max_in_flight;
  spec.stream_prefixes = std::move(prefixes);
  return spec;
}

StreamKey Acme(const std::string& stream) { return {"acme", stream}; }

TEST(RunnerPoolTest, PicksRoundRobinAmongTheTenantsSessionsThatServeTheStream) {
  RunnerPool pool;
  const SessionId a = pool.Add(Spec("a", "s1"), nullptr);
  const SessionId b = pool.Add(Spec("b", "s1", "acme", 16, {"/b/"}), nullptr);
  const SessionId c = pool.Add(Spec("c", "s1"), nullptr);
  pool.Add(Spec("other", "s1", "beta"), nullptr);

  EXPECT_EQ(pool.Pick(Acme("/b/1")), a);
  EXPECT_EQ(pool.Pick(Acme("/b/2")), b);
  EXPECT_EQ(pool.Pick(Acme("/b/3")), c);
  EXPECT_EQ(pool.Pick(Acme("/x/1")), a);  // b does not serve /x/.
  EXPECT_EQ(pool.Pick(Acme("/x/2")), c);
  EXPECT_EQ(pool.Pick({"gamma", "/x/1"}), 0u);  // No session of that tenant.
}

TEST(RunnerPoolTest, FullSessionsAreSkippedUntilAClaimEnds) {
  RunnerPool pool;
  const SessionId a = pool.Add(Spec("a", "s1", "acme", 1), nullptr);
  EXPECT_EQ(pool.Room(a), 1);
  ASSERT_EQ(pool.Pick(Acme("/p")), a);
  pool.AddClaim(a, Acme("/p"));
  EXPECT_EQ(pool.Room(a), 0);
  EXPECT_EQ(pool.Pick(Acme("/q")), 0u);
  pool.RemoveClaim(a, Acme("/p"));
  EXPECT_EQ(pool.Pick(Acme("/q")), a);
}

TEST(RunnerPoolTest, ReservedRoomCountsUntilTheClaimIsTakenOrGivenBack) {
  RunnerPool pool;
  const SessionId a = pool.Add(Spec("a", "s1", "acme", 2), nullptr);
  EXPECT_THAT(pool.grown(), ::testing::ElementsAre(a));  // Connected: room to fill.
  pool.ClearGrown(a);
  pool.Reserve(a);
  pool.Reserve(a);
  EXPECT_EQ(pool.Room(a), 0);
  EXPECT_EQ(pool.Pick(Acme("/p")), 0u);
  // One claim is taken for it: the reservation becomes a claim.
  pool.Unreserve(a);
  pool.AddClaim(a, Acme("/p"));
  EXPECT_EQ(pool.Room(a), 0);
  // The other found nothing: room again, and the pool says so.
  pool.Unreserve(a);
  EXPECT_EQ(pool.Room(a), 1);
  EXPECT_THAT(pool.grown(), ::testing::ElementsAre(a));
  pool.ClearAllGrown();
  pool.RemoveClaim(a, Acme("/q"));  // Not its claim: nothing changes.
  EXPECT_TRUE(pool.grown().empty());
  pool.RemoveClaim(a, Acme("/p"));
  EXPECT_EQ(pool.Room(a), 2);
  EXPECT_THAT(pool.grown(), ::testing::ElementsAre(a));
  pool.Unreserve(a);  // Nothing reserved: no-op.
  EXPECT_EQ(pool.Room(a), 2);
}

TEST(RunnerPoolTest, RemoveReturnsTheSessionWithItsClaimsAndForgetsIt) {
  RunnerPool pool;
  const SessionId a = pool.Add(Spec("a", "s1"), nullptr);
  const SessionId b = pool.Add(Spec("b", "s1"), nullptr);
  pool.AddClaim(a, Acme("/p"));
  std::optional<RunnerPool::Session> removed = pool.Remove(a);
  ASSERT_TRUE(removed.has_value());
  EXPECT_THAT(removed->claims, ::testing::ElementsAre(Acme("/p")));
  EXPECT_FALSE(pool.Remove(a).has_value());
  EXPECT_EQ(pool.Find(a), nullptr);
  EXPECT_EQ(pool.CurrentOf("a"), 0u);
  EXPECT_EQ(pool.CurrentOf("b"), b);
  EXPECT_EQ(pool.Room(a), 0);
  EXPECT_EQ(pool.Pick(Acme("/p")), b);
  EXPECT_EQ(pool.size(), 1u);
}

TEST(RunnerPoolTest, ASupersededSessionIdIsRefusedWhetherOrNotItWasStillConnected) {
  RunnerPool pool;
  const SessionId s1 = pool.Add(Spec("a", "s1"), nullptr);
  EXPECT_TRUE(pool.CheckNotSuperseded(Spec("a", "s1")).ok());  // Reconnecting is fine...
  pool.Remove(s1);
  EXPECT_TRUE(pool.CheckNotSuperseded(Spec("a", "s1")).ok());
  pool.Add(Spec("a", "s2"), nullptr);  // ...until a later session has connected.
  EXPECT_THAT(pool.CheckNotSuperseded(Spec("a", "s1")),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       AllOf(HasSubstr("session_id"), HasSubstr("\"s1\""),
                             HasSubstr("superseded by a newer session (\"s2\")"))));
  EXPECT_TRUE(pool.CheckNotSuperseded(Spec("a", "s2")).ok());
  EXPECT_TRUE(pool.CheckNotSuperseded(Spec("b", "s1")).ok());  // Per runner.
}

TEST(RunnerPoolTest, SupersededIdsAreKeptPerRunnerUpToTheBound) {
  RunnerPool pool(/*superseded_per_runner=*/3, /*superseded_kept=*/100);
  for (int i = 0; i < 5; ++i) {
    pool.Remove(pool.CurrentOf("a"));
    pool.Add(Spec("a", absl::StrCat("s", i)), nullptr);
  }
  // s0..s3 were superseded; only the last three are remembered.
  EXPECT_TRUE(pool.CheckNotSuperseded(Spec("a", "s0")).ok());
  for (const char* id : {"s1", "s2", "s3"}) {
    EXPECT_FALSE(pool.CheckNotSuperseded(Spec("a", id)).ok()) << id;
  }
  EXPECT_TRUE(pool.CheckNotSuperseded(Spec("a", "s4")).ok());
}

TEST(RunnerPoolTest, TheLeastRecentlyConnectedRunnersAreForgottenBeyondTheOverallBound) {
  RunnerPool pool(/*superseded_per_runner=*/10, /*superseded_kept=*/4);
  for (const char* runner : {"a", "b", "c"}) {
    pool.Add(Spec(runner, "old"), nullptr);
    pool.Remove(pool.CurrentOf(runner));
    pool.Add(Spec(runner, "new"), nullptr);
  }
  for (const char* runner : {"a", "b", "c"}) {
    EXPECT_FALSE(pool.CheckNotSuperseded(Spec(runner, "old")).ok()) << runner;
  }
  // Two more superseded ids of runner c: five in all, so a (connected
  // longest ago) is forgotten, c's own history is kept.
  pool.Remove(pool.CurrentOf("c"));
  pool.Add(Spec("c", "newer"), nullptr);
  pool.Remove(pool.CurrentOf("c"));
  pool.Add(Spec("c", "newest"), nullptr);
  EXPECT_TRUE(pool.CheckNotSuperseded(Spec("a", "old")).ok());
  EXPECT_FALSE(pool.CheckNotSuperseded(Spec("b", "old")).ok());
  for (const char* id : {"old", "new", "newer"}) {
    EXPECT_FALSE(pool.CheckNotSuperseded(Spec("c", id)).ok()) << id;
  }
}

}  // namespace
}  // namespace wake::runtime
