#include "common/proto_time.h"

#include "gtest/gtest.h"

namespace wake::common {
namespace {

TEST(ProtoTimeTest, SplitsIntoSecondsAndNanos) {
  google::protobuf::Timestamp timestamp;
  ToProto(absl::FromUnixMillis(1700000000123), &timestamp);
  EXPECT_EQ(timestamp.seconds(), 1700000000);
  EXPECT_EQ(timestamp.nanos(), 123000000);
}

TEST(ProtoTimeTest, TimesBeforeTheEpochKeepNanosPositive) {
  google::protobuf::Timestamp timestamp;
  ToProto(absl::UnixEpoch() - absl::Milliseconds(1500), &timestamp);
  EXPECT_EQ(timestamp.seconds(), -2);
  EXPECT_EQ(timestamp.nanos(), 500000000);
}

TEST(ProtoTimeTest, RoundTripsToTheNanosecond) {
  const absl::Time time = absl::FromUnixNanos(1700000000123456789);
  google::protobuf::Timestamp timestamp;
  ToProto(time, &timestamp);
  EXPECT_EQ(FromProto(timestamp), time);
  EXPECT_EQ(FromProto(google::protobuf::Timestamp()), absl::UnixEpoch());
}

TEST(ProtoTimeTest, DurationsKeepOneSign) {
  google::protobuf::Duration duration;
  ToProto(absl::Milliseconds(-1500), &duration);
  EXPECT_EQ(duration.seconds(), -1);
  EXPECT_EQ(duration.nanos(), -500000000);
  EXPECT_EQ(FromProto(duration), absl::Milliseconds(-1500));
  ToProto(absl::Seconds(30) + absl::Nanoseconds(7), &duration);
  EXPECT_EQ(duration.seconds(), 30);
  EXPECT_EQ(duration.nanos(), 7);
  EXPECT_EQ(FromProto(duration), absl::Seconds(30) + absl::Nanoseconds(7));
}

}  // namespace
}  // namespace wake::common
