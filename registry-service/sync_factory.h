// Builds the sync source the configuration asks for (`postgres` or `electric`).
#pragma once

#include "absl/status/statusor.h"
#include "common/sync/sync_source.h"
#include "common/time_source.h"
#include "registry-service/registry_config.h"

namespace wake::registry {

absl::StatusOr<sync::SyncSourcePtr> MakeSyncSource(const RegistryConfig& config,
                                                   common::TimeSource& time);

}  // namespace wake::registry
