// chaos_driver: the chaos run (started by tests/chaos/run.sh, which owns the
// PostgreSQL cluster). Two registry replicas on one database, two runtimes
// each following one registry through a TcpProxy, runner processes on both
// runtimes; producers register run_finished wakes and finish child runs in
// bursts over both registries while the fault injector kills and restarts
// registries, runtimes and runners, restarts PostgreSQL and cuts a
// runtime-registry link. Then it waits for every expected wake to be acked,
// and prints the books (tests/chaos/accounting.h) with evidence for any loss
// or duplicate. Exit status: 0 when nothing was lost or produced twice, 1
// when something was, 2 when the run itself could not be carried out.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "tests/chaos/accounting.h"
#include "tests/chaos/database.h"
#include "tests/chaos/faults.h"
#include "tests/chaos/managed_process.h"
#include "tests/chaos/producer.h"
#include "tests/chaos/record.h"
#include "tests/chaos/tcp_proxy.h"
#include "tests/chaos/workload.h"

namespace wake::chaos {
namespace {

std::atomic<bool> g_abort{false};

void OnSignal(int) { g_abort.store(true); }

struct Options {
  std::string mode = "full";
  std::string work_dir;
  std::string database_url;
  std::string bin_dir;
  std::string postgres_restart_command;
  int wakes = 10000;
  int duration_s = 120;
  int drain_s = 120;
  uint64_t seed = 1;
  int runners_per_runtime = 3;
  int lease_s = 4;
  int producers = 32;
  FaultCounts faults;
  double never_ack_fraction = 0;
  bool restart_runtimes = true;
};

bool Parse(int argc, char** argv, Options* o, std::string* error) {
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--no-runtime-restart") {
      o->restart_runtimes = false;
      continue;
    }
    const size_t eq = arg.find('=');
    if (!absl::StartsWith(arg, "--") || eq == std::string::npos) {
      *error = absl::StrCat("unexpected argument ", arg);
      return false;
    }
    const std::string name = arg.substr(2, eq - 2);
    const std::string value = arg.substr(eq + 1);
    auto count = [&value](int* out) { return absl::SimpleAtoi(value, out) && *out >= 0; };
    bool ok = true;
    if (name == "mode") {
      o->mode = value;
    } else if (name == "work-dir") {
      o->work_dir = value;
    } else if (name == "database-url") {
      o->database_url = value;
    } else if (name == "bin-dir") {
      o->bin_dir = value;
    } else if (name == "postgres-restart-command") {
      o->postgres_restart_command = value;
    } else if (name == "wakes") {
      ok = count(&o->wakes) && o->wakes > 0;
    } else if (name == "duration") {
      ok = count(&o->duration_s) && o->duration_s > 0;
    } else if (name == "drain-timeout") {
      ok = count(&o->drain_s);
    } else if (name == "seed") {
      ok = absl::SimpleAtoi(value, &o->seed);
    } else if (name == "runners-per-runtime") {
      ok = count(&o->runners_per_runtime) && o->runners_per_runtime > 0;
    } else if (name == "lease") {
      ok = count(&o->lease_s) && o->lease_s > 0;
    } else if (name == "producers") {
      ok = count(&o->producers) && o->producers > 0;
    } else if (name == "registry-kills") {
      ok = count(&o->faults.registry_kills);
    } else if (name == "runtime-kills") {
      ok = count(&o->faults.runtime_kills);
    } else if (name == "runner-kills") {
      ok = count(&o->faults.runner_kills);
    } else if (name == "postgres-restarts") {
      ok = count(&o->faults.postgres_restarts);
    } else if (name == "proxy-cuts") {
      ok = count(&o->faults.proxy_cuts);
    } else if (name == "never-ack-fraction") {
      ok = absl::SimpleAtod(value, &o->never_ack_fraction) && o->never_ack_fraction >= 0 &&
           o->never_ack_fraction <= 1;
    } else {
      *error = absl::StrCat("unknown flag --", name);
      return false;
    }
    if (!ok) {
      *error = absl::StrCat("bad value for --", name, ": ", value);
      return false;
    }
  }
  if (o->work_dir.empty() || o->database_url.empty() || o->bin_dir.empty()) {
    *error = "--work-dir, --database-url and --bin-dir are required";
    return false;
  }
  if (o->faults.postgres_restarts > 0 && o->postgres_restart_command.empty()) {
    *error = "--postgres-restarts needs --postgres-restart-command";
    return false;
  }
  return true;
}

