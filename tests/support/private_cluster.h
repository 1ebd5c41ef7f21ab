// A PostgreSQL cluster of a test's own, for tests that must stop and start
// the server (restart survival) without disturbing the shared test cluster.
// Uses the server binaries from WAKE_PG_BIN (exported by scripts/test.sh);
// as root, runs them as the 'postgres' user.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace wake::testing {

class PrivateCluster {
 public:
  static absl::StatusOr<std::unique_ptr<PrivateCluster>> Create();
  ~PrivateCluster();

  absl::Status Start();
  // Fast shutdown (disconnects every client).
  absl::Status Stop();

  // postgresql://postgres@127.0.0.1:<port>/postgres
  std::string url() const;
  // The same database through the cluster's Unix socket (in its data directory).
  std::string socket_url() const;

 private:
  PrivateCluster(std::string dir, int port) : dir_(std::move(dir)), port_(port) {}
  absl::Status Run(const std::string& command) const;

  std::string dir_;
  int port_;
};

}  // namespace wake::testing
