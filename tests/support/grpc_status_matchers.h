// StatusIs and IsOk for grpc::Status, as for absl::Status:
//   EXPECT_THAT(stub->Call(&context, request, &response),
//               StatusIs(grpc::StatusCode::PERMISSION_DENIED, HasSubstr("tenant")));
#pragma once

#include "common/status_util.h"
#include "grpcpp/support/status.h"
#include "tests/support/status_matchers.h"

namespace wake::testing {

template <>
struct StatusReader<grpc::Status> {
  static absl::Status Get(const grpc::Status& status) { return common::FromGrpcStatus(status); }
};

}  // namespace wake::testing
