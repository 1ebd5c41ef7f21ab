// absl::Time <-> google.protobuf.Timestamp and absl::Duration <->
// google.protobuf.Duration: the one conversion both services use for the
// times in their protos.
#pragma once

#include "absl/time/time.h"
#include "google/protobuf/duration.pb.h"
#include "google/protobuf/timestamp.pb.h"

namespace wake::common {

// Whole seconds rounded down and the nanoseconds past them (0..999,999,999),
// as the Timestamp contract wants for times before the epoch too.
void ToProto(absl::Time time, google::protobuf::Timestamp* out);
absl::Time FromProto(const google::protobuf::Timestamp& timestamp);

// Seconds and nanoseconds of the same sign, as the Duration contract wants.
void ToProto(absl::Duration duration, google::protobuf::Duration* out);
absl::Duration FromProto(const google::protobuf::Duration& duration);

}  // namespace wake::common