// A free loopback port below Linux's ephemeral range (32768+), so no
// outgoing connection can be holding it when a killed service binds it again.
int FreePort(std::mt19937_64& rng, std::set<int>& taken) {
  for (int attempt = 0; attempt < 1000; ++attempt) {
    const int port = std::uniform_int_distribution<int>(20000, 32000)(rng);
    if (taken.count(port) > 0) continue;
    const int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(static_cast<uint16_t>(port));
    const bool free = bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
    close(fd);
    if (free) {
      taken.insert(port);
      return port;
    }
  }
  return 0;
}

std::string Secs(absl::Duration d) { return absl::StrFormat("%.1fs", absl::ToDoubleSeconds(d)); }

void Say(const std::string& line) {
  std::printf("%s\n", line.c_str());
  std::fflush(stdout);
}

std::string Loopback(int port) { return absl::StrCat("127.0.0.1:", port); }

class Driver {
 public:
  explicit Driver(Options options) : o_(std::move(options)), rng_(o_.seed) {}

  int Run() {
    const absl::Time began = absl::Now();
    const std::string logs = absl::StrCat(o_.work_dir, "/logs");
    const std::string records = absl::StrCat(o_.work_dir, "/records");
    mkdir(logs.c_str(), 0755);
    mkdir(absl::StrCat(logs, "/raw").c_str(), 0755);
    mkdir(records.c_str(), 0755);
    setenv("TEST_TMPDIR", absl::StrCat(logs, "/raw").c_str(), 1);

    const std::vector<FamilyPlan> families = PlanFamilies(o_.wakes, o_.seed, "/chaos");
    int one_shot_wakes = 0, max_children = 0;
    for (const FamilyPlan& family : families) {
      if (family.one_shot) one_shot_wakes += family.wakes();
      max_children = std::max(max_children, static_cast<int>(family.children.size()));
    }
    const int runner_count = 2 * o_.runners_per_runtime;
    const absl::Duration window = absl::Seconds(o_.duration_s);
    const std::vector<PlannedFault> plan =
        PlanFaults(o_.faults, window, 2, 2, runner_count, o_.seed);
    Say(absl::StrCat("== chaos run: mode=", o_.mode, " seed=", o_.seed, " wakes=", o_.wakes, " (",
                     families.size(), " parents, ", one_shot_wakes, " one-shot, bursts up to ",
                     max_children, " children) window=", o_.duration_s, "s runners=", runner_count,
                     " lease=", o_.lease_s, "s"));
    Say(absl::StrCat("   faults planned: ", o_.faults.registry_kills, " registry kill(s), ",
                     o_.faults.runtime_kills, " runtime kill(s), ", o_.faults.runner_kills,
                     " runner kill(s), ", o_.faults.postgres_restarts, " PostgreSQL restart(s), ",
                     o_.faults.proxy_cuts, " runtime-registry cut(s)"));
    if (o_.never_ack_fraction > 0 || !o_.restart_runtimes) {
      Say(absl::StrCat("   SABOTAGE (harness check): never-ack fraction ", o_.never_ack_fraction,
                       o_.restart_runtimes ? "" : ", killed runtimes stay down"));
    }
    Say(absl::StrCat("   work directory ", o_.work_dir,
                     " (service logs in logs/, runner records in records/)"));

    // --- the stack ---------------------------------------------------------
    std::set<int> taken;
    const int registry_ports[2] = {FreePort(rng_, taken), FreePort(rng_, taken)};
    const int runtime_ports[2] = {FreePort(rng_, taken), FreePort(rng_, taken)};
    for (int i = 0; i < 2; ++i) {
      const std::string name = absl::StrCat("registry-", Letter(i));
      registries_.push_back(std::make_unique<ManagedProcess>(
          name, absl::StrCat(o_.bin_dir, "/registry-service"),
          std::vector<std::string>{absl::StrCat("--listen=", Loopback(registry_ports[i])),
                                   absl::StrCat("--database-url=", o_.database_url),
                                   "--sync=postgres", "--log-level=info", "--plaintext",
                                   "--no-auth"},
          "event=serving", logs));
      if (absl::Status s = registries_.back()->Start(absl::Seconds(90)); !s.ok()) {
        return Fatal(s.ToString());
      }
      // The first registry migrated the database; audit every wake from here on.
      if (i == 0) {
        if (absl::Status s = InstallAudit(o_.database_url); !s.ok()) return Fatal(s.ToString());
      }
    }
    for (int i = 0; i < 2; ++i) {
      absl::StatusOr<std::unique_ptr<TcpProxy>> proxy = TcpProxy::Start(registry_ports[i]);
      if (!proxy.ok()) return Fatal(proxy.status().ToString());
      proxies_.push_back(std::move(*proxy));
      const std::string name = absl::StrCat("runtime-", Letter(i));
      runtimes_.push_back(std::make_unique<ManagedProcess>(
          name, absl::StrCat(o_.bin_dir, "/runtime-service"),
          std::vector<std::string>{absl::StrCat("--listen=", Loopback(runtime_ports[i])),
                                   absl::StrCat("--registry=", Loopback(proxies_.back()->port())),
                                   absl::StrCat("--runtime-id=", name),
                                   absl::StrCat("--lease=", o_.lease_s, "s"),
                                   "--retry-initial=100ms", "--log-level=info", "--plaintext",
                                   "--no-auth", "--registry-plaintext"},
          "event=listening", logs));
      if (absl::Status s = runtimes_.back()->Start(absl::Seconds(60)); !s.ok()) {
        return Fatal(s.ToString());
      }
    }
    for (auto& runtime : runtimes_) {
      if (!AwaitLog(*runtime, "event=serving", absl::Seconds(60))) {
        return Fatal(absl::StrCat(runtime->name(),
                                  " never reached its registry (no event=serving); see ",
                                  runtime->log_path()));
      }
    }
    for (int i = 0; i < 2; ++i) {
      for (int r = 1; r <= o_.runners_per_runtime; ++r) {
        const std::string name = absl::StrCat("runner-", Letter(i), r);
        const std::string record = absl::StrCat(records, "/", name, ".rec");
        readers_.emplace_back(name, std::make_unique<RecordReader>(record));
        runners_.push_back(std::make_unique<ManagedProcess>(
            name, absl::StrCat(o_.bin_dir, "/chaos_runner"),
            std::vector<std::string>{
                absl::StrCat("--runtime=", Loopback(runtime_ports[i])),
                absl::StrCat("--runner-id=", name), absl::StrCat("--record=", record),
                absl::StrCat("--seed=", o_.seed + static_cast<uint64_t>(runners_.size())),
                absl::StrCat("--heartbeat-ms=", o_.lease_s * 1000 / 4),
                absl::StrCat("--never-ack-fraction=", o_.never_ack_fraction)},
            "event=started", logs));
        if (absl::Status s = runners_.back()->Start(absl::Seconds(30)); !s.ok()) {
          return Fatal(s.ToString());
        }
      }
    }
    for (auto& runner : runners_) {
      if (!AwaitLog(*runner, "event=connected", absl::Seconds(30))) {
        return Fatal(absl::StrCat(runner->name(), " did not connect; see ", runner->log_path()));
      }
    }
    Stack stack;
    for (auto& p : registries_) stack.registries.push_back(p.get());
    for (auto& p : runtimes_) stack.runtimes.push_back(p.get());
    for (auto& p : runners_) stack.runners.push_back(p.get());
    for (auto& p : proxies_) stack.proxies.push_back(p.get());
    stack.postgres_restart_command = o_.postgres_restart_command;
    const absl::Time started = absl::Now();
    Say(absl::StrCat("   stack up after ", Secs(started - began), ": registries ",
                     Loopback(registry_ports[0]), " ", Loopback(registry_ports[1]), ", runtimes ",
                     Loopback(runtime_ports[0]), " ", Loopback(runtime_ports[1]), " (via proxies ",
                     proxies_[0]->port(), " ", proxies_[1]->port(), ")"));

    // --- production under faults --------------------------------------------
    FaultInjector injector(stack, plan, started, o_.restart_runtimes);
    injector.Start();
    ProducerOptions producer_options;
    producer_options.registries = {Loopback(registry_ports[0]), Loopback(registry_ports[1])};
    producer_options.window = window;
    producer_options.workers = o_.producers;
    producer_options.seed = o_.seed;
    producer_options.abort = &g_abort;
    // A client that cannot get through for this long gives up (and the run says so).
    producer_options.give_up_at = started + window * 2 + absl::Minutes(5);
    Producer producer(producer_options, families);
    producer.Run();
    const absl::Time produced = absl::Now();
    Say(absl::StrCat("   production done after ", Secs(produced - started)));
    while (!injector.AwaitPlanDone(absl::Seconds(1))) {
      if (g_abort.load() || absl::Now() - produced > absl::Minutes(10)) break;
    }
    const absl::Time faults_done = absl::Now();

    // --- drain -------------------------------------------------------------
    Accounting books;
    for (const EventRecord& event : producer.events()) {
      if (event.attempts.empty()) continue;  // Never sent (aborted run).
      if (event.succeeded) {
        books.Expect(event.key, event.parent);
      } else {
        books.Tolerate(event.key);
      }
      for (const v1::Wake& wake : event.returned) {
        books.Evaluated(wake.id(), {wake.registration_id(), wake.source_event_key()});
      }
    }
    const absl::Time drain_deadline = absl::Now() + absl::Seconds(o_.drain_s);
    absl::Time next_audit = absl::InfinitePast();
    absl::Time next_progress = absl::Now() + absl::Seconds(5);
    size_t unacked = 0;
    for (;;) {
      PollRecords(books);
      if (absl::Now() >= next_audit) {
        ReadAuditInto(books);
        next_audit = absl::Now() + absl::Seconds(1);
      }
      unacked = books.Unacked().size();
      if (unacked == 0 || g_abort.load() || absl::Now() >= drain_deadline) break;
      if (absl::Now() >= next_progress) {
        Say(absl::StrCat("   waiting for acks: ", unacked, " of ", books.expected_count(),
                         " expected wakes not acked yet"));
        next_progress = absl::Now() + absl::Seconds(5);
      }
      absl::SleepFor(absl::Milliseconds(250));  // Polling the runners' files.
    }
    const absl::Time drained = absl::Now();
    injector.Stop();
    // All at once: one by one, each would hand its claims to the next.
    for (auto& runner : runners_) runner->Signal(SIGKILL);
    for (auto& runner : runners_) runner->Kill();
    PollRecords(books);
    ReadAuditInto(books);
    absl::StatusOr<std::vector<RemainingWake>> remaining = ReadWakes(o_.database_url);
    absl::StatusOr<std::set<int64_t>> registrations = ReadRegistrationIds(o_.database_url);
    if (remaining.ok()) books.Remaining(*remaining);

    // --- report ------------------------------------------------------------
    Say("== faults injected (time after production start)");
    for (const FaultEvent& event : injector.events()) {
      Say(absl::StrCat("  +", Secs(event.at - started), (event.problem ? "  !! " : "  "),
                       event.what));
    }
    const Report r = books.Summarize(10);
    const ProducerStats stats = producer.stats();
    Say("== results");
    Row("expected wakes (registration, run-finish event)", r.expected);
    Row("wakes produced (distinct wake ids)", r.produced);
    Row("delivered (distinct wake ids a runner received)", r.delivered,
        absl::StrCat(r.deliveries, " deliveries with redeliveries"));
    Row("acked", r.acked,
        r.acked_by_database > 0
            ? absl::StrCat(r.acked_by_database,
                           " of them shown by the database only: ack reply lost, row deleted")
            : "");
    Row("LOST (expected, never acked)", r.lost,
        r.lost == 0 ? ""
                    : absl::StrCat("never produced ", r.lost_never_produced, ", pending in db ",
                                   r.lost_pending, ", claimed in db ", r.lost_claimed,
                                   ", deleted without an ack ", r.lost_deleted_unacked,
                                   ", unknown ", r.lost_unknown));
    Row("DUPLICATED productions (pairs with >1 wake id)", r.duplicated,
        r.duplicated == 0 ? "" : absl::StrCat(r.duplicate_extra, " extra wake ids"));
    Row("double acks (wake id acked OK more than once)", r.double_acks);
    Row("redelivered after an OK ack", r.redelivered_after_ack);
    Row("unexpected wakes (pair the driver never produced)", r.unexpected);
    if (r.held > 0) Row("claims held and never acked (sabotage)", r.held);
    if (r.acked_but_remaining > 0) Row("acked OK yet row still in wakes", r.acked_but_remaining);
    std::vector<std::string> failures;
    for (const auto& [code, n] : stats.failures_by_code) {
      failures.push_back(absl::StrCat(n, " ", CodeName(code)));
    }
    Say(absl::StrCat("  client calls: ", stats.registrations, " registrations in ",
                     stats.register_calls, " calls, ", stats.evaluations, " run finishes in ",
                     stats.evaluate_calls, " calls; failed calls (retried): ",
                     failures.empty() ? "none" : absl::StrJoin(failures, ", ")));
    if (stats.no_wake_on_only_call > 0 || stats.foreign_wakes > 0 || stats.abandoned > 0) {
      Say(absl::StrCat(
          "  !! evaluations answered OK at once with no wake: ", stats.no_wake_on_only_call,
          "; response wakes of another event: ", stats.foreign_wakes,
          "; intents abandoned: ", stats.abandoned));
    }
    std::vector<std::string> acks;
    for (const auto& [code, n] : r.ack_codes) acks.push_back(absl::StrCat(n, " ", CodeName(code)));
    Say(absl::StrCat("  runner acks: ", acks.empty() ? "none" : absl::StrJoin(acks, ", "), "; ",
                     r.sessions_opened, " runner sessions"));
    PrintDatabaseCrossCheck(remaining, registrations);
    int64_t malformed = 0;
    for (auto& [name, reader] : readers_) malformed += reader->malformed();
    const bool harness_ok = stats.abandoned == 0 && r.orphan_acks == 0 && r.conflicting_ids == 0 &&
                            malformed == 0 && remaining.ok() && !g_abort.load();
    if (!harness_ok) {
      Say(absl::StrCat("  !! harness checks: abandoned intents ", stats.abandoned,
                       ", ack lines without their claim line ", r.orphan_acks,
                       ", wake ids seen with two pairs ", r.conflicting_ids,
                       ", malformed record lines ", malformed, ", final database read ",
                       remaining.ok() ? "ok" : remaining.status().ToString(),
                       g_abort.load() ? ", ABORTED by signal" : ""));
    }
    if (!g_abort.load()) Evidence(books, producer, r, registrations);
    Say(absl::StrCat("  elapsed: startup ", Secs(started - began), ", production ",
                     Secs(produced - started), ", faults finished +", Secs(faults_done - produced),
                     ", drain ", Secs(drained - faults_done), ", total ", Secs(absl::Now() - began),
                     " (driver; the script adds build and cluster time)"));

    StopServices();

    const bool pass = r.lost == 0 && r.duplicated == 0;
    if (!harness_ok) {
      Say(absl::StrCat("RESULT: INCOMPLETE (the run could not be carried out as planned; lost ",
                       r.lost, ", duplicated ", r.duplicated, ")"));
      return 2;
    }
    Say(absl::StrCat("RESULT: ", pass ? "PASS" : "FAIL", " (lost ", r.lost, ", duplicated ",
                     r.duplicated, ", double acks ", r.double_acks, ") seed=", o_.seed));
    return pass ? 0 : 1;
  }

