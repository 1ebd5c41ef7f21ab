// Prometheus metrics of one service process: counters, gauges and
// histograms that components update as things happen, plus values read at
// each scrape from components that already keep them (a collection's size, a
// scheduler's counters), served in the text format on /metrics by
// prometheus-cpp's HTTP exposer.
//
// Names follow Prometheus conventions: a `wake_` prefix, the unit in the name
// (`_seconds`), and `_total` on counters.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"

namespace prometheus {
class Exposer;
}

namespace wake::common {

class Metrics {
 public:
  using Labels = std::map<std::string, std::string>;
  // A value read at scrape time; must be cheap and thread-safe.
  using Sample = std::function<double()>;

  // Not served anywhere until Serve (tests, or metrics off).
  Metrics();
  ~Metrics();

  Metrics(const Metrics&) = delete;
  Metrics& operator=(const Metrics&) = delete;

  // Serves /metrics on `listen_address` (host:port; port 0 picks a free
  // one). INVALID_ARGUMENT for a malformed address, UNAVAILABLE when it
  // cannot be bound. Call at most once.
  absl::Status Serve(const std::string& listen_address);
  // Stops serving: no scrape runs (nor calls a sampled value) after it
  // returns. Call before the components the samples read are destroyed.
  void StopServing();
  // host:port it serves on; empty when not serving.
  const std::string& address() const { return address_; }

  prometheus::Registry& registry() { return *registry_; }

  // A gauge, or a counter kept elsewhere, read at every scrape. Entries of
  // one name (with different labels) form one family; its help and type
  // are the first entry's.
  void AddSampledGauge(const std::string& name, const std::string& help, Sample sample,
                       Labels labels = {});
  void AddSampledCounter(const std::string& name, const std::string& help, Sample sample,
                         Labels labels = {});

  // Everything in the text exposition format, as a scrape would see it.
  std::string Render() const;

 private:
  class Sampled;

  std::shared_ptr<prometheus::Registry> registry_;
  std::shared_ptr<Sampled> sampled_;
  std::unique_ptr<prometheus::Exposer> exposer_;
  std::string address_;
};

// Buckets for latencies in seconds, 100 µs to 10 s.
prometheus::Histogram::BucketBoundaries LatencyBuckets();

// Buckets for counts of things per batch, 1 to 512.
prometheus::Histogram::BucketBoundaries BatchSizeBuckets();

}  // namespace wake::common
