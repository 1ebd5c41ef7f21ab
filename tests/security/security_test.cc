// Black-box security tests: the real registry-service and runtime-service
// with TLS and token files (scripts/gen-credentials.sh), a real PostgreSQL,
// and clients that present the wrong tenant, no token, a forged or expired
// token, the wrong role, oversized payloads and many idle streams.
#include <atomic>
#include <fstream>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "tests/support/service_process.h"
#include "tests/support/subprocess.h"
#include "tests/support/test_database.h"
#include "tests/support/wait_until.h"
#include "wake/v1/registry.grpc.pb.h"
#include "wake/v1/runtime.grpc.pb.h"

namespace wake::testing {
namespace {

using ::testing::HasSubstr;

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  std::string out = text.str();
  while (!out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

// One registry and one runtime, TLS on both and on the runtime's channel to
// the registry, token files on both; shared by the tests of this file.
class SecurityTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto db = TestDatabase::Create();
    ASSERT_TRUE(db.ok()) << db.status();
    db_ = db->release();
    creds_ = new std::string(TempPath("credentials"));
    auto gen = Subprocess::Start(
        "/bin/bash",
        {RunfilePath("scripts/gen-credentials.sh"), *creds_, "admin:admin:*", "runtime:runtime:*",
         "client-a:client:acme", "client-b:client:globex", "runner-a:runner:acme",
         "runner-b:runner:globex", "runner-c:runner:acme", "runner-d:runner:globex",
         "expired:client:acme:2000-01-01T00:00:00Z", "runtime-as-client:client:*"});
    ASSERT_TRUE(gen.ok()) << gen.status();
    ASSERT_EQ((*gen)->WaitForExit(absl::Seconds(60)), std::optional<int>(0)) << (*gen)->ReadLog();
    auto registry = StartRegistry(db_->url(), TlsArgs());
    ASSERT_TRUE(registry.ok()) << registry.status();
    registry_ = new ServiceProcess(std::move(*registry));
    std::vector<std::string> runtime_args = TlsArgs();
    runtime_args.push_back("--registry-ca=" + Cred("ca.pem"));
    runtime_args.push_back("--registry-token-file=" + Cred("token.runtime"));
    auto runtime = StartRuntime(registry_->address, runtime_args);
    ASSERT_TRUE(runtime.ok()) << runtime.status();
    runtime_ = new ServiceProcess(std::move(*runtime));
  }

  static void TearDownTestSuite() {
    delete runtime_;
    delete registry_;
    delete db_;
    delete creds_;
  }

  static std::string Cred(const std::string& name) { return *creds_ + "/" + name; }

  static std::vector<std::string> TlsArgs() {
    return {"--tls-cert=" + Cred("server.pem"), "--tls-key=" + Cred("server.key"),
            "--auth-tokens=" + Cred("tokens")};
  }

  static std::shared_ptr<grpc::Channel> Tls(const std::string& address,
                                            grpc::ChannelArguments args = {}) {
    grpc::SslCredentialsOptions tls;
    tls.pem_root_certs = ReadFile(Cred("ca.pem"));
    return grpc::CreateCustomChannel(address, grpc::SslCredentials(tls), args);
  }

  // A context carrying `principal`'s token ("" = none, anything without a
  // token file = that string as a forged token).
  static std::unique_ptr<grpc::ClientContext> As(const std::string& principal) {
    auto context = std::make_unique<grpc::ClientContext>();
    context->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
    if (principal.empty()) return context;
    std::ifstream probe(Cred("token." + principal));
    const std::string token = probe ? ReadFile(Cred("token." + principal)) : principal;
    context->AddMetadata("authorization", "Bearer " + token);
    return context;
  }

  std::unique_ptr<v1::WakeRegistry::Stub> Registry() {
    return v1::WakeRegistry::NewStub(Tls(registry_->address));
  }
  std::unique_ptr<v1::WakeRuntime::Stub> Runtime() {
    return v1::WakeRuntime::NewStub(Tls(runtime_->address));
  }

  static v1::RegisterWakeRequest RegisterIn(const std::string& tenant,
                                            const std::string& subscriber,
                                            const std::string& source) {
    v1::RegisterWakeRequest request;
    request.set_tenant_id(tenant);
    request.set_subscriber_url(subscriber);
    request.set_source_url(source);
    request.mutable_condition()->mutable_change();
    return request;
  }

  grpc::Status Register(const std::string& principal, const v1::RegisterWakeRequest& request) {
    v1::RegisterWakeResponse response;
    return Registry()->RegisterWake(As(principal).get(), request, &response);
  }