 private:
  static std::string Letter(int i) { return std::string(1, static_cast<char>('a' + i)); }

  static const char* CodeName(int code) {
    static const char* const kNames[] = {"OK",
                                         "CANCELLED",
                                         "UNKNOWN",
                                         "INVALID_ARGUMENT",
                                         "DEADLINE_EXCEEDED",
                                         "NOT_FOUND",
                                         "ALREADY_EXISTS",
                                         "PERMISSION_DENIED",
                                         "RESOURCE_EXHAUSTED",
                                         "FAILED_PRECONDITION",
                                         "ABORTED",
                                         "OUT_OF_RANGE",
                                         "UNIMPLEMENTED",
                                         "INTERNAL",
                                         "UNAVAILABLE",
                                         "DATA_LOSS",
                                         "UNAUTHENTICATED"};
    return code >= 0 && code <= 16 ? kNames[code] : "?";
  }

  int Fatal(const std::string& why) {
    Say(absl::StrCat("RESULT: INCOMPLETE (could not set the stack up: ", why, ")"));
    for (auto& runner : runners_) runner->Kill();
    StopServices();
    return 2;
  }

  // Gracefully (SIGTERM) after a run; at once when the run was interrupted.
  void StopServices() {
    if (g_abort.load()) {
      for (auto* group : {&runtimes_, &registries_}) {
        for (auto& process : *group) process->Signal(SIGKILL);
      }
    }
    for (auto& runtime : runtimes_) runtime->Stop(absl::Seconds(5));
    for (auto& registry : registries_) registry->Stop(absl::Seconds(5));
    proxies_.clear();
  }

