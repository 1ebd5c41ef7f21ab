#include "registry-service/store_gauges.h"

#include <cmath>
#include <pqxx/pqxx>

#include "common/logging.h"
#include "common/postgres.h"

namespace wake::registry {

StoreGauges::StoreGauges(std::string database_url, common::TimeSource& time, absl::Duration max_age)
    : url_(std::move(database_url)),
      time_(time),
      max_age_(max_age),
      values_{std::nan(""), std::nan(""), std::nan("")} {}

StoreGauges::~StoreGauges() = default;

StoreGauges::Values StoreGauges::Read() {
  absl::MutexLock lock(&mu_);
  const common::MonotonicTime now = time_.MonotonicNow();
  if (read_at_.has_value() && now - *read_at_ < common::ToChrono(max_age_)) return values_;
  read_at_ = now;
  try {
    if (connection_ == nullptr || !connection_->is_open()) {
      connection_ = std::make_unique<pqxx::connection>(url_);
      pqxx::nontransaction(*connection_).exec0("SET statement_timeout = '1s'");
    }
    pqxx::nontransaction tx(*connection_);
    const pqxx::row row = tx.exec1(
        "SELECT (SELECT count(*) FROM debounce_windows), "
        "(SELECT count(*) FROM stream_claims WHERE lease_expires_at > now()), "
        "(SELECT count(*) FROM wakes)");
    values_ = Values{row[0].as<double>(), row[1].as<double>(), row[2].as<double>()};
  } catch (const std::exception& e) {
    connection_.reset();
    common::LogWarn("store_gauges_failed",
                    {{"error", std::string(common::StatusFromException(e).message())}});
  }
  return values_;
}

}  // namespace wake::registry