  grpc::Status Evaluate(const std::string& principal, const std::string& tenant,
                        const std::string& source, const std::string& key, size_t value_bytes = 0) {
    v1::EvaluateChangeRequest request;
    request.set_tenant_id(tenant);
    request.set_source_url(source);
    request.set_collection("items");
    request.set_op(v1::UPDATE);
    request.set_key(key);
    if (value_bytes > 0) request.mutable_value()->set_string_value(std::string(value_bytes, 'v'));
    v1::EvaluateChangeResponse response;
    return Registry()->EvaluateChange(As(principal).get(), request, &response);
  }

  static std::string Count(const std::string& sql) { return db_->QueryValue(sql); }

  static TestDatabase* db_;
  static std::string* creds_;
  static ServiceProcess* registry_;
  static ServiceProcess* runtime_;
};

TestDatabase* SecurityTest::db_ = nullptr;
std::string* SecurityTest::creds_ = nullptr;
ServiceProcess* SecurityTest::registry_ = nullptr;
ServiceProcess* SecurityTest::runtime_ = nullptr;

// A runner session on the runtime, reading claims on its own thread.
class Runner {
 public:
  Runner(std::shared_ptr<grpc::Channel> channel, const std::string& token,
         const std::string& runner_id, const std::string& tenant)
      : stub_(v1::WakeRuntime::NewStub(channel)) {
    context_.AddMetadata("authorization", "Bearer " + token);
    v1::StreamWakeClaimsRequest request;
    request.set_runner_id(runner_id);
    request.set_session_id(runner_id + "-session");
    request.set_tenant_id(tenant);
    reader_ = stub_->StreamWakeClaims(&context_, request);
    thread_ = std::thread([this] {
      v1::WakeClaim claim;
      while (reader_->Read(&claim)) {
        absl::MutexLock lock(&mu_);
        claims_.push_back(claim);
      }
      absl::MutexLock lock(&mu_);
      finish_ = reader_->Finish();
    });
  }

  ~Runner() {
    context_.TryCancel();
    thread_.join();
  }

  // Waits for the `n`th claim (1-based); nullopt after `timeout`.
  std::optional<v1::WakeClaim> Claim(size_t n, absl::Duration timeout = absl::Seconds(30)) {
    absl::MutexLock lock(&mu_);
    auto ready = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return claims_.size() >= n || finish_.has_value();
    };
    mu_.AwaitWithTimeout(absl::Condition(&ready), timeout);
    if (claims_.size() < n) return std::nullopt;
    return claims_[n - 1];
  }

  std::optional<grpc::Status> Finished(absl::Duration timeout = absl::Seconds(30)) {
    absl::MutexLock lock(&mu_);
    auto done = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return finish_.has_value(); };
    mu_.AwaitWithTimeout(absl::Condition(&done), timeout);
    return finish_;
  }

 private:
  std::unique_ptr<v1::WakeRuntime::Stub> stub_;
  grpc::ClientContext context_;
  std::unique_ptr<grpc::ClientReader<v1::WakeClaim>> reader_;
  absl::Mutex mu_;
  std::vector<v1::WakeClaim> claims_ ABSL_GUARDED_BY(mu_);
  std::optional<grpc::Status> finish_ ABSL_GUARDED_BY(mu_);
  std::thread thread_;
};

grpc::Status Ack(v1::WakeRuntime::Stub& runtime, grpc::ClientContext* context,
                 const std::string& runner_id, const v1::WakeClaim& claim,
                 const std::string& tenant) {
  v1::AckClaimRequest request;
  request.set_runner_id(runner_id);
  request.set_session_id(runner_id + "-session");
  request.set_tenant_id(tenant);
  request.set_stream(claim.stream());
  request.set_claim_token(claim.claim_token());
  v1::AckClaimResponse response;
  return runtime.AckClaim(context, request, &response);
}

TEST_F(SecurityTest, PlaintextClientsCannotTalkToATlsServer) {
  auto stub = v1::WakeRegistry::NewStub(
      grpc::CreateChannel(registry_->address, grpc::InsecureChannelCredentials()));
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  v1::RegisterWakeResponse response;
  const grpc::Status status =
      stub->RegisterWake(&context, RegisterIn("acme", "/p/plain", "/c/plain"), &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE) << status.error_message();
}