  static bool AwaitLog(ManagedProcess& process, const std::string& needle, absl::Duration timeout) {
    const absl::Time deadline = absl::Now() + timeout;
    while (absl::Now() < deadline && !g_abort.load()) {
      if (process.LogContains(needle)) return true;
      absl::SleepFor(absl::Milliseconds(50));  // Polling its log for the line.
    }
    return false;
  }

  void PollRecords(Accounting& books) {
    for (auto& [name, reader] : readers_) {
      reader->Poll([&books, &name = name](const RecordLine& line) { books.Record(name, line); });
    }
  }

  void ReadAuditInto(Accounting& books) {
    absl::StatusOr<std::vector<AuditRow>> rows = ReadAudit(o_.database_url, audit_seq_);
    if (!rows.ok()) return;  // PostgreSQL restarting; read again later.
    for (const AuditRow& row : *rows) {
      books.Audit(row);
      audit_seq_ = row.seq;
      audit_.push_back(row);
    }
  }

  static void Row(const std::string& label, int64_t value, const std::string& note = "") {
    std::string padded = label;
    if (padded.size() < 52) padded.append(52 - padded.size(), ' ');
    Say(absl::StrCat("  ", padded, " ", value,
                     note.empty() ? "" : absl::StrCat("   (", note, ")")));
  }

