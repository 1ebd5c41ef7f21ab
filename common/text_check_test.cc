#include "common/text_check.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/status_matchers.h"

namespace wake::common {
namespace {

using ::testing::HasSubstr;
using ::wake::testing::IsOk;
using ::wake::testing::StatusIs;

TEST(TextCheckTest, RefusesNulAndEveryControlCharacter) {
  for (int c = 0; c < 0x20; ++c) {
    EXPECT_TRUE(HasControlCharacter(std::string("a") + static_cast<char>(c) + "b")) << c;
  }
  EXPECT_TRUE(HasControlCharacter(std::string("acme\0evil", 9)));
  EXPECT_TRUE(HasControlCharacter("del\x7f"));
  EXPECT_FALSE(HasControlCharacter("tenant-1/stream with spaces"));
  EXPECT_FALSE(HasControlCharacter("caf\xc3\xa9"));  // UTF-8 above 0x7f is fine.
}

TEST(TextCheckTest, NamesTheFieldAndTheProblem) {
  EXPECT_THAT(CheckText("tenant_id", std::string("a\0b", 3), 10, true),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("tenant_id: contains control characters")));
  EXPECT_THAT(CheckText("stream", "", 10, true),
              StatusIs(absl::StatusCode::kInvalidArgument, "stream: required"));
  EXPECT_THAT(CheckText("stream", "", 10, false), IsOk());
  EXPECT_THAT(CheckText("runner_id", "abcdef", 5, true),
              StatusIs(absl::StatusCode::kInvalidArgument, "runner_id: longer than 5 bytes"));
}

}  // namespace
}  // namespace wake::common
