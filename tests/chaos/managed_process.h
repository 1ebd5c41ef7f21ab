// A process of the chaos run (a registry, a runtime, a runner) that the
// fault injector kills and restarts. Each start gets its own log,
// <log_dir>/<name>.<n>.log; the arguments stay the same across restarts
// (fixed listen ports, so clients and proxies find it again).
#pragma once

#include <sys/types.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "tests/support/subprocess.h"

namespace wake::chaos {

class ManagedProcess {
 public:
  // `ready` is a log line fragment that says it started (e.g. "event=serving").
  ManagedProcess(std::string name, std::string binary, std::vector<std::string> args,
                 std::string ready, std::string log_dir);

  const std::string& name() const { return name_; }

  // Starts it and waits up to `timeout` for `ready` in its log; fails (and
  // kills it) if it exits first or the line does not come.
  absl::Status Start(absl::Duration timeout);
  // SIGKILL, reaped; the pid it had (0 if it was not running).
  pid_t Kill();
  // SIGTERM, SIGKILL after `grace`.
  void Stop(absl::Duration grace);
  // Sends `signal` and returns (Kill or Stop reaps it).
  void Signal(int signal);
  // If it exited on its own since it was started: its exit status (128+signal),
  // and it is now considered down.
  std::optional<int> CheckExited();

  bool running();
  pid_t pid();
  int starts();
  // Log of the current (or last) start.
  std::string log_path();
  // Whether the current start's log contains `needle`.
  bool LogContains(const std::string& needle);

 private:
  const std::string name_;
  const std::string binary_;
  const std::vector<std::string> args_;
  const std::string ready_;
  const std::string log_dir_;

  absl::Mutex mu_;
  std::unique_ptr<testing::Subprocess> process_ ABSL_GUARDED_BY(mu_);
  int starts_ ABSL_GUARDED_BY(mu_) = 0;
  std::string log_path_ ABSL_GUARDED_BY(mu_);
};

}  // namespace wake::chaos
