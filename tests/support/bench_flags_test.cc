#include "tests/support/bench_flags.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace wake::testing {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

struct Options {
  std::string target = "127.0.0.1:1";
  std::string rpc = "register";
  int callers = 1;
  std::vector<int> rates = {100, 1000};
};

class BenchFlagsTest : public ::testing::Test {
 protected:
  BenchFlagsTest() : flags_("bench", "Measures something.") {
    flags_.String("target", &options_.target, "server address");
    flags_.Choice("rpc", &options_.rpc, {"register", "evaluate"}, "what to call");
    flags_.Int("callers", &options_.callers, "concurrent callers", 1);
    flags_.IntList("rates", &options_.rates, "offered rates per second");
  }

  bool Parse(std::vector<std::string> args) {
    std::vector<char*> argv = {const_cast<char*>("bench")};
    for (std::string& arg : args) argv.push_back(arg.data());
    return flags_.Parse(static_cast<int>(argv.size()), argv.data());
  }

  Options options_;
  BenchFlags flags_;
};

TEST_F(BenchFlagsTest, KeepsTheDefaultsWithoutArguments) {
  ASSERT_TRUE(Parse({}));
  EXPECT_EQ(options_.target, "127.0.0.1:1");
  EXPECT_EQ(options_.callers, 1);
  EXPECT_THAT(options_.rates, ElementsAre(100, 1000));
}

TEST_F(BenchFlagsTest, SetsEveryKindOfFlag) {
  ASSERT_TRUE(Parse({"--target=h:2", "--rpc=evaluate", "--callers=32", "--rates=5,50"}));
  EXPECT_EQ(options_.target, "h:2");
  EXPECT_EQ(options_.rpc, "evaluate");
  EXPECT_EQ(options_.callers, 32);
  EXPECT_THAT(options_.rates, ElementsAre(5, 50));
}

TEST_F(BenchFlagsTest, RejectsUnknownFlagsAndBadValues) {
  EXPECT_FALSE(Parse({"--nope=1"}));
  EXPECT_FALSE(Parse({"--callers=0"}));
  EXPECT_FALSE(Parse({"--callers=x"}));
  EXPECT_FALSE(Parse({"--rpc=delete"}));
  EXPECT_FALSE(Parse({"--rates="}));
  EXPECT_FALSE(Parse({"--rates=10,0"}));
  EXPECT_FALSE(Parse({"callers=2"}));
  EXPECT_EQ(options_.callers, 1);
}

TEST_F(BenchFlagsTest, UsageNamesEveryFlagWithItsDefault) {
  const std::string usage = flags_.Usage();
  EXPECT_THAT(usage, HasSubstr("usage: bench"));
  EXPECT_THAT(usage, HasSubstr("--callers  concurrent callers (>= 1) [default: 1]"));
  EXPECT_THAT(usage, HasSubstr("--rates  offered rates per second"));
  EXPECT_THAT(usage, HasSubstr("[default: 100,1000]"));
  EXPECT_THAT(usage, HasSubstr("(register | evaluate)"));
}

}  // namespace
}  // namespace wake::testing
