#include "registry-service/sync_factory.h"

#include <memory>

#include "common/postgres.h"
#include "common/sync/electric/electric_sync_source.h"
#include "common/sync/electric/postgres_electric_database.h"
#include "common/sync/postgres/postgres_sync_source.h"

namespace wake::registry {
namespace {

// The Electric source writes read-barrier markers to the database; this owns
// the small pool that serves those writes.
class ElectricWithLsnPool final : public sync::SyncSource {
 public:
  ElectricWithLsnPool(const RegistryConfig& config, common::TimeSource& time)
      : pool_(config.database_url, 2) {
    sync::ElectricSyncConfig electric;
    electric.url = config.electric_url;
    electric.secret = config.electric_secret;
    electric.tenant = config.tenant;
    source_ = std::make_unique<sync::ElectricSyncSource>(electric, time,
                                                         sync::MakePostgresElectricDatabase(pool_));
  }

  absl::Status Start(sync::SyncObserver& observer, absl::Duration timeout) override {
    return source_->Start(observer, timeout);
  }
  absl::Status Barrier(absl::Duration timeout) override { return source_->Barrier(timeout); }
  void Stop() override { source_->Stop(); }

 private:
  common::PgPool pool_;
  std::unique_ptr<sync::ElectricSyncSource> source_;
};

}  // namespace

absl::StatusOr<sync::SyncSourcePtr> MakeSyncSource(const RegistryConfig& config,
                                                   common::TimeSource& time) {
  switch (config.sync) {
    case SyncSourceKind::kPostgres:
      return std::make_unique<sync::PostgresSyncSource>(config.database_url, time);
    case SyncSourceKind::kElectric:
      return std::make_unique<ElectricWithLsnPool>(config, time);
  }
  return absl::InvalidArgumentError("--sync: unknown source");
}

}  // namespace wake::registry
