// Runs a real binary for end-to-end tests: stdout and stderr go to a log file
// under TEST_TMPDIR, waits are on conditions with deadlines, and the process
// is killed (by its PID) and reaped when the handle goes away.
#pragma once

#include <sys/types.h>

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace wake::testing {

// Path of a binary from the test's runfiles, e.g. "registry-service/registry-service".
std::string RunfilePath(const std::string& relative);

// A fresh path under TEST_TMPDIR (or /tmp) with the given prefix.
std::string TempPath(const std::string& prefix);

class Subprocess {
 public:
  // Starts `path` with `args`; `env` entries override (or with an empty
  // optional, remove) variables of this process's environment.
  static absl::StatusOr<std::unique_ptr<Subprocess>> Start(
      const std::string& path, const std::vector<std::string>& args,
      const std::map<std::string, std::optional<std::string>>& env = {});

  ~Subprocess();

  pid_t pid() const { return pid_; }
  const std::string& log_path() const { return log_path_; }
  std::string ReadLog() const;

  // Waits until the log contains `needle`; returns the first line holding it.
  absl::StatusOr<std::string> WaitForLog(const std::string& needle, absl::Duration timeout) const;

  void Signal(int signal);
  // Exit code (or 128+signal) if the process ended within `timeout`.
  std::optional<int> WaitForExit(absl::Duration timeout);
  bool Running();

 private:
  Subprocess(pid_t pid, std::string log_path) : pid_(pid), log_path_(std::move(log_path)) {}

  pid_t pid_;
  std::string log_path_;
  std::optional<int> exit_code_;
};

// The value of `key=` in a logfmt line (unquoted values only).
std::string LogValue(const std::string& line, const std::string& key);

}  // namespace wake::testing
