// gMock matchers for absl::Status / StatusOr (abseil 20220623 has none), and
// for grpc::Status with tests/support/grpc_status_matchers.h:
//   EXPECT_THAT(s, StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("tenant_id")));
//   EXPECT_THAT(v, IsOkAndHolds(42));
// Never assert only "not OK": name the code and what the message must say.
#pragma once

#include <ostream>
#include <string>
#include <type_traits>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "gmock/gmock.h"

namespace wake::testing {

// How the matchers read a status out of what they are given; other status
// types add a specialization (grpc_status_matchers.h).
template <typename T>
struct StatusReader;

template <>
struct StatusReader<absl::Status> {
  static absl::Status Get(const absl::Status& status) { return status; }
};

template <typename T>
struct StatusReader<absl::StatusOr<T>> {
  static absl::Status Get(const absl::StatusOr<T>& status_or) { return status_or.status(); }
};

template <typename T>
absl::Status GetStatus(const T& value) {
  return StatusReader<std::decay_t<T>>::Get(value);
}

// Codes are compared by number: absl::StatusCode and grpc::StatusCode agree.
template <typename Code>
std::string CodeName(Code code) {
  return absl::StatusCodeToString(static_cast<absl::StatusCode>(code));
}

MATCHER_P2(StatusIs, code, message_matcher,
           ::wake::testing::CodeName(code) + " with message " +
               ::testing::DescribeMatcher<std::string>(message_matcher)) {
  const absl::Status status = ::wake::testing::GetStatus(arg);
  *result_listener << "status is " << status;
  return static_cast<int>(status.code()) == static_cast<int>(code) &&
         ::testing::Matches(message_matcher)(std::string(status.message()));
}

MATCHER(IsOk, "is OK") {
  const absl::Status status = ::wake::testing::GetStatus(arg);
  *result_listener << "status is " << status;
  return status.ok();
}

MATCHER_P(IsOkAndHolds, value_matcher, "is OK and holds a matching value") {
  if (!arg.ok()) {
    *result_listener << "status is " << arg.status();
    return false;
  }
  return ::testing::ExplainMatchResult(value_matcher, *arg, result_listener);
}

}  // namespace wake::testing