  // The database's own count, independent of what runners recorded.
  void PrintDatabaseCrossCheck(const absl::StatusOr<std::vector<RemainingWake>>& remaining,
                               const absl::StatusOr<std::set<int64_t>>& registrations) {
    std::map<WakeKey, int> inserts;
    int64_t inserted = 0, deleted = 0;
    for (const AuditRow& row : audit_) {
      if (row.inserted) {
        ++inserted;
        ++inserts[{row.registration_id, row.source_event_key}];
      } else {
        ++deleted;
      }
    }
    int64_t twice = 0;
    for (const auto& [key, n] : inserts) twice += n > 1 ? 1 : 0;
    int64_t claimed = 0;
    if (remaining.ok()) {
      for (const RemainingWake& wake : *remaining) claimed += wake.claimed ? 1 : 0;
    }
    Say(absl::StrCat(
        "  database audit: ", inserted, " wake rows inserted for ", inserts.size(), " pairs (",
        twice, " pairs inserted more than once), ", deleted, " deleted; at the end ",
        remaining.ok() ? absl::StrCat(remaining->size(), " rows in wakes (", claimed, " claimed)")
                       : remaining.status().ToString(),
        ", ",
        registrations.ok() ? absl::StrCat(registrations->size(), " registrations")
                           : registrations.status().ToString()));
  }

