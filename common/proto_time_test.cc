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

}  // namespace
}  // namespace wake::common
