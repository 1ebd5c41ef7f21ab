// Barrier latency of the postgres sync source against a real PostgreSQL:
// idle, right after a commit on another connection, and with concurrent
// callers. Needs DATABASE_URL (an admin URL; a private database is created).
//   DATABASE_URL=postgresql://postgres@127.0.0.1:PORT/postgres
//   bazel run -c opt //tests/sync_postgres:barrier_benchmark
#include <postgresql/libpq-fe.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <memory>
#include <pqxx/pqxx>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/real_time_source.h"
#include "common/sync/postgres/postgres_sync_source.h"
#include "registry-service/migrations.h"
#include "tests/support/recording_observer.h"
#include "tests/support/test_database.h"

namespace wake::testing {
namespace {

void Report(const char* name, std::vector<absl::Duration> samples, absl::Duration wall) {
  std::sort(samples.begin(), samples.end());
  auto pct = [&samples](double p) {
    return absl::ToDoubleMicroseconds(samples[static_cast<size_t>(p * (samples.size() - 1))]);
  };
  absl::Duration total;
  for (absl::Duration d : samples) total += d;
  std::printf("%-34s n=%-6zu p50=%8.1fus p99=%8.1fus max=%9.1fus mean=%8.1fus  %8.0f/s\n", name,
              samples.size(), pct(0.5), pct(0.99), pct(1.0),
              absl::ToDoubleMicroseconds(total) / samples.size(),
              samples.size() / absl::ToDoubleSeconds(wall));
}

int Main() {
  auto db = TestDatabase::Create();
  if (!db.ok()) {
    std::fprintf(stderr, "%s\n", db.status().ToString().c_str());
    return 2;
  }
  pqxx::connection writer((*db)->url());
  if (auto applied = registry::ApplyMigrations(writer); !applied.ok()) {
    std::fprintf(stderr, "%s\n", applied.status().ToString().c_str());
    return 2;
  }
  common::RealTimeSource time;
  RecordingObserver observer;
  sync::PostgresSyncSource source((*db)->url(), time);
  if (absl::Status s = source.Start(observer, absl::Seconds(30)); !s.ok()) {
    std::fprintf(stderr, "%s\n", s.ToString().c_str());
    return 2;
  }
  constexpr absl::Duration kTimeout = absl::Seconds(10);
  int failures = 0;

  // Warm up connections and caches.
  for (int i = 0; i < 200; ++i) failures += !source.Barrier(kTimeout).ok();

  {
    // Baseline: the bare SQL round trip a Barrier cannot avoid.
    PGconn* conn = PQconnectdb((*db)->url().c_str());
    std::vector<absl::Duration> samples;
    const absl::Time start = absl::Now();
    for (int i = 0; i < 5000; ++i) {
      const absl::Time t0 = absl::Now();
      PQclear(PQexec(conn, "SELECT pg_current_wal_flush_lsn()"));
      samples.push_back(absl::Now() - t0);
    }
    Report("baseline: one SQL round trip", samples, absl::Now() - start);
    PQfinish(conn);
  }

  {
    std::vector<absl::Duration> samples;
    const sync::PostgresSyncSource::Stats before = source.stats();
    const absl::Time start = absl::Now();
    for (int i = 0; i < 5000; ++i) {
      const absl::Time t0 = absl::Now();
      failures += !source.Barrier(kTimeout).ok();
      samples.push_back(absl::Now() - t0);
    }
    Report("idle, 1 caller", samples, absl::Now() - start);
    const sync::PostgresSyncSource::Stats after = source.stats();
    std::printf("    walsender position requests: %llu\n",
                static_cast<unsigned long long>(after.reply_requests - before.reply_requests));
  }

  {
    std::vector<absl::Duration> samples;
    const sync::PostgresSyncSource::Stats before = source.stats();
    const absl::Time start = absl::Now();
    for (int i = 0; i < 2000; ++i) {
      {
        pqxx::work tx(writer);
        tx.exec0(
            absl::StrCat("INSERT INTO wake_registrations (subscriber_url, source_url, "
                         "condition) VALUES ('/bench/",
                         i, "', '/c', '{\"on\":\"runFinished\"}')"));
        tx.commit();
      }
      const absl::Time t0 = absl::Now();
      failures += !source.Barrier(kTimeout).ok();
      samples.push_back(absl::Now() - t0);
    }
    Report("after a commit elsewhere", samples, absl::Now() - start);
    const sync::PostgresSyncSource::Stats after = source.stats();
    std::printf("    walsender position requests: %llu\n",
                static_cast<unsigned long long>(after.reply_requests - before.reply_requests));
  }

  {
    // For comparison: how long after COMMIT returns the row reaches OnBatch
    // (no Barrier involved).
    std::vector<absl::Duration> samples;
    const absl::Time start = absl::Now();
    for (int i = 0; i < 1000; ++i) {
      int64_t id;
      {
        pqxx::work tx(writer);
        id =
            tx.exec1(absl::StrCat("INSERT INTO wake_registrations (subscriber_url, source_url, "
                                  "condition) VALUES ('/stream/",
                                  i, "', '/c', '{\"on\":\"runFinished\"}') RETURNING id"))[0]
                .as<int64_t>();
        tx.commit();
      }
      const absl::Time t0 = absl::Now();
      observer.WaitFor(
          [id](const RecordingObserver::State& s) { return s.registrations.count(id) > 0; },
          kTimeout);
      samples.push_back(absl::Now() - t0);
    }
    Report("commit -> OnBatch (no barrier)", samples, absl::Now() - start);
  }

  for (int threads : {4, 16}) {
    std::vector<std::vector<absl::Duration>> per_thread(threads);
    std::vector<std::thread> workers;
    std::atomic<int> errors{0};
    const sync::PostgresSyncSource::Stats before = source.stats();
    const absl::Time start = absl::Now();
    for (int t = 0; t < threads; ++t) {
      workers.emplace_back([&, t] {
        for (int i = 0; i < 1000; ++i) {
          const absl::Time t0 = absl::Now();
          if (!source.Barrier(kTimeout).ok()) ++errors;
          per_thread[t].push_back(absl::Now() - t0);
        }
      });
    }
    for (std::thread& w : workers) w.join();
    const absl::Duration wall = absl::Now() - start;
    failures += errors.load();
    std::vector<absl::Duration> samples;
    for (const auto& s : per_thread) samples.insert(samples.end(), s.begin(), s.end());
    Report(absl::StrCat("idle, ", threads, " concurrent callers").c_str(), samples, wall);
    const sync::PostgresSyncSource::Stats after = source.stats();
    std::printf("    flush queries: %llu for %llu calls\n",
                static_cast<unsigned long long>(after.flush_queries - before.flush_queries),
                static_cast<unsigned long long>(after.barrier_calls - before.barrier_calls));
  }

  source.Stop();
  std::printf("barrier failures: %d\n", failures);
  return failures == 0 ? 0 : 1;
}

}  // namespace
}  // namespace wake::testing

int main() { return wake::testing::Main(); }
