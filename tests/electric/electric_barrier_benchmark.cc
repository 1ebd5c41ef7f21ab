// What the Electric read barrier adds to a STRONG evaluation: the latency of
// ElectricSyncSource::Barrier() with the production marker writer
// (postgres_electric_database) on a real PostgreSQL, against the scripted
// Electric fed through a pgoutput slot (polled every millisecond: that
// polling stands in for Electric's replication stream and is part of the
// figures). Run by hand against a local cluster:
//   bazel build -c opt //tests/electric:electric_barrier_benchmark
//   DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres
//     bazel-bin/tests/electric/electric_barrier_benchmark
// (tests/electric/run_barrier_benchmark.sh does both on a throwaway cluster).
// Prints one row per case: barriers completed, marker writes they shared,
// p50 / p95 / p99 / max latency, and the background write rate.
#include <algorithm>
#include <atomic>
#include <cstdio>
#include <memory>
#include <pqxx/pqxx>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "common/postgres.h"
#include "common/real_time_source.h"
#include "common/sync/electric/electric_sync_source.h"
#include "common/sync/electric/postgres_electric_database.h"
#include "registry-service/migrations.h"
#include "tests/electric/pgoutput_feeder.h"
#include "tests/electric/scripted_electric_server.h"
#include "tests/support/test_database.h"

namespace wake::sync {
namespace {

// Keeps nothing: the figures are the barrier's.
class NullObserver final : public SyncObserver {
 public:
  void OnReset() override {}
  void OnBatch(SyncBatch) override {}
  void OnUpToDate() override {}
  void OnDisconnected(const absl::Status&) override {}
};

struct Result {
  std::vector<double> millis;
  uint64_t marker_writes = 0;
  double writes_per_second = 0;
};

double Percentile(std::vector<double> values, double p) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  const size_t index = std::min(values.size() - 1, static_cast<size_t>(p * values.size()));
  return values[index];
}

void Print(const std::string& name, const Result& r) {
  std::printf("%-44s %8zu %8llu %8.2f %8.2f %8.2f %8.2f %10.0f\n", name.c_str(), r.millis.size(),
              static_cast<unsigned long long>(r.marker_writes), Percentile(r.millis, 0.50),
              Percentile(r.millis, 0.95), Percentile(r.millis, 0.99),
              r.millis.empty() ? 0 : *std::max_element(r.millis.begin(), r.millis.end()),
              r.writes_per_second);
  std::fflush(stdout);
}

int Run() {
  auto db = wake::testing::TestDatabase::Create();
  if (!db.ok()) {
    std::fprintf(stderr, "needs DATABASE_URL (a local cluster): %s\n",
                 std::string(db.status().message()).c_str());
    return 2;
  }
  {
    pqxx::connection connection((*db)->url());
    if (!registry::ApplyMigrations(connection).ok()) return 2;
  }
  // Electric cuts responses at ~10 MB (chunk_bytes_threshold): thousands of
  // rows, not the peer's default hundred.
  wake::testing::ScriptedElectricServer::Options options;
  options.page_size = 5000;
  auto server = wake::testing::ScriptedElectricServer::Start(options);
  if (!server.ok()) return 2;
  for (const char* table : {"wake_registrations", "wakes", kMarkersTable}) {
    (*server)->CreateShape(table, absl::StrCat(table, "-1"));
  }
  auto feeder = wake::testing::PgoutputFeeder::Start(
      (*db)->url(), absl::StrCat("electric_", (*db)->name()),
      {"wake_registrations", "wakes", kMarkersTable}, **server, absl::Milliseconds(1));
  if (!feeder.ok()) {
    std::fprintf(stderr, "%s\n", std::string(feeder.status().message()).c_str());
    return 2;
  }
  common::RealTimeSource time;
  common::PgPool pool((*db)->url(), 2);
  // The part of a barrier that is the database's: one marker row commit.
  {
    ElectricDatabase database = MakePostgresElectricDatabase(pool);
    Result commits;
    for (int i = 1; i <= 300; ++i) {
      const absl::Time start = absl::Now();
      if (!database.write_marker("benchmark-commit-only", i).ok()) return 2;
      commits.millis.push_back(absl::ToDoubleMilliseconds(absl::Now() - start));
    }
    commits.marker_writes = 300;
    std::printf("%-44s %8s %8s %8s %8s %8s %8s %10s\n", "case", "barriers", "markers", "p50 ms",
                "p95 ms", "p99 ms", "max ms", "writes/s");
    Print("marker commit alone (no barrier)", commits);
  }
  ElectricSyncConfig config;
  config.url = (*server)->url();
  ElectricSyncSource source(config, time, MakePostgresElectricDatabase(pool));
  NullObserver observer;
  if (absl::Status s = source.Start(observer, absl::Seconds(30)); !s.ok()) {
    std::fprintf(stderr, "%s\n", std::string(s.message()).c_str());
    return 2;
  }

  // Runs `callers` threads calling Barrier() for `duration` while `writers`
  // threads commit registration inserts and updates as fast as they can.
  auto measure = [&](int callers, int writers, absl::Duration duration) {
    Result result;
    absl::Mutex mu;
    std::atomic<bool> stop{false};
    std::atomic<uint64_t> writes{0};
    const uint64_t markers_before = source.stats().marker_writes;
    std::vector<std::thread> threads;
    for (int w = 0; w < writers; ++w) {
      threads.emplace_back([&, w] {
        pqxx::connection connection((*db)->url());
        for (int64_t n = 0; !stop.load(); ++n) {
          pqxx::work tx(connection);
          tx.exec_params0(
              "INSERT INTO wake_registrations (subscriber_url, source_url, condition) "
              "VALUES ($1, $2, '{\"on\":\"runFinished\"}') ON CONFLICT DO NOTHING",
              absl::StrCat("/bench/", w, "/", n), "/bench/source");
          tx.commit();
          writes.fetch_add(1);
        }
      });
    }
    for (int c = 0; c < callers; ++c) {
      threads.emplace_back([&] {
        std::vector<double> mine;
        while (!stop.load()) {
          const absl::Time start = absl::Now();
          absl::Status s = source.Barrier(absl::Seconds(5));
          if (!s.ok()) {
            std::fprintf(stderr, "barrier: %s\n", std::string(s.message()).c_str());
            continue;
          }
          mine.push_back(absl::ToDoubleMilliseconds(absl::Now() - start));
        }
        absl::MutexLock lock(&mu);
        result.millis.insert(result.millis.end(), mine.begin(), mine.end());
      });
    }
    absl::SleepFor(duration);  // The measurement window.
    stop = true;
    for (std::thread& t : threads) t.join();
    result.marker_writes = source.stats().marker_writes - markers_before;
    result.writes_per_second = static_cast<double>(writes.load()) / absl::ToDoubleSeconds(duration);
    return result;
  };

  measure(1, 0, absl::Seconds(1));  // Warm-up.
  Print("idle, 1 caller", measure(1, 0, absl::Seconds(5)));
  Print("idle, 16 callers", measure(16, 0, absl::Seconds(5)));
  Print("4 writers, 1 caller", measure(1, 4, absl::Seconds(5)));
  Print("4 writers, 16 callers", measure(16, 4, absl::Seconds(5)));
  source.Stop();
  return 0;
}

}  // namespace
}  // namespace wake::sync

int main() { return wake::sync::Run(); }
