// Conversions between the registry's domain rows and the public protos.
#pragma once

#include "common/proto_time.h"
#include "common/sync/registration.h"
#include "wake/v1/registry.pb.h"

namespace wake::registry {

// Timestamps: common/proto_time.h, here beside the row conversions.
using common::FromProto;
using common::ToProto;

void ToProto(const sync::Registration& row, v1::Registration* out);

// The registration described by a (validated) request; id and created_at unset.
sync::Registration FromRequest(const v1::RegisterWakeRequest& request);

}  // namespace wake::registry