  void Evidence(const Accounting& books, const Producer& producer, const Report& r,
                const absl::StatusOr<std::set<int64_t>>& registrations) {
    auto event_line = [&](const WakeKey& key) {
      const EventRecord* event = producer.FindEvent(key);
      return event == nullptr ? std::string("      evaluate calls: none recorded")
                              : absl::StrCat("      source ", event->source,
                                             "; evaluate calls: ", Producer::History(*event));
    };
    if (!r.lost_sample.empty()) {
      Say(absl::StrCat("== lost wakes (", r.lost_sample.size(), " of ", r.lost, ")"));
      for (const WakeKey& key : r.lost_sample) {
        Say(absl::StrCat("  ", books.Describe(key)));
        Say(event_line(key));
        if (registrations.ok()) {
          Say(absl::StrCat("      registration ", key.first,
                           registrations->count(key.first) ? " still in wake_registrations"
                                                           : " not in wake_registrations"));
        }
        absl::StatusOr<std::vector<std::string>> claims =
            QueryRows(o_.database_url,
                      absl::StrCat("SELECT claim_token, runner_id, session_id, lease_expires_at "
                                   "FROM stream_claims WHERE stream = ",
                                   SqlQuote(books.StreamOf(key))));
        if (claims.ok()) {
          Say(absl::StrCat("      stream_claims of the stream: ",
                           claims->empty() ? "none" : absl::StrJoin(*claims, "; ")));
        }
        absl::StatusOr<std::vector<std::string>> rows = QueryRows(
            o_.database_url,
            absl::StrCat("SELECT id, coalesce(claim_token, 'pending'), created_at FROM wakes "
                         "WHERE registration_id = ",
                         key.first, " AND source_event_key = ", SqlQuote(key.second)));
        if (rows.ok() && !rows->empty()) {
          Say(absl::StrCat("      wakes row(s): ", absl::StrJoin(*rows, "; ")));
        }
      }
    }
    if (!r.duplicated_sample.empty()) {
      Say(absl::StrCat("== duplicated productions (", r.duplicated_sample.size(), " of ",
                       r.duplicated, ")"));
      for (const WakeKey& key : r.duplicated_sample) {
        Say(absl::StrCat("  ", books.Describe(key)));
        Say(event_line(key));
        std::vector<std::string> audit;
        for (const AuditRow& row : audit_) {
          if (row.registration_id != key.first || row.source_event_key != key.second) continue;
          audit.push_back(
              absl::StrCat(row.inserted ? "insert" : "delete", " id ", row.wake_id, " at ",
                           absl::FormatTime("%H:%M:%E3S", row.at, absl::LocalTimeZone())));
        }
        Say(absl::StrCat("      database audit: ",
                         audit.empty() ? "nothing" : absl::StrJoin(audit, ", ")));
      }
    }
    if (!r.double_ack_sample.empty()) {
      Say(absl::StrCat("== double acks (", r.double_ack_sample.size(), " of ", r.double_acks, ")"));
      for (int64_t id : r.double_ack_sample) Say(absl::StrCat("  wake id ", id));
    }
    if (!r.unexpected_sample.empty()) {
      Say(absl::StrCat("== unexpected wakes (", r.unexpected_sample.size(), " of ", r.unexpected,
                       ")"));
      for (int64_t id : r.unexpected_sample) Say(absl::StrCat("  wake id ", id));
    }
  }

  const Options o_;
  std::mt19937_64 rng_;
  std::vector<std::unique_ptr<ManagedProcess>> registries_;
  std::vector<std::unique_ptr<ManagedProcess>> runtimes_;
  std::vector<std::unique_ptr<ManagedProcess>> runners_;
  std::vector<std::unique_ptr<TcpProxy>> proxies_;
  std::vector<std::pair<std::string, std::unique_ptr<RecordReader>>> readers_;
  int64_t audit_seq_ = 0;
  std::vector<AuditRow> audit_;
};

}  // namespace
}  // namespace wake::chaos

int main(int argc, char** argv) {
  wake::chaos::Options options;
  std::string error;
  if (!wake::chaos::Parse(argc, argv, &options, &error)) {
    std::fprintf(stderr, "chaos_driver: %s (run it through tests/chaos/run.sh)\n", error.c_str());
    return 2;
  }
  struct sigaction action {};
  action.sa_handler = wake::chaos::OnSignal;
  sigaction(SIGINT, &action, nullptr);
  sigaction(SIGTERM, &action, nullptr);
  return wake::chaos::Driver(std::move(options)).Run();
}
