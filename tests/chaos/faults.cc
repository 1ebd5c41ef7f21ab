#include "tests/chaos/faults.h"

#include <sys/wait.h>

#include <algorithm>
#include <cstdlib>
#include <random>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"

namespace wake::chaos {
namespace {

std::string Secs(absl::Duration d) { return absl::StrFormat("%.1fs", absl::ToDoubleSeconds(d)); }

}  // namespace

std::vector<PlannedFault> PlanFaults(const FaultCounts& counts, absl::Duration window,
                                     int registries, int runtimes, int runners, uint64_t seed) {
  std::mt19937_64 rng(seed ^ 0x5eedfa17ULL);
  auto ms = [&rng](int lo, int hi) {
    return absl::Milliseconds(std::uniform_int_distribution<int>(lo, hi)(rng));
  };
  auto pick = [&rng](int n) { return std::uniform_int_distribution<int>(0, n - 1)(rng); };
  std::vector<PlannedFault> plan;
  auto add = [&](FaultKind kind, int count, int targets, int down_lo, int down_hi) {
    for (int i = 0; i < count; ++i) {
      PlannedFault fault;
      fault.kind = kind;
      fault.target = targets > 0 ? pick(targets) : 0;
      fault.down = ms(down_lo, down_hi);
      plan.push_back(fault);
    }
  };
  add(FaultKind::kKillRegistry, counts.registry_kills, registries, 500, 3000);
  add(FaultKind::kKillRuntime, counts.runtime_kills, runtimes, 500, 3000);
  add(FaultKind::kKillRunner, counts.runner_kills, runners, 200, 2000);
  add(FaultKind::kRestartPostgres, counts.postgres_restarts, 0, 0, 0);
  add(FaultKind::kCutProxy, counts.proxy_cuts, runtimes, 2000, 5000);
  const int64_t lo = absl::ToInt64Milliseconds(window) * 5 / 100;
  const int64_t hi = absl::ToInt64Milliseconds(window) * 80 / 100;
  for (PlannedFault& fault : plan) {
    fault.at = absl::Milliseconds(std::uniform_int_distribution<int64_t>(lo, hi)(rng));
  }
  std::sort(plan.begin(), plan.end(),
            [](const PlannedFault& a, const PlannedFault& b) { return a.at < b.at; });
  return plan;
}

FaultInjector::FaultInjector(Stack& stack, std::vector<PlannedFault> plan, absl::Time start,
                             bool restart_runtimes)
    : stack_(stack), plan_(std::move(plan)), start_(start), restart_runtimes_(restart_runtimes) {}

FaultInjector::~FaultInjector() { Stop(); }

void FaultInjector::Start() {
  thread_ = std::thread([this] { Loop(); });
}

void FaultInjector::Stop() {
  stopping_.store(true);
  if (thread_.joinable()) thread_.join();
}

bool FaultInjector::AwaitPlanDone(absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  return mu_.AwaitWithTimeout(absl::Condition(&plan_done_), timeout);
}

std::vector<FaultEvent> FaultInjector::events() {
  absl::MutexLock lock(&mu_);
  return events_;
}

int FaultInjector::injected(FaultKind kind) {
  absl::MutexLock lock(&mu_);
  return injected_[static_cast<int>(kind)];
}

void FaultInjector::Note(const std::string& what, bool problem) {
  absl::MutexLock lock(&mu_);
  events_.push_back({absl::Now(), what, problem});
}

void FaultInjector::Loop() {
  for (const PlannedFault& fault : plan_) {
    SuperviseUntil(start_ + fault.at);
    if (stopping_.load()) return;
    Inject(fault);
    absl::MutexLock lock(&mu_);
    ++injected_[static_cast<int>(fault.kind)];
  }
  {
    absl::MutexLock lock(&mu_);
    plan_done_ = true;
  }
  SuperviseUntil(absl::InfiniteFuture());
}

void FaultInjector::SuperviseUntil(absl::Time until) {
  while (!stopping_.load() && absl::Now() < until) {
    Supervise();
    // Spacing faults out and polling for exits; not a synchronisation wait.
    absl::SleepFor(std::min(until - absl::Now(), absl::Milliseconds(200)));
  }
}

void FaultInjector::Supervise() {
  for (auto* group : {&stack_.registries, &stack_.runtimes, &stack_.runners}) {
    for (ManagedProcess* process : *group) {
      std::optional<int> code = process->CheckExited();
      if (!code.has_value()) continue;
      Note(absl::StrCat(process->name(), " exited on its own (status ", *code, "; log ",
                        process->log_path(), "); restarting it"),
           /*problem=*/true);
      Restart(*process, absl::Seconds(90));
    }
  }
}

void FaultInjector::Restart(ManagedProcess& process, absl::Duration timeout) {
  for (int attempt = 1; attempt <= 3 && !stopping_.load(); ++attempt) {
    const absl::Time began = absl::Now();
    absl::Status started = process.Start(timeout);
    if (started.ok()) {
      Note(absl::StrCat(process.name(), " restarted (pid ", process.pid(), "), ready after ",
                        Secs(absl::Now() - began)));
      return;
    }
    Note(absl::StrCat(process.name(), " restart failed: ", started.message()), /*problem=*/true);
  }
}

void FaultInjector::Inject(const PlannedFault& fault) {
  auto kill_and_restart = [&](ManagedProcess& process, bool restart, absl::Duration timeout) {
    const pid_t pid = process.Kill();
    Note(absl::StrCat("SIGKILL ", process.name(), " (pid ", pid, "), down for ", Secs(fault.down)));
    SuperviseUntil(absl::Now() + fault.down);
    if (!restart) {
      Note(absl::StrCat(process.name(), " left down (sabotage: --no-runtime-restart)"));
      return;
    }
    Restart(process, timeout);
  };
  switch (fault.kind) {
    case FaultKind::kKillRegistry:
      kill_and_restart(*stack_.registries[fault.target], true, absl::Seconds(90));
      break;
    case FaultKind::kKillRuntime: {
      ManagedProcess& runtime = *stack_.runtimes[fault.target];
      if (!restart_runtimes_ && !runtime.running()) {
        // Already left down: take the next one that runs.
        for (ManagedProcess* other : stack_.runtimes) {
          if (other->running()) {
            kill_and_restart(*other, false, absl::Seconds(60));
            return;
          }
        }
        return;
      }
      kill_and_restart(runtime, restart_runtimes_, absl::Seconds(60));
      break;
    }
    case FaultKind::kKillRunner:
      kill_and_restart(*stack_.runners[fault.target], true, absl::Seconds(30));
      break;
    case FaultKind::kRestartPostgres: {
      Note("PostgreSQL restart (pg_ctl restart -m immediate)");
      const absl::Time began = absl::Now();
      const int rc = std::system(stack_.postgres_restart_command.c_str());
      const bool ok = rc != -1 && WIFEXITED(rc) && WEXITSTATUS(rc) == 0;
      Note(absl::StrCat("PostgreSQL ", ok ? "back" : "restart FAILED", " after ",
                        Secs(absl::Now() - began), " (pg_ctl status ", rc, ")"),
           /*problem=*/!ok);
      break;
    }
    case FaultKind::kCutProxy: {
      TcpProxy& proxy = *stack_.proxies[fault.target];
      const int dropped = proxy.Cut();
      const std::string link = absl::StrCat(stack_.runtimes[fault.target]->name(), " -> ",
                                            stack_.registries[fault.target]->name());
      Note(absl::StrCat("cut ", link, ": dropped ", dropped,
                        " connection(s), refusing new ones for ", Secs(fault.down)));
      SuperviseUntil(absl::Now() + fault.down);
      proxy.Restore();
      Note(absl::StrCat("restored ", link));
      break;
    }
  }
}

}  // namespace wake::chaos
