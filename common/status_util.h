// Conversions between absl::Status (used across module boundaries) and
// grpc::Status (used only in the gRPC adapters). The canonical codes are the
// same numbers in both.
#pragma once

#include <string>

#include "absl/status/status.h"
#include "grpcpp/support/status.h"

namespace wake::common {

// Maps an absl::Status to the grpc::Status with the same code and message.
grpc::Status ToGrpcStatus(const absl::Status& status);

// Maps a grpc::Status back (for clients of our own services).
absl::Status FromGrpcStatus(const grpc::Status& status);

// INVALID_ARGUMENT whose message starts with the offending field's path.
absl::Status InvalidField(const std::string& field, const std::string& problem);

}  // namespace wake::common
