#include "common/logging.h"

#include "gtest/gtest.h"

namespace wake::common {
namespace {

TEST(LoggingTest, FormatsLogfmtWithQuotingWhereNeeded) {
  EXPECT_EQ(FormatLogLine(LogLevel::kInfo, "registry", "listening",
                          {{"address", "127.0.0.1:5"}, {"port", 5}}),
            "level=info svc=registry event=listening address=127.0.0.1:5 port=5");
  EXPECT_EQ(FormatLogLine(LogLevel::kError, "", "failed", {{"error", "a \"b\"=c\nd"}}),
            "level=error event=failed error=\"a \\\"b\\\"=c\\nd\"");
  EXPECT_EQ(FormatLogLine(LogLevel::kWarn, "x", "e", {{"empty", ""}}),
            "level=warn svc=x event=e empty=\"\"");
}

TEST(LoggingTest, ParsesLevels) {
  LogLevel level = LogLevel::kInfo;
  EXPECT_TRUE(ParseLogLevel("DEBUG", &level));
  EXPECT_EQ(level, LogLevel::kDebug);
  EXPECT_TRUE(ParseLogLevel("warning", &level));
  EXPECT_EQ(level, LogLevel::kWarn);
  EXPECT_FALSE(ParseLogLevel("loud", &level));
}

TEST(LoggingTest, LevelFilters) {
  SetLogLevel(LogLevel::kWarn);
  EXPECT_FALSE(LogEnabled(LogLevel::kInfo));
  EXPECT_TRUE(LogEnabled(LogLevel::kError));
  SetLogLevel(LogLevel::kInfo);
}

}  // namespace
}  // namespace wake::common
