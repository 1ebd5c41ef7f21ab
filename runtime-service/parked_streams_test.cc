#include "runtime-service/parked_streams.h"

#include <string>
#include <utility>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace wake::runtime {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;
using ::testing::Pair;
using ::testing::SizeIs;
using ::testing::UnorderedElementsAre;

std::vector<std::string> StreamsOf(const ParkedStreams& parked, const std::string& tenant_id) {
  std::vector<std::string> out;
  const ParkedStreams::Queue* queue = parked.OfTenant(tenant_id);
  if (queue == nullptr) return out;
  for (const auto& [seq, key] : *queue) out.push_back(key.second);
  return out;
}

TEST(ParkedStreamsTest, EachTenantsStreamsComeOldestTriggerFirst) {
  ParkedStreams parked;
  parked.Park(7, {"acme", "/late"});
  parked.Park(2, {"acme", "/early"});
  parked.Park(5, {"beta", "/b"});
  parked.Park(4, {"acme", "/middle"});

  EXPECT_EQ(parked.size(), 4);
  EXPECT_FALSE(parked.empty());
  EXPECT_THAT(StreamsOf(parked, "acme"), ElementsAre("/early", "/middle", "/late"));
  EXPECT_THAT(StreamsOf(parked, "beta"), ElementsAre("/b"));
  EXPECT_EQ(parked.OfTenant("gamma"), nullptr);
}

TEST(ParkedStreamsTest, UnparkingATenantsLastStreamForgetsTheTenant) {
  ParkedStreams parked;
  parked.Park(1, {"acme", "/a"});
  parked.Park(2, {"acme", "/b"});
  parked.Park(3, {"beta", "/c"});

  parked.Unpark(1, {"acme", "/a"});
  EXPECT_EQ(parked.size(), 2);
  EXPECT_THAT(StreamsOf(parked, "acme"), ElementsAre("/b"));

  parked.Unpark(2, {"acme", "/b"});
  EXPECT_EQ(parked.size(), 1);
  EXPECT_EQ(parked.OfTenant("acme"), nullptr);
  EXPECT_THAT(parked.by_tenant(), UnorderedElementsAre(Pair("beta", SizeIs(1))));

  parked.Unpark(3, {"beta", "/c"});
  EXPECT_TRUE(parked.empty());
  EXPECT_THAT(parked.by_tenant(), IsEmpty());
}

TEST(ParkedStreamsTest, ClearForgetsEveryStream) {
  ParkedStreams parked;
  parked.Park(1, {"acme", "/a"});
  parked.Park(2, {"beta", "/b"});

  parked.Clear();
  EXPECT_TRUE(parked.empty());
  EXPECT_EQ(parked.size(), 0);
  EXPECT_THAT(parked.by_tenant(), IsEmpty());
  EXPECT_EQ(parked.OfTenant("acme"), nullptr);
}

}  // namespace
}  // namespace wake::runtime
