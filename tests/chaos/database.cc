#include "tests/chaos/database.h"

#include <pqxx/pqxx>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace wake::chaos {
namespace {

constexpr char kAuditSql[] = R"sql(
CREATE TABLE IF NOT EXISTS chaos_wake_audit (
  seq              bigserial PRIMARY KEY,
  op               text        NOT NULL,
  wake_id          bigint      NOT NULL,
  registration_id  bigint      NOT NULL,
  source_event_key text        NOT NULL,
  stream           text        NOT NULL,
  at               timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE OR REPLACE FUNCTION chaos_wake_audit_row() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN
    INSERT INTO chaos_wake_audit (op, wake_id, registration_id, source_event_key, stream)
    VALUES ('insert', NEW.id, NEW.registration_id, NEW.source_event_key, NEW.stream);
    RETURN NEW;
  END IF;
  INSERT INTO chaos_wake_audit (op, wake_id, registration_id, source_event_key, stream)
  VALUES ('delete', OLD.id, OLD.registration_id, OLD.source_event_key, OLD.stream);
  RETURN OLD;
END
$$;
DROP TRIGGER IF EXISTS chaos_wake_audit ON wakes;
CREATE TRIGGER chaos_wake_audit AFTER INSERT OR DELETE ON wakes
  FOR EACH ROW EXECUTE FUNCTION chaos_wake_audit_row();
)sql";

template <typename Fn>
auto WithConnection(const std::string& url, Fn fn) -> decltype(fn(std::declval<pqxx::work&>())) {
  try {
    pqxx::connection connection(url);
    pqxx::work tx(connection);
    auto result = fn(tx);
    tx.commit();
    return result;
  } catch (const std::exception& e) {
    return absl::UnavailableError(absl::StrCat("database: ", e.what()));
  }
}

}  // namespace

std::string SqlQuote(const std::string& text) {
  std::string out = "'";
  for (char c : text) {
    if (c == '\'') out.push_back('\'');
    out.push_back(c);
  }
  out.push_back('\'');
  return out;
}

absl::Status InstallAudit(const std::string& url) {
  return WithConnection(url, [](pqxx::work& tx) -> absl::Status {
    tx.exec(kAuditSql);
    return absl::OkStatus();
  });
}

absl::StatusOr<std::vector<AuditRow>> ReadAudit(const std::string& url, int64_t after_seq) {
  return WithConnection(url, [after_seq](pqxx::work& tx) -> absl::StatusOr<std::vector<AuditRow>> {
    std::vector<AuditRow> rows;
    const pqxx::result result = tx.exec(absl::StrCat(
        "SELECT seq, op, wake_id, registration_id, source_event_key, "
        "(extract(epoch FROM at) * 1000000)::bigint FROM chaos_wake_audit WHERE seq > ",
        after_seq, " ORDER BY seq"));
    for (const auto& row : result) {
      AuditRow audit;
      audit.seq = row[0].as<int64_t>();
      audit.inserted = row[1].as<std::string>() == "insert";
      audit.wake_id = row[2].as<int64_t>();
      audit.registration_id = row[3].as<int64_t>();
      audit.source_event_key = row[4].as<std::string>();
      audit.at = absl::FromUnixMicros(row[5].as<int64_t>());
      rows.push_back(std::move(audit));
    }
    return rows;
  });
}

absl::StatusOr<std::vector<RemainingWake>> ReadWakes(const std::string& url) {
  return WithConnection(url, [](pqxx::work& tx) -> absl::StatusOr<std::vector<RemainingWake>> {
    std::vector<RemainingWake> rows;
    const pqxx::result result = tx.exec(
        "SELECT id, registration_id, source_event_key, claim_token IS NOT NULL FROM wakes "
        "ORDER BY id");
    for (const auto& row : result) {
      RemainingWake wake;
      wake.id = row[0].as<int64_t>();
      wake.registration_id = row[1].as<int64_t>();
      wake.source_event_key = row[2].as<std::string>();
      wake.claimed = row[3].as<bool>();
      rows.push_back(std::move(wake));
    }
    return rows;
  });
}

absl::StatusOr<std::set<int64_t>> ReadRegistrationIds(const std::string& url) {
  return WithConnection(url, [](pqxx::work& tx) -> absl::StatusOr<std::set<int64_t>> {
    std::set<int64_t> ids;
    for (const auto& row : tx.exec("SELECT id FROM wake_registrations")) {
      ids.insert(row[0].as<int64_t>());
    }
    return ids;
  });
}

absl::StatusOr<std::vector<std::string>> QueryRows(const std::string& url, const std::string& sql) {
  return WithConnection(url, [&sql](pqxx::work& tx) -> absl::StatusOr<std::vector<std::string>> {
    std::vector<std::string> rows;
    for (const auto& row : tx.exec(sql)) {
      std::vector<std::string> cells;
      for (const auto& field : row) cells.push_back(field.is_null() ? "NULL" : field.c_str());
      rows.push_back(absl::StrJoin(cells, "|"));
    }
    return rows;
  });
}

}  // namespace wake::chaos