TEST_F(SecurityTest, MissingForgedAndExpiredTokensAreUnauthenticatedAndWriteNothing) {
  const v1::RegisterWakeRequest request = RegisterIn("acme", "/p/anon", "/c/anon");
  for (const std::string principal : {"", "forged-token", "expired"}) {
    const grpc::Status status = Register(principal, request);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAUTHENTICATED) << principal;
    EXPECT_THAT(
        status.error_message(),
        HasSubstr(principal.empty() ? "missing credential" : "unknown, revoked or expired"));
  }
  // The runtime's API too.
  v1::HeartbeatRequest beat;
  beat.set_runner_id("r");
  beat.set_session_id("s");
  v1::HeartbeatResponse response;
  EXPECT_EQ(Runtime()->Heartbeat(As("forged-token").get(), beat, &response).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(Count("SELECT count(*) FROM wake_registrations WHERE subscriber_url = '/p/anon'"), "0");
}

TEST_F(SecurityTest, ATenantThePrincipalDoesNotHoldIsPermissionDeniedAndWritesNothing) {
  grpc::Status status = Register("client-a", RegisterIn("globex", "/p/cross", "/c/cross"));
  EXPECT_EQ(status.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_THAT(status.error_message(),
              HasSubstr("tenant_id: principal \"client-a\" does not hold tenant \"globex\""));
  // The empty tenant is "default", which client-a does not hold either.
  status = Register("client-a", RegisterIn("", "/p/cross", "/c/cross"));
  EXPECT_EQ(status.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  status = Evaluate("client-a", "globex", "/c/cross", "k");
  EXPECT_EQ(status.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(Count("SELECT count(*) FROM wake_registrations WHERE subscriber_url = '/p/cross'"),
            "0");
  // Its own tenant works; a runner may not register at all.
  EXPECT_TRUE(Register("client-a", RegisterIn("acme", "/p/cross", "/c/cross")).ok());
  status = Register("runner-a", RegisterIn("acme", "/p/cross2", "/c/cross"));
  EXPECT_EQ(status.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_THAT(status.error_message(), HasSubstr("RegisterWake needs the role client or admin"));
  // Control characters are refused for everyone, admins included.
  status = Register("admin", RegisterIn(std::string("acme\0x", 6), "/p/nul", "/c/nul"));
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("tenant_id: contains control characters"));
}

TEST_F(SecurityTest, ClaimRpcsAndAllTenantsNeedTheRuntimeRole) {
  v1::SubscribeChangesRequest request;
  request.set_all_tenants(true);
  request.set_from_offset("now");
  {
    auto context = As("client-a");
    auto reader = Registry()->SubscribeChanges(context.get(), request);
    v1::ChangeEvent event;
    EXPECT_FALSE(reader->Read(&event));
    const grpc::Status status = reader->Finish();
    EXPECT_EQ(status.error_code(), grpc::StatusCode::PERMISSION_DENIED);
    EXPECT_THAT(status.error_message(), HasSubstr("needs the role runtime or admin"));
  }
  {
    // A client holding every tenant is still a client.
    auto context = As("runtime-as-client");
    auto reader = Registry()->SubscribeChanges(context.get(), request);
    v1::ChangeEvent event;
    EXPECT_FALSE(reader->Read(&event));
    EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::PERMISSION_DENIED);
  }
  {
    auto context = As("runtime");
    auto reader = Registry()->SubscribeChanges(context.get(), request);
    v1::ChangeEvent event;
    ASSERT_TRUE(reader->Read(&event));
    EXPECT_EQ(event.control(), v1::UP_TO_DATE);
    context->TryCancel();
    reader->Finish();
  }
  v1::ClaimWakesRequest claim;
  claim.set_tenant_id("acme");
  claim.set_stream("/p/any");
  claim.set_runner_id("me");
  v1::ClaimWakesResponse response;
  const grpc::Status status = Registry()->ClaimWakes(As("client-a").get(), claim, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_THAT(status.error_message(), HasSubstr("ClaimWakes needs the role runtime or admin"));

  // The batched claim RPCs too; the runtime's entries are checked one by one.
  v1::ClaimStreamsRequest claims;
  *claims.add_claims() = claim;
  *claims.add_claims() = claim;
  claims.mutable_claims(1)->set_stream("");
  v1::ClaimStreamsResponse claimed;
  grpc::Status batch = Registry()->ClaimStreams(As("client-a").get(), claims, &claimed);
  EXPECT_EQ(batch.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_THAT(batch.error_message(), HasSubstr("ClaimStreams needs the role runtime or admin"));
  batch = Registry()->ClaimStreams(As("runtime").get(), claims, &claimed);
  EXPECT_EQ(batch.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(batch.error_message(), HasSubstr("claims[1].stream"));
  v1::AckClaimsRequest acks;
  v1::AckWakesRequest* ack = acks.add_acks();
  ack->set_tenant_id("acme");
  ack->set_stream("/p/any");
  ack->set_claim_token("t");
  v1::AckClaimsResponse acked;
  batch = Registry()->AckClaims(As("runner-a").get(), acks, &acked);
  EXPECT_EQ(batch.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_THAT(batch.error_message(), HasSubstr("AckClaims needs the role runtime or admin"));
  // An entry whose claim is not live fails alone, with its code.
  batch = Registry()->AckClaims(As("runtime").get(), acks, &acked);
  ASSERT_TRUE(batch.ok()) << batch.error_message();
  ASSERT_EQ(acked.acks_size(), 1);
  EXPECT_EQ(acked.acks(0).code(), grpc::StatusCode::FAILED_PRECONDITION);
}

TEST_F(SecurityTest, AllTenantsOfARegistryScopedToOneTenantStreamsOnlyThatTenant) {
  ASSERT_TRUE(Register("client-a", RegisterIn("acme", "/p/scoped-a", "/c/scoped")).ok());
  ASSERT_TRUE(Register("client-b", RegisterIn("globex", "/p/scoped-b", "/c/scoped")).ok());
  std::vector<std::string> args = TlsArgs();
  args.push_back("--tenant=acme");
  auto scoped = StartRegistry(db_->url(), args);
  ASSERT_TRUE(scoped.ok()) << scoped.status();
  v1::SubscribeChangesRequest request;
  request.set_all_tenants(true);
  request.set_from_offset("-1");
  auto context = As("runtime");
  auto reader =
      v1::WakeRegistry::NewStub(Tls(scoped->address))->SubscribeChanges(context.get(), request);
  std::set<std::string> tenants;
  v1::ChangeEvent event;
  while (reader->Read(&event) && !event.has_control()) {
    if (event.has_registration()) tenants.insert(event.registration().registration().tenant_id());
    if (event.has_wake()) tenants.insert(event.wake().tenant_id());
  }
  EXPECT_EQ(event.control(), v1::UP_TO_DATE);
  EXPECT_EQ(tenants, std::set<std::string>{"acme"});
  context->TryCancel();
  reader->Finish();
}

TEST_F(SecurityTest, HealthAndReflectionAnswerWithoutACredential) {
  auto health = grpc::health::v1::Health::NewStub(Tls(registry_->address));
  grpc::ClientContext context;
  grpc::health::v1::HealthCheckRequest request;
  request.set_service("wake.v1.WakeRegistry");
  grpc::health::v1::HealthCheckResponse response;
  ASSERT_TRUE(health->Check(&context, request, &response).ok());
  EXPECT_EQ(response.status(), grpc::health::v1::HealthCheckResponse::SERVING);
}

TEST_F(SecurityTest, MutualTlsAndPrivateHealthWhenConfigured) {
  std::vector<std::string> args = TlsArgs();
  args.push_back("--tls-client-ca=" + Cred("ca.pem"));
  args.push_back("--public-health=false");
  auto strict = StartRegistry(db_->url(), args);
  ASSERT_TRUE(strict.ok()) << strict.status();
  grpc::SslCredentialsOptions tls;
  tls.pem_root_certs = ReadFile(Cred("ca.pem"));
  {
    // No client certificate: the handshake fails.
    auto health = grpc::health::v1::Health::NewStub(
        grpc::CreateChannel(strict->address, grpc::SslCredentials(tls)));
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    grpc::health::v1::HealthCheckResponse response;
    EXPECT_EQ(health->Check(&context, {}, &response).error_code(), grpc::StatusCode::UNAVAILABLE);
  }
  tls.pem_cert_chain = ReadFile(Cred("client.pem"));
  tls.pem_private_key = ReadFile(Cred("client.key"));
  auto channel = grpc::CreateChannel(strict->address, grpc::SslCredentials(tls));
  auto health = grpc::health::v1::Health::NewStub(channel);
  {
    // A certificate but no token: health is private here.
    grpc::ClientContext context;
    grpc::health::v1::HealthCheckResponse response;
    const grpc::Status status = health->Check(&context, {}, &response);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAUTHENTICATED);
    EXPECT_THAT(status.error_message(), HasSubstr("missing credential"));
  }
  {
    grpc::health::v1::HealthCheckResponse response;
    ASSERT_TRUE(health->Check(As("client-a").get(), {}, &response).ok());
    EXPECT_EQ(response.status(), grpc::health::v1::HealthCheckResponse::SERVING);
  }
  // The wake services answer as usual with certificate and token.
  v1::RegisterWakeResponse response;
  const grpc::Status status = v1::WakeRegistry::NewStub(channel)->RegisterWake(
      As("client-a").get(), RegisterIn("acme", "/p/mtls", "/c/mtls"), &response);
  EXPECT_TRUE(status.ok()) << status.error_message();
}

TEST_F(SecurityTest, ARunnerCannotAckAnotherTenantsClaim) {
  ASSERT_TRUE(Register("client-b", RegisterIn("globex", "/p/victim", "/c/victim")).ok());
  Runner victim(Tls(runtime_->address), ReadFile(Cred("token.runner-b")), "runner-b", "globex");
  ASSERT_TRUE(Evaluate("client-b", "globex", "/c/victim", "k1").ok());
  std::optional<v1::WakeClaim> claim = victim.Claim(1);
  ASSERT_TRUE(claim.has_value());
  EXPECT_EQ(claim->tenant_id(), "globex");

  auto runtime = Runtime();
  // Naming the victim's tenant: refused by the runtime before anything reaches the registry.
  grpc::Status status = Ack(*runtime, As("runner-a").get(), "runner-a", *claim, "globex");
  EXPECT_EQ(status.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_THAT(status.error_message(), HasSubstr("does not hold tenant \"globex\""));
  // Naming its own tenant with the victim's token: no such claim there.
  status = Ack(*runtime, As("runner-a").get(), "runner-a", *claim, "acme");
  EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << status.error_message();
  // Another principal of the victim's tenant cannot ack the session's claim,
  // nor heartbeat or take over its session.
  status = Ack(*runtime, As("runner-d").get(), "runner-b", *claim, "globex");
  EXPECT_EQ(status.error_code(), grpc::StatusCode::PERMISSION_DENIED) << status.error_message();
  EXPECT_THAT(status.error_message(), HasSubstr("another principal"));
  v1::HeartbeatRequest beat;
  beat.set_runner_id("runner-b");
  beat.set_session_id("runner-b-session");
  v1::HeartbeatResponse beat_response;
  status = runtime->Heartbeat(As("runner-d").get(), beat, &beat_response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::PERMISSION_DENIED) << status.error_message();
  {
    Runner intruder(Tls(runtime_->address), ReadFile(Cred("token.runner-d")), "runner-b", "globex");
    std::optional<grpc::Status> refused = intruder.Finished();
    ASSERT_TRUE(refused.has_value());
    EXPECT_EQ(refused->error_code(), grpc::StatusCode::PERMISSION_DENIED);
  }
  EXPECT_EQ(Count("SELECT count(*) FROM wakes WHERE stream = '/p/victim'"), "1");
  // The victim's own ack lands.
  status = Ack(*runtime, As("runner-b").get(), "runner-b", *claim, "globex");
  EXPECT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(Count("SELECT count(*) FROM wakes WHERE stream = '/p/victim'"), "0");
}

TEST_F(SecurityTest, OversizedPayloadsOnOneStreamArriveInSeveralClaims) {
  ASSERT_TRUE(Register("client-a", RegisterIn("acme", "/p/big", "/c/big")).ok());
  constexpr int kWakes = 6;
  for (int i = 0; i < kWakes; ++i) {
    // Each about 1 MiB: together far more than one 4 MiB answer.
    const grpc::Status status =
        Evaluate("client-a", "acme", "/c/big", absl::StrCat("k", i), 1000 * 1000);
    ASSERT_TRUE(status.ok()) << status.error_message();
  }
  // A runner with gRPC's default 4 MiB receive limit gets every wake.
  Runner runner(Tls(runtime_->address), ReadFile(Cred("token.runner-c")), "runner-c", "acme");
  auto runtime = Runtime();
  int delivered = 0;
  int claims = 0;
  while (delivered < kWakes) {
    std::optional<v1::WakeClaim> claim = runner.Claim(claims + 1);
    ASSERT_TRUE(claim.has_value()) << "after " << delivered << " wakes in " << claims << " claims";
    ++claims;
    delivered += claim->wakes_size();
    EXPECT_LT(claim->ByteSizeLong(), 4u << 20);
    const grpc::Status status = Ack(*runtime, As("runner-c").get(), "runner-c", *claim, "acme");
    ASSERT_TRUE(status.ok()) << status.error_message();
  }
  EXPECT_EQ(delivered, kWakes);
  EXPECT_GE(claims, 2);
  EXPECT_EQ(Count("SELECT count(*) FROM wakes WHERE stream = '/p/big'"), "0");
  // A change that would make a wake above --max-wake-bytes is refused by name.
  const grpc::Status too_big = Evaluate("client-a", "acme", "/c/big", "huge", 3 * 1000 * 1000);
  EXPECT_EQ(too_big.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_F(SecurityTest, TenThousandIdleStreamsDoNotStopARegisterWake) {
  // Ten connections (the registry allows 1000 calls on one), 1000 idle
  // SubscribeChanges streams each.
  constexpr int kConnections = 10;
  constexpr int kStreamsPerConnection = 1000;
  class Idle final : public grpc::ClientReadReactor<v1::ChangeEvent> {
   public:
    void Begin() {
      StartRead(&event_);
      StartCall();
    }
    void OnReadDone(bool ok) override {
      if (ok) {
        ++reads_;
        StartRead(&event_);
      }
    }
    void OnDone(const grpc::Status& status) override {
      absl::MutexLock lock(&mu_);
      status_ = status;
    }
    void AwaitDone() {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(
          +[](std::optional<grpc::Status>* s) { return s->has_value(); }, &status_));
    }
    grpc::ClientContext context;
    std::atomic<int> reads_{0};

   private:
    v1::ChangeEvent event_;
    absl::Mutex mu_;
    std::optional<grpc::Status> status_ ABSL_GUARDED_BY(mu_);
  };
  const std::string token = ReadFile(Cred("token.client-a"));
  v1::SubscribeChangesRequest request;
  request.set_tenant_id("acme");
  request.set_from_offset("now");
  std::vector<std::unique_ptr<v1::WakeRegistry::Stub>> stubs;
  std::vector<std::unique_ptr<Idle>> streams;
  for (int c = 0; c < kConnections; ++c) {
    grpc::ChannelArguments args;
    args.SetInt("wake.test.connection", c);  // A channel (and connection) of its own.
    stubs.push_back(v1::WakeRegistry::NewStub(Tls(registry_->address, args)));
    for (int i = 0; i < kStreamsPerConnection; ++i) {
      auto stream = std::make_unique<Idle>();
      stream->context.AddMetadata("authorization", "Bearer " + token);
      stubs.back()->async()->SubscribeChanges(&stream->context, &request, stream.get());
      stream->Begin();
      streams.push_back(std::move(stream));
    }
  }
  // Every stream is open once it has its first UP_TO_DATE.
  int open = 0;
  WaitUntil(
      [&] {
        open = 0;
        for (const auto& stream : streams) open += stream->reads_.load() > 0 ? 1 : 0;
        return open == kConnections * kStreamsPerConnection;
      },
      absl::Now() + absl::Seconds(120), absl::Milliseconds(100));
  ASSERT_EQ(open, kConnections * kStreamsPerConnection);

  const absl::Time started = absl::Now();
  grpc::ClientContext context;
  context.AddMetadata("authorization", "Bearer " + token);
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  v1::RegisterWakeResponse response;
  const grpc::Status status =
      Registry()->RegisterWake(&context, RegisterIn("acme", "/p/busy", "/c/busy"), &response);
  EXPECT_TRUE(status.ok()) << status.error_message();
  EXPECT_LT(absl::Now() - started, absl::Seconds(5));

  for (auto& stream : streams) stream->context.TryCancel();
  for (auto& stream : streams) stream->AwaitDone();
}

TEST_F(SecurityTest, ARuntimeWithoutTheRuntimeRoleNeverFollowsTheRegistry) {
  std::vector<std::string> args = TlsArgs();
  args.push_back("--registry-ca=" + Cred("ca.pem"));
  args.push_back("--registry-token-file=" + Cred("token.runtime-as-client"));
  args.push_back("--listen=127.0.0.1:0");
  args.push_back("--registry=" + registry_->address);
  auto process = Subprocess::Start(RunfilePath("runtime-service/runtime-service"), args);
  ASSERT_TRUE(process.ok()) << process.status();
  auto ended = (*process)->WaitForLog("PERMISSION_DENIED", absl::Seconds(30));
  EXPECT_TRUE(ended.ok()) << (*process)->ReadLog();
  EXPECT_THAT((*process)->ReadLog(), ::testing::Not(HasSubstr("event=serving")));
}

}  // namespace
}  // namespace wake::testing
