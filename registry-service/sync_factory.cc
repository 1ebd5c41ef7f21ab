#include "registry-service/sync_factory.h"

namespace wake::registry {

absl::StatusOr<sync::SyncSourcePtr> MakeSyncSource(const RegistryConfig& config,
                                                   common::TimeSource& time) {
  (void)time;
  switch (config.sync) {
    case SyncSourceKind::kPostgres:
      return absl::UnimplementedError("--sync=postgres: not built yet");
    case SyncSourceKind::kElectric:
      return absl::UnimplementedError("--sync=electric: not built yet");
  }
  return absl::InvalidArgumentError("--sync: unknown source");
}

}  // namespace wake::registry
