// FakeRegistry: the registry's claim protocol in memory, for tests and
// benchmarks of runtime-service without a database: pending wakes and one
// claim per stream, and the change log SubscribeChanges serves (offset =
// index in the log; "-1" starts with a snapshot of the pending wakes). Serve
// it over real gRPC (in-process channel or a listening port).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "grpcpp/grpcpp.h"
#include "wake/v1/registry.grpc.pb.h"

namespace wake::testing {

struct FakeRegistryOptions {
  // The tenant of every wake AddWake makes.
  std::string tenant_id = "acme";
  // What ClaimWakes and ExtendClaims report as the lease (the fake never
  // expires a claim itself).
  absl::Duration lease = absl::Seconds(30);
};

class FakeRegistry final : public v1::WakeRegistry::Service {
 public:
  explicit FakeRegistry(FakeRegistryOptions options = {}) : options_(std::move(options)) {}

  // Adds a pending wake to `stream` and announces it on the change log; its id.
  int64_t AddWake(const std::string& stream) ABSL_LOCKS_EXCLUDED(mu_);

  // Ends every SubscribeChanges (CANCELLED); call before shutting the server down.
  void Close() ABSL_LOCKS_EXCLUDED(mu_);

  // Ids of the acked wakes, in ack order.
  std::vector<int64_t> Acked() ABSL_LOCKS_EXCLUDED(mu_);

  grpc::Status SubscribeChanges(grpc::ServerContext* context,
                                const v1::SubscribeChangesRequest* request,
                                grpc::ServerWriter<v1::ChangeEvent>* writer) override;
  grpc::Status ClaimWakes(grpc::ServerContext* context, const v1::ClaimWakesRequest* request,
                          v1::ClaimWakesResponse* response) override;
  grpc::Status AckWakes(grpc::ServerContext* context, const v1::AckWakesRequest* request,
                        v1::AckWakesResponse* response) override;
  grpc::Status ReleaseClaim(grpc::ServerContext* context, const v1::ReleaseClaimRequest* request,
                            v1::ReleaseClaimResponse* response) override;
  grpc::Status ExtendClaims(grpc::ServerContext* context, const v1::ExtendClaimsRequest* request,
                            v1::ExtendClaimsResponse* response) override;

 private:
  struct Claim {
    std::string token;
    std::vector<v1::Wake> wakes;
  };

  void LogWakeLocked(const v1::Wake& wake) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const FakeRegistryOptions options_;
  absl::Mutex mu_;
  int64_t next_id_ ABSL_GUARDED_BY(mu_) = 1;
  int64_t next_token_ ABSL_GUARDED_BY(mu_) = 1;
  bool closing_ ABSL_GUARDED_BY(mu_) = false;
  std::map<std::string, std::vector<v1::Wake>> pending_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, Claim> claims_ ABSL_GUARDED_BY(mu_);
  std::vector<v1::ChangeEvent> log_ ABSL_GUARDED_BY(mu_);
  std::vector<int64_t> acked_ ABSL_GUARDED_BY(mu_);
};

}  // namespace wake::testing
