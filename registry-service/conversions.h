// Conversions between the registry's domain rows and the public protos.
#pragma once

#include "absl/time/time.h"
#include "common/sync/registration.h"
#include "google/protobuf/timestamp.pb.h"
#include "wake/v1/registry.pb.h"

namespace wake::registry {

void ToProto(const sync::Registration& row, v1::Registration* out);
void ToProto(absl::Time time, google::protobuf::Timestamp* out);
absl::Time FromProto(const google::protobuf::Timestamp& timestamp);

// The registration described by a (validated) request; id and created_at unset.
sync::Registration FromRequest(const v1::RegisterWakeRequest& request);

}  // namespace wake::registry
