#include "common/metrics.h"

#include <exception>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "prometheus/collectable.h"
#include "prometheus/exposer.h"
#include "prometheus/metric_family.h"
#include "prometheus/text_serializer.h"

namespace wake::common {

// The sampled families, read at every scrape.
class Metrics::Sampled final : public prometheus::Collectable {
 public:
  void Add(const std::string& name, const std::string& help, prometheus::MetricType type,
           Sample sample, Labels labels) {
    absl::MutexLock lock(&mu_);
    Family& family = families_[name];
    if (family.entries.empty()) {
      family.help = help;
      family.type = type;
    }
    family.entries.push_back(Entry{std::move(labels), std::move(sample)});
  }

  std::vector<prometheus::MetricFamily> Collect() const override {
    std::vector<prometheus::MetricFamily> out;
    absl::MutexLock lock(&mu_);
    for (const auto& [name, family] : families_) {
      prometheus::MetricFamily metric_family;
      metric_family.name = name;
      metric_family.help = family.help;
      metric_family.type = family.type;
      for (const Entry& entry : family.entries) {
        prometheus::ClientMetric metric;
        for (const auto& [key, value] : entry.labels) metric.label.push_back({key, value});
        const double value = entry.sample();
        if (family.type == prometheus::MetricType::Counter) {
          metric.counter.value = value;
        } else {
          metric.gauge.value = value;
        }
        metric_family.metric.push_back(std::move(metric));
      }
      out.push_back(std::move(metric_family));
    }
    return out;
  }

 private:
  struct Entry {
    Labels labels;
    Sample sample;
  };
  struct Family {
    std::string help;
    prometheus::MetricType type = prometheus::MetricType::Gauge;
    std::vector<Entry> entries;
  };
  mutable absl::Mutex mu_;
  std::map<std::string, Family> families_ ABSL_GUARDED_BY(mu_);
};

Metrics::Metrics()
    : registry_(std::make_shared<prometheus::Registry>()), sampled_(std::make_shared<Sampled>()) {}

Metrics::~Metrics() = default;

absl::Status Metrics::Serve(const std::string& listen_address) {
  const size_t colon = listen_address.rfind(':');
  int port = 0;
  if (colon == std::string::npos || colon == 0 ||
      !absl::SimpleAtoi(listen_address.substr(colon + 1), &port) || port < 0 || port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("--metrics-listen: \"", listen_address, "\" is not host:port"));
  }
  try {
    exposer_ = std::make_unique<prometheus::Exposer>(listen_address, /*num_threads=*/1);
  } catch (const std::exception& e) {
    return absl::UnavailableError(
        absl::StrCat("--metrics-listen: cannot listen on ", listen_address, ": ", e.what()));
  }
  exposer_->RegisterCollectable(registry_);
  exposer_->RegisterCollectable(sampled_);
  const std::vector<int> ports = exposer_->GetListeningPorts();
  address_ = absl::StrCat(listen_address.substr(0, colon), ":", ports.empty() ? port : ports[0]);
  return absl::OkStatus();
}

void Metrics::StopServing() { exposer_.reset(); }

void Metrics::AddSampledGauge(const std::string& name, const std::string& help, Sample sample,
                              Labels labels) {
  sampled_->Add(name, help, prometheus::MetricType::Gauge, std::move(sample), std::move(labels));
}

void Metrics::AddSampledCounter(const std::string& name, const std::string& help, Sample sample,
                                Labels labels) {
  sampled_->Add(name, help, prometheus::MetricType::Counter, std::move(sample), std::move(labels));
}

std::string Metrics::Render() const {
  std::vector<prometheus::MetricFamily> families = registry_->Collect();
  for (prometheus::MetricFamily& family : sampled_->Collect()) {
    families.push_back(std::move(family));
  }
  return prometheus::TextSerializer().Serialize(families);
}

prometheus::Histogram::BucketBoundaries LatencyBuckets() {
  return {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
          0.05,   0.1,     0.25,   0.5,   1,      2.5,   5,    10};
}

prometheus::Histogram::BucketBoundaries BatchSizeBuckets() {
  return {1, 2, 4, 8, 16, 32, 64, 128, 256, 512};
}

}  // namespace wake::common
