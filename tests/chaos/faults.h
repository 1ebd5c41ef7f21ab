// The faults of a chaos run: planned up front from the seed (what, when, for
// how long), then injected by one thread that also supervises the processes
// (one that exits on its own is reported and restarted, as a process
// supervisor would).
#pragma once

#include <atomic>
#include <cstdint>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "tests/chaos/managed_process.h"
#include "tests/chaos/tcp_proxy.h"

namespace wake::chaos {

enum class FaultKind { kKillRegistry, kKillRuntime, kKillRunner, kRestartPostgres, kCutProxy };

struct PlannedFault {
  absl::Duration at;  // After the start of production.
  FaultKind kind = FaultKind::kKillRunner;
  int target = 0;       // Index into the registries, runtimes, runners or proxies.
  absl::Duration down;  // How long it stays killed / cut.
};

struct FaultCounts {
  int registry_kills = 1;
  int runtime_kills = 1;
  int runner_kills = 1;
  int postgres_restarts = 1;
  int proxy_cuts = 1;
};

// Faults at random times in [5%, 80%] of `window` (while families are still
// starting), in time order.
std::vector<PlannedFault> PlanFaults(const FaultCounts& counts, absl::Duration window,
                                     int registries, int runtimes, int runners, uint64_t seed);

// What the run is made of; the injector kills and restarts these.
struct Stack {
  std::vector<ManagedProcess*> registries;
  std::vector<ManagedProcess*> runtimes;
  std::vector<ManagedProcess*> runners;
  std::vector<TcpProxy*> proxies;  // proxies[i]: runtimes[i] -> registries[i]
  // Restarts PostgreSQL (pg_ctl restart -m immediate); run with /bin/sh -c.
  std::string postgres_restart_command;
};

struct FaultEvent {
  absl::Time at;
  std::string what;
  bool problem = false;  // An unexpected exit or a failed restart.
};

class FaultInjector {
 public:
  // `restart_runtimes` false is sabotage for checking the harness: a killed
  // runtime stays down.
  FaultInjector(Stack& stack, std::vector<PlannedFault> plan, absl::Time start,
                bool restart_runtimes);
  ~FaultInjector();

  void Start();
  // Waits until every planned fault was injected (and its target is back).
  bool AwaitPlanDone(absl::Duration timeout);
  // Stops supervising and joins.
  void Stop();

  std::vector<FaultEvent> events();
  // Injected faults, by kind, for the summary.
  int injected(FaultKind kind);

 private:
  void Loop();
  void Inject(const PlannedFault& fault);
  void Supervise();
  void Restart(ManagedProcess& process, absl::Duration timeout);
  void Note(const std::string& what, bool problem = false);
  // Sleeps until `until` (spacing faults out), supervising meanwhile.
  void SuperviseUntil(absl::Time until);

  Stack& stack_;
  const std::vector<PlannedFault> plan_;
  const absl::Time start_;
  const bool restart_runtimes_;
  std::thread thread_;
  std::atomic<bool> stopping_{false};

  absl::Mutex mu_;
  std::vector<FaultEvent> events_ ABSL_GUARDED_BY(mu_);
  std::vector<int> injected_ ABSL_GUARDED_BY(mu_) = std::vector<int>(5, 0);
  bool plan_done_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace wake::chaos
