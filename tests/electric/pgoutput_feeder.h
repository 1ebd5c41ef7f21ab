// Feeds the scripted Electric from a real PostgreSQL the way Electric's
// replication client is fed: a logical replication slot with the pgoutput
// plugin on a publication of the shaped tables. Each decoded transaction is
// committed to the peer with the LSN and xid of its Begin message
// (final_lsn, the commit record's position; the 32-bit xid, widened) and its
// rows as the text of pgoutput's tuples. Transactions on tables outside the
// publication never reach the peer (PostgreSQL 15 and later skip them), as
// they never reach Electric.
#pragma once

#include <map>
#include <memory>
#include <pqxx/pqxx>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/sync/postgres/pgoutput.h"
#include "tests/electric/scripted_electric_server.h"

namespace wake::testing {

class PgoutputFeeder {
 public:
  // Creates publication `name` for `tables` and a slot of the same name in
  // the database at `url`, then polls the slot every `interval`.
  static absl::StatusOr<std::unique_ptr<PgoutputFeeder>> Start(
      const std::string& url, const std::string& name, const std::vector<std::string>& tables,
      ScriptedElectricServer& server, absl::Duration interval = absl::Milliseconds(2));
  // Stops polling and drops the slot (a database with a slot cannot be dropped).
  ~PgoutputFeeder();

  // Transactions committed to the peer so far, and the last error.
  size_t transactions();
  absl::Status last_error();

 private:
  PgoutputFeeder(std::unique_ptr<pqxx::connection> connection, std::string name,
                 ScriptedElectricServer& server, absl::Duration interval, int64_t xid_reference);
  void Run();
  absl::Status PollOnce();

  std::unique_ptr<pqxx::connection> connection_;
  const std::string name_;
  ScriptedElectricServer& server_;
  const absl::Duration interval_;
  int64_t xid_reference_;
  std::map<uint32_t, sync::pgoutput::Relation> relations_;  // Feeder thread only.
  std::thread thread_;
  absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  size_t transactions_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Status last_error_ ABSL_GUARDED_BY(mu_);
};

}  // namespace wake::testing
