#include "runtime-service/runner_pool.h"

#include <memory>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace wake::runtime {
namespace {

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

}  // namespace
}  // namespace wake::runtime
