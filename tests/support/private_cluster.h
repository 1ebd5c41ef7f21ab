// A PostgreSQL cluster of a test's own, for tests that must stop and start
// the server (restart survival) without disturbing the shared test cluster.
// It listens on a Unix socket only (no TCP port to pick, so nothing to race
// other processes for), in a directory under TEST_TMPDIR where the server
// can reach it and the socket path fits, else under /tmp. Uses the server
// binaries from WAKE_PG_BIN (exported by scripts/test.sh); as root, runs
// them as the 'postgres' user.
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

  // The postgres database through the cluster's socket directory:
  // postgresql://postgres@/postgres?host=<dir>&port=5432
  std::string url() const;

 private:
  explicit PrivateCluster(std::string root) : root_(std::move(root)) {}
  std::string data_dir() const { return root_ + "/data"; }
  absl::Status Run(const std::string& command) const;

  std::string root_;
};

}  // namespace wake::testing
