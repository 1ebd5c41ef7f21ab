#include "common/status_util.h"

#include "gtest/gtest.h"

namespace wake::common {
namespace {

TEST(StatusUtilTest, EveryCanonicalCodeRoundTrips) {
  for (int code = 0; code <= 16; ++code) {
    const absl::Status status(static_cast<absl::StatusCode>(code), code == 0 ? "" : "boom");
    const grpc::Status grpc_status = ToGrpcStatus(status);
    EXPECT_EQ(static_cast<int>(grpc_status.error_code()), code);
    EXPECT_EQ(grpc_status.error_message(), std::string(status.message()));
    EXPECT_EQ(FromGrpcStatus(grpc_status), status);
  }
}

TEST(StatusUtilTest, NamedCodesMatch) {
  EXPECT_EQ(ToGrpcStatus(absl::InvalidArgumentError("tenant_id: too long")).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(ToGrpcStatus(absl::UnavailableError("db down")).error_code(),
            grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(ToGrpcStatus(absl::AbortedError("retry")).error_code(), grpc::StatusCode::ABORTED);
  EXPECT_EQ(FromGrpcStatus(grpc::Status(grpc::StatusCode::NOT_FOUND, "x")).code(),
            absl::StatusCode::kNotFound);
}

TEST(StatusUtilTest, InvalidFieldNamesTheField) {
  const absl::Status status = InvalidField("condition.change.ops[1]", "unknown op 7");
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(status.message(), "condition.change.ops[1]: unknown op 7");
}

}  // namespace
}  // namespace wake::common
