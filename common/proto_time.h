// absl::Time <-> google.protobuf.Timestamp, the one conversion both services
// use for the timestamps in their protos.
#pragma once

#include "absl/time/time.h"
#include "google/protobuf/timestamp.pb.h"

namespace wake::common {

// Whole seconds rounded down and the nanoseconds past them (0..999,999,999),
// as the Timestamp contract wants for times before the epoch too.
void ToProto(absl::Time time, google::protobuf::Timestamp* out);
absl::Time FromProto(const google::protobuf::Timestamp& timestamp);

}  // namespace wake::common
