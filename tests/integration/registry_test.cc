// registry-service end to end: the real binary, real PostgreSQL, real gRPC.
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <pqxx/pqxx>
#include <thread>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/grpc_status_matchers.h"
#include "tests/support/private_cluster.h"
#include "tests/support/service_process.h"
#include "tests/support/status_matchers.h"
#include "tests/support/test_database.h"
#include "tests/support/wait_until.h"
#include "wake/v1/registry.grpc.pb.h"

namespace wake::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::SizeIs;
using ::testing::StartsWith;

std::chrono::system_clock::time_point Deadline(int seconds = 10) {
  return std::chrono::system_clock::now() + std::chrono::seconds(seconds);
}

class Registry {
 public:
  explicit Registry(const std::string& address)
      : stub_(v1::WakeRegistry::NewStub(Connect(address))) {}

  grpc::Status Register(const v1::RegisterWakeRequest& request, v1::RegisterWakeResponse* out) {
    grpc::ClientContext context;
    context.set_deadline(Deadline());
    return stub_->RegisterWake(&context, request, out);
  }
  grpc::Status RunFinished(const v1::EvaluateRunFinishedRequest& request,
                           v1::EvaluateRunFinishedResponse* out) {
    grpc::ClientContext context;
    context.set_deadline(Deadline());
    return stub_->EvaluateRunFinished(&context, request, out);
  }
  grpc::Status Change(const v1::EvaluateChangeRequest& request, v1::EvaluateChangeResponse* out) {
    grpc::ClientContext context;
    context.set_deadline(Deadline());
    return stub_->EvaluateChange(&context, request, out);
  }
  grpc::Status List(const v1::ListRegistrationsRequest& request,
                    v1::ListRegistrationsResponse* out) {
    grpc::ClientContext context;
    context.set_deadline(Deadline());
    return stub_->ListRegistrations(&context, request, out);
  }
  grpc::Status Unregister(const v1::UnregisterWakesRequest& request,
                          v1::UnregisterWakesResponse* out) {
    grpc::ClientContext context;
    context.set_deadline(Deadline());
    return stub_->UnregisterWakes(&context, request, out);
  }
  v1::WakeRegistry::Stub& stub() { return *stub_; }

 private:
  std::unique_ptr<v1::WakeRegistry::Stub> stub_;
};

v1::RegisterWakeRequest OnRunFinished(const std::string& parent, const std::string& child,
                                      bool one_shot = false) {
  v1::RegisterWakeRequest request;
  request.set_subscriber_url(parent);
  request.set_source_url(child);
  request.mutable_condition()->mutable_run_finished();
  request.set_one_shot(one_shot);
  return request;
}

v1::EvaluateRunFinishedRequest Finished(const std::string& child, const std::string& run_key) {
  v1::EvaluateRunFinishedRequest request;
  request.set_source_url(child);
  request.set_run_key(run_key);
  request.set_status(v1::COMPLETED);
  return request;
}

class RegistryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto db = TestDatabase::Create();
    ASSERT_TRUE(db.ok()) << db.status();
    db_ = std::move(*db);
    auto registry = StartRegistry(db_->url());
    ASSERT_TRUE(registry.ok()) << registry.status();
    registry_ = std::move(*registry);
    client_ = std::make_unique<Registry>(registry_.address);
  }

  std::unique_ptr<TestDatabase> db_;
  ServiceProcess registry_;
  std::unique_ptr<Registry> client_;
};

TEST_F(RegistryTest, RegisterEvaluatePersistsOneWakeAndReEvaluationAddsNone) {
  v1::RegisterWakeResponse registered;
  ASSERT_TRUE(client_->Register(OnRunFinished("/parent/1", "/child/1"), &registered).ok());
  EXPECT_TRUE(registered.created());
  EXPECT_TRUE(registered.confirmed());
  EXPECT_GT(registered.txid(), 0);
  EXPECT_EQ(registered.registration().tenant_id(), "default");

  // Registering the identical row again returns it, created=false.
  v1::RegisterWakeResponse again;
  ASSERT_TRUE(client_->Register(OnRunFinished("/parent/1", "/child/1"), &again).ok());
  EXPECT_FALSE(again.created());
  EXPECT_EQ(again.registration().id(), registered.registration().id());

  v1::EvaluateRunFinishedRequest event = Finished("/child/1", "run-9");
  event.mutable_value()->set_string_value("result");
  v1::EvaluateRunFinishedResponse evaluated;
  ASSERT_TRUE(client_->RunFinished(event, &evaluated).ok());
  ASSERT_THAT(evaluated.wakes(), SizeIs(1));
  const v1::Wake& wake = evaluated.wakes(0);
  EXPECT_EQ(wake.stream(), "/parent/1");
  EXPECT_EQ(wake.source_event_key(), "update:run-9");
  EXPECT_EQ(wake.run_finished_status(), v1::COMPLETED);
  EXPECT_EQ(wake.message().changes(0).value().string_value(), "result");
  EXPECT_EQ(db_->QueryValue("SELECT count(*) FROM wakes"), "1");
  EXPECT_EQ(db_->QueryValue("SELECT stream || ' ' || run_finished_status FROM wakes"),
            "/parent/1 COMPLETED");

  v1::EvaluateRunFinishedResponse repeated;
  ASSERT_TRUE(client_->RunFinished(event, &repeated).ok());
  EXPECT_THAT(repeated.wakes(), SizeIs(0));
  EXPECT_EQ(db_->QueryValue("SELECT count(*) FROM wakes"), "1");
}

TEST_F(RegistryTest, BadInputNamesTheFieldAndWritesNothing) {
  v1::RegisterWakeRequest request = OnRunFinished("", "/child");
  v1::RegisterWakeResponse response;
  grpc::Status status = client_->Register(request, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), StartsWith("subscriber_url"));
  request = OnRunFinished("/p", "/c");
  request.set_debounce_ms(-1);
  status = client_->Register(request, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), StartsWith("debounce_ms"));
  EXPECT_EQ(db_->QueryValue("SELECT count(*) FROM wake_registrations"), "0");

  v1::EvaluateRunFinishedRequest event = Finished("/c", "r");
  event.set_status(v1::RUN_STATUS_UNSPECIFIED);
  v1::EvaluateRunFinishedResponse evaluated;
  status = client_->RunFinished(event, &evaluated);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), StartsWith("status"));
}

TEST_F(RegistryTest, ChangeMatchingTenantsListingAndUnregister) {
  v1::RegisterWakeRequest inbox = OnRunFinished("/parent/2", "/child/2");
  inbox.mutable_condition()->mutable_change()->add_collections("inbox");
  inbox.set_manifest_key("m1");
  v1::RegisterWakeResponse response;
  ASSERT_TRUE(client_->Register(inbox, &response).ok());
  v1::RegisterWakeRequest other_tenant = OnRunFinished("/parent/2", "/child/2");
  other_tenant.set_tenant_id("acme");
  ASSERT_TRUE(client_->Register(other_tenant, &response).ok());

  v1::EvaluateChangeRequest change;
  change.set_source_url("/child/2");
  change.set_collection("inbox");
  change.set_op(v1::INSERT);
  change.set_key("msg-1");
  change.mutable_inbox()->set_from("/agent/x");
  v1::EvaluateChangeResponse evaluated;
  ASSERT_TRUE(client_->Change(change, &evaluated).ok());
  ASSERT_THAT(evaluated.wakes(), SizeIs(1));
  EXPECT_EQ(evaluated.wakes(0).message().changes(0).inbox().from(), "/agent/x");
  EXPECT_EQ(evaluated.wakes(0).tenant_id(), "default");

  v1::ListRegistrationsRequest list;
  list.set_subscriber_url("/parent/2");
  v1::ListRegistrationsResponse listed;
  ASSERT_TRUE(client_->List(list, &listed).ok());
  EXPECT_THAT(listed.registrations(), SizeIs(1));  // Not acme's.
  list.set_tenant_id("acme");
  ASSERT_TRUE(client_->List(list, &listed).ok());
  EXPECT_THAT(listed.registrations(), SizeIs(1));

  v1::UnregisterWakesRequest unregister;
  unregister.mutable_subscriber_manifest()->set_subscriber_url("/parent/2");
  unregister.mutable_subscriber_manifest()->set_manifest_key("m1");
  v1::UnregisterWakesResponse removed;
  ASSERT_TRUE(client_->Unregister(unregister, &removed).ok());
  EXPECT_EQ(removed.removed(), 1);
  list.set_tenant_id("");
  ASSERT_TRUE(client_->List(list, &listed).ok());
  EXPECT_THAT(listed.registrations(), SizeIs(0));
}

// Every row of `tenant` as "subscriber source manifest", sorted.
std::vector<std::string> Rows(Registry& client, const std::string& tenant) {
  std::vector<std::string> rows;
  v1::ListRegistrationsRequest list;
  list.set_tenant_id(tenant);
  list.set_page_size(1000);
  v1::ListRegistrationsResponse listed;
  EXPECT_TRUE(client.List(list, &listed).ok());
  for (const v1::Registration& row : listed.registrations()) {
    rows.push_back(
        absl::StrCat(row.subscriber_url(), " ", row.source_url(), " ", row.manifest_key()));
  }
  std::sort(rows.begin(), rows.end());
  return rows;
}

TEST_F(RegistryTest, EachUnregisterIntentRemovesExactlyItsRowsInItsTenant) {
  // Subscribers /s/a and /s/b, sources /c/1 and /c/2, each pair with and
  // without a manifest key; the same eight rows again in tenant "acme".
  for (const char* tenant : {"default", "acme"}) {
    for (const std::string& subscriber : std::vector<std::string>{"a", "b"}) {
      for (const char* source : {"1", "2"}) {
        for (const std::string& manifest : {std::string(), "m" + subscriber}) {
          v1::RegisterWakeRequest request =
              OnRunFinished("/s/" + subscriber, absl::StrCat("/c/", source));
          request.set_tenant_id(tenant);
          request.set_manifest_key(manifest);
          v1::RegisterWakeResponse response;
          ASSERT_TRUE(client_->Register(request, &response).ok());
        }
      }
    }
  }
  const std::vector<std::string> acme = Rows(*client_, "acme");
  ASSERT_THAT(acme, SizeIs(8));

  auto unregister = [&](const v1::UnregisterWakesRequest& request) {
    v1::UnregisterWakesResponse response;
    grpc::Status status = client_->Unregister(request, &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return response.removed();
  };
  v1::UnregisterWakesRequest by_manifest;
  by_manifest.mutable_subscriber_manifest()->set_subscriber_url("/s/a");
  by_manifest.mutable_subscriber_manifest()->set_manifest_key("ma");
  EXPECT_EQ(unregister(by_manifest), 2);
  EXPECT_THAT(Rows(*client_, ""),
              ::testing::ElementsAre("/s/a /c/1 ", "/s/a /c/2 ", "/s/b /c/1 ", "/s/b /c/1 mb",
                                     "/s/b /c/2 ", "/s/b /c/2 mb"));

  v1::UnregisterWakesRequest by_pair;
  by_pair.mutable_subscriber_source()->set_subscriber_url("/s/b");
  by_pair.mutable_subscriber_source()->set_source_url("/c/1");
  EXPECT_EQ(unregister(by_pair), 2);
  EXPECT_THAT(Rows(*client_, ""),
              ::testing::ElementsAre("/s/a /c/1 ", "/s/a /c/2 ", "/s/b /c/2 ", "/s/b /c/2 mb"));

  v1::UnregisterWakesRequest by_source;
  by_source.mutable_source()->set_source_url("/c/2");
  EXPECT_EQ(unregister(by_source), 3);
  EXPECT_THAT(Rows(*client_, ""), ::testing::ElementsAre("/s/a /c/1 "));

  v1::UnregisterWakesRequest by_subscriber;
  by_subscriber.mutable_subscriber()->set_subscriber_url("/s/a");
  EXPECT_EQ(unregister(by_subscriber), 1);
  EXPECT_THAT(Rows(*client_, ""), SizeIs(0));
  EXPECT_EQ(unregister(by_subscriber), 0);  // Nothing left: nothing removed, no error.

  // Gone at once for evaluation; the other tenant kept all eight.
  v1::EvaluateRunFinishedResponse evaluated;
  ASSERT_TRUE(client_->RunFinished(Finished("/c/1", "run-1"), &evaluated).ok());
  EXPECT_THAT(evaluated.wakes(), SizeIs(0));
  EXPECT_EQ(Rows(*client_, "acme"), acme);
}

TEST_F(RegistryTest, ListPagesThroughEveryRegistration) {
  for (int i = 0; i < 25; ++i) {
    v1::RegisterWakeResponse response;
    ASSERT_TRUE(
        client_->Register(OnRunFinished(absl::StrCat("/p/", i), "/shared"), &response).ok());
  }
  v1::ListRegistrationsRequest list;
  list.set_source_url("/shared");
  list.set_page_size(10);
  int seen = 0;
  int pages = 0;
  for (;;) {
    v1::ListRegistrationsResponse page;
    ASSERT_TRUE(client_->List(list, &page).ok());
    seen += page.registrations_size();
    ++pages;
    if (page.next_page_token().empty()) break;
    list.set_page_token(page.next_page_token());
  }
  EXPECT_EQ(seen, 25);
  EXPECT_EQ(pages, 3);
}

TEST_F(RegistryTest, SubscribeChangesSnapshotThenLiveAndResumeFromAnOffset) {
  v1::RegisterWakeResponse response;
  ASSERT_TRUE(client_->Register(OnRunFinished("/p/a", "/c/a"), &response).ok());

  std::string resume_offset;
  {
    grpc::ClientContext context;
    context.set_deadline(Deadline(20));
    v1::SubscribeChangesRequest request;
    request.set_from_offset("-1");
    auto reader = client_->stub().SubscribeChanges(&context, request);
    v1::ChangeEvent event;
    ASSERT_TRUE(reader->Read(&event));
    ASSERT_TRUE(event.has_registration());
    EXPECT_EQ(event.registration().registration().subscriber_url(), "/p/a");
    ASSERT_TRUE(reader->Read(&event));
    ASSERT_EQ(event.control(), v1::UP_TO_DATE);
    // Live: a new registration arrives with its txid.
    v1::RegisterWakeResponse second;
    grpc::Status registered = client_->Register(OnRunFinished("/p/b", "/c/b"), &second);
    ASSERT_TRUE(registered.ok()) << registered.error_code() << " " << registered.error_message();
    // A change that landed while the snapshot was read may come again live
    // (the protocol sends such changes twice rather than miss one): /p/a's
    // insert can, when its feed entry was appended after the subscriber took
    // the feed's head. Nothing else may come before /p/b.
    do {
      ASSERT_TRUE(reader->Read(&event));
      ASSERT_TRUE(event.has_registration()) << event.DebugString();
    } while (event.registration().registration().id() == response.registration().id());
    EXPECT_EQ(event.registration().op(), v1::INSERT);
    EXPECT_EQ(event.registration().registration().subscriber_url(), "/p/b");
    ASSERT_THAT(event.txids(), SizeIs(1));
    EXPECT_EQ(event.txids(0), second.txid());
    resume_offset = event.offset();
    context.TryCancel();
  }
  // Changes made while nobody listened arrive after resuming from the offset.
  v1::RegisterWakeResponse third;
  ASSERT_TRUE(client_->Register(OnRunFinished("/p/c", "/c/c"), &third).ok());
  {
    grpc::ClientContext context;
    context.set_deadline(Deadline(20));
    v1::SubscribeChangesRequest request;
    request.set_from_offset(resume_offset);
    auto reader = client_->stub().SubscribeChanges(&context, request);
    v1::ChangeEvent event;
    ASSERT_TRUE(reader->Read(&event));
    ASSERT_TRUE(event.has_registration()) << event.DebugString();
    EXPECT_EQ(event.registration().registration().subscriber_url(), "/p/c");
    resume_offset = event.offset();
    ASSERT_TRUE(reader->Read(&event));
    EXPECT_EQ(event.control(), v1::UP_TO_DATE) << event.DebugString();
    context.TryCancel();
  }
  // Resuming where nothing new happened since: told it is up to date at once.
  {
    grpc::ClientContext context;
    context.set_deadline(Deadline(20));
    v1::SubscribeChangesRequest request;
    request.set_from_offset(resume_offset);
    request.add_kinds(v1::ChangeEvent::WAKE);
    request.add_kinds(v1::ChangeEvent::CONTROL);
    auto reader = client_->stub().SubscribeChanges(&context, request);
    v1::ChangeEvent event;
    ASSERT_TRUE(reader->Read(&event));
    EXPECT_EQ(event.control(), v1::UP_TO_DATE) << event.DebugString();
    EXPECT_EQ(event.offset(), resume_offset);
    context.TryCancel();
  }
  // An offset this registry never sent: refetch.
  {
    grpc::ClientContext context;
    context.set_deadline(Deadline(20));
    v1::SubscribeChangesRequest request;
    request.set_from_offset("ffffffffffffffff_3");
    auto reader = client_->stub().SubscribeChanges(&context, request);
    v1::ChangeEvent event;
    ASSERT_TRUE(reader->Read(&event));
    EXPECT_EQ(event.control(), v1::MUST_REFETCH);
    EXPECT_FALSE(reader->Read(&event));
    EXPECT_TRUE(reader->Finish().ok());
  }
}

TEST_F(RegistryTest, ClaimAckAndLeaseExpiry) {
  v1::RegisterWakeResponse registered;
  ASSERT_TRUE(client_->Register(OnRunFinished("/parent/c", "/child/c"), &registered).ok());
  for (const char* run : {"r1", "r2"}) {
    v1::EvaluateRunFinishedResponse evaluated;
    ASSERT_TRUE(client_->RunFinished(Finished("/child/c", run), &evaluated).ok());
  }
  v1::ClaimWakesRequest claim;
  claim.set_stream("/parent/c");
  claim.set_runner_id("runner-1");
  claim.mutable_lease()->set_seconds(1);
  v1::ClaimWakesResponse claimed;
  {
    grpc::ClientContext context;
    ASSERT_TRUE(client_->stub().ClaimWakes(&context, claim, &claimed).ok());
  }
  ASSERT_EQ(claimed.status(), v1::CLAIMED);
  EXPECT_THAT(claimed.wakes(), SizeIs(2));
  {
    v1::ClaimWakesResponse second;
    grpc::ClientContext context;
    ASSERT_TRUE(client_->stub().ClaimWakes(&context, claim, &second).ok());
    EXPECT_EQ(second.status(), v1::ALREADY_CLAIMED);
  }
  // The lease runs out: the sweeper returns the wakes and they can be claimed again.
  v1::ClaimWakesResponse reclaimed;
  grpc::Status reclaim_status;
  WaitUntil(
      [&] {
        grpc::ClientContext context;
        reclaim_status = client_->stub().ClaimWakes(&context, claim, &reclaimed);
        return !reclaim_status.ok() || reclaimed.status() == v1::CLAIMED;
      },
      absl::Now() + absl::Seconds(15));
  ASSERT_THAT(reclaim_status, IsOk());
  ASSERT_EQ(reclaimed.status(), v1::CLAIMED);
  EXPECT_THAT(reclaimed.wakes(), SizeIs(2));
  // The stale token can no longer ack.
  v1::AckWakesRequest stale;
  stale.set_stream("/parent/c");
  stale.set_claim_token(claimed.claim_token());
  v1::AckWakesResponse acked;
  {
    grpc::ClientContext context;
    grpc::Status status = client_->stub().AckWakes(&context, stale, &acked);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  }
  // A new wake arrives during the claim: ack reports more_pending.
  v1::EvaluateRunFinishedResponse evaluated;
  ASSERT_TRUE(client_->RunFinished(Finished("/child/c", "r3"), &evaluated).ok());
  v1::AckWakesRequest ack;
  ack.set_stream("/parent/c");
  ack.set_claim_token(reclaimed.claim_token());
  {
    grpc::ClientContext context;
    ASSERT_TRUE(client_->stub().AckWakes(&context, ack, &acked).ok());
  }
  EXPECT_EQ(acked.acked(), 2);
  EXPECT_TRUE(acked.more_pending());
  EXPECT_EQ(db_->QueryValue("SELECT count(*) FROM wakes"), "1");
}

// A ClaimWakes whose answer was lost, sent again with its idempotency key,
// is answered with the claim it took, over gRPC as over the store; without
// the key the stream stays claimed. A malformed key is refused by name.
TEST_F(RegistryTest, ClaimRetriedWithItsIdempotencyKeyGetsItsClaimBack) {
  v1::RegisterWakeResponse registered;
  ASSERT_TRUE(client_->Register(OnRunFinished("/parent/k", "/child/k"), &registered).ok());
  v1::EvaluateRunFinishedResponse evaluated;
  ASSERT_TRUE(client_->RunFinished(Finished("/child/k", "r1"), &evaluated).ok());
  v1::ClaimWakesRequest claim;
  claim.set_stream("/parent/k");
  claim.set_runner_id("runner-1");
  claim.set_idempotency_key("0123456789abcdef0123456789abcdef");
  auto claim_wakes = [this](const v1::ClaimWakesRequest& request, v1::ClaimWakesResponse* out) {
    grpc::ClientContext context;
    return client_->stub().ClaimWakes(&context, request, out);
  };
  v1::ClaimWakesResponse first;
  ASSERT_THAT(claim_wakes(claim, &first), IsOk());
  ASSERT_EQ(first.status(), v1::CLAIMED);
  ASSERT_THAT(first.wakes(), SizeIs(1));

  v1::ClaimWakesRequest keyless = claim;
  keyless.clear_idempotency_key();
  v1::ClaimWakesResponse other;
  ASSERT_THAT(claim_wakes(keyless, &other), IsOk());
  EXPECT_EQ(other.status(), v1::ALREADY_CLAIMED);

  v1::ClaimWakesResponse retried;
  ASSERT_THAT(claim_wakes(claim, &retried), IsOk());
  ASSERT_EQ(retried.status(), v1::CLAIMED);
  EXPECT_EQ(retried.claim_token(), first.claim_token());
  ASSERT_THAT(retried.wakes(), SizeIs(1));
  EXPECT_EQ(retried.wakes(0).id(), first.wakes(0).id());

  v1::ClaimWakesRequest bad = claim;
  bad.set_idempotency_key("short");
  v1::ClaimWakesResponse refused;
  grpc::Status status = claim_wakes(bad, &refused);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("idempotency_key"));

  v1::AckWakesRequest ack;
  ack.set_stream("/parent/k");
  ack.set_claim_token(first.claim_token());
  v1::AckWakesResponse acked;
  grpc::ClientContext context;
  ASSERT_THAT(client_->stub().AckWakes(&context, ack, &acked), IsOk());
  EXPECT_EQ(acked.acked(), 1);
}

// The core guarantee: a RegisterWake that returned on replica A is seen by
// an evaluation on replica B right after, every time.
TEST_F(RegistryTest, RegistrationOnAIsMatchedOnBImmediately1000Times) {
  auto replica = StartRegistry(db_->url());
  ASSERT_TRUE(replica.ok()) << replica.status();
  Registry b(replica->address);
  int misses = 0;
  for (int i = 0; i < 1000; ++i) {
    const std::string child = absl::StrCat("/child/", i);
    v1::RegisterWakeResponse registered;
    ASSERT_TRUE(
        client_->Register(OnRunFinished(absl::StrCat("/parent/", i), child), &registered).ok());
    v1::EvaluateRunFinishedResponse evaluated;
    ASSERT_TRUE(b.RunFinished(Finished(child, "r"), &evaluated).ok());
    if (evaluated.wakes_size() != 1) ++misses;
  }
  EXPECT_EQ(misses, 0);
  EXPECT_EQ(db_->QueryValue("SELECT count(*) FROM wakes"), "1000");
}

// The read barrier waits for the WAL flush position, so it holds only for
// writes flushed before their commit returned: with the database's default
// synchronous_commit=off, a one-shot registration deleted by an evaluation
// on A would still be listed by a strong read on B a moment later.
TEST_F(RegistryTest, BarrierHoldsWhenTheDatabaseDefaultsToAsynchronousCommit) {
  db_->QueryValue(absl::StrCat("ALTER DATABASE ", db_->name(), " SET synchronous_commit = off"));
  auto a_process = StartRegistry(db_->url());
  ASSERT_TRUE(a_process.ok()) << a_process.status();
  auto b_process = StartRegistry(db_->url());
  ASSERT_TRUE(b_process.ok()) << b_process.status();
  Registry a(a_process->address);
  Registry b(b_process->address);
  int stale = 0;
  constexpr int kRounds = 100;
  for (int i = 0; i < kRounds; ++i) {
    const std::string parent = absl::StrCat("/parent/", i);
    const std::string child = absl::StrCat("/child/", i);
    v1::RegisterWakeResponse registered;
    const grpc::Status status =
        a.Register(OnRunFinished(parent, child, /*one_shot=*/true), &registered);
    ASSERT_TRUE(status.ok()) << status.error_message();
    // The wake deletes the one-shot registration; nothing waits for the
    // stream to show that delete.
    v1::EvaluateRunFinishedResponse evaluated;
    ASSERT_TRUE(a.RunFinished(Finished(child, "r"), &evaluated).ok());
    ASSERT_EQ(evaluated.wakes_size(), 1) << "round " << i;
    v1::ListRegistrationsRequest list;
    list.set_subscriber_url(parent);
    v1::ListRegistrationsResponse listed;
    ASSERT_TRUE(b.List(list, &listed).ok());
    if (listed.registrations_size() != 0) ++stale;
  }
  EXPECT_EQ(stale, 0) << "of " << kRounds << " strong reads on B";
}

TEST_F(RegistryTest, OneShotEvaluatedConcurrentlyOnTwoReplicasWakesExactlyOnce) {
  auto replica = StartRegistry(db_->url());
  ASSERT_TRUE(replica.ok()) << replica.status();
  Registry b(replica->address);
  constexpr int kRounds = 50;
  for (int i = 0; i < kRounds; ++i) {
    const std::string child = absl::StrCat("/child/", i);
    v1::RegisterWakeResponse registered;
    ASSERT_TRUE(client_
                    ->Register(OnRunFinished(absl::StrCat("/parent/", i), child, /*one_shot=*/true),
                               &registered)
                    .ok());
    std::atomic<int> delivered{0};
    // Different events (two children finishing) racing on the two replicas.
    // Both evaluations must succeed: one wake between them, not one because
    // the other replica failed.
    grpc::Status status_a, status_b;
    std::thread on_a([&] {
      v1::EvaluateRunFinishedResponse response;
      status_a = client_->RunFinished(Finished(child, "run-a"), &response);
      delivered += response.wakes_size();
    });
    std::thread on_b([&] {
      v1::EvaluateRunFinishedResponse response;
      status_b = b.RunFinished(Finished(child, "run-b"), &response);
      delivered += response.wakes_size();
    });
    on_a.join();
    on_b.join();
    ASSERT_TRUE(status_a.ok()) << "round " << i << ": " << status_a.error_message();
    ASSERT_TRUE(status_b.ok()) << "round " << i << ": " << status_b.error_message();
    EXPECT_EQ(delivered.load(), 1) << "round " << i;
  }
  EXPECT_EQ(db_->QueryValue("SELECT count(*) FROM wakes"), std::to_string(kRounds));
  EXPECT_EQ(db_->QueryValue("SELECT count(*) FROM wake_registrations"), "0");
}

TEST(RegistryRestartTest, SurvivesAPostgresRestartAndResyncs) {
  auto cluster = PrivateCluster::Create();
  ASSERT_TRUE(cluster.ok()) << cluster.status();
  auto registry = StartRegistry((*cluster)->url());
  ASSERT_TRUE(registry.ok()) << registry.status();
  Registry client(registry->address);
  v1::RegisterWakeResponse before;
  ASSERT_TRUE(client.Register(OnRunFinished("/p/before", "/c/before"), &before).ok());

  ASSERT_TRUE((*cluster)->Stop().ok());
  // While the database is down: UNAVAILABLE, never a crash.
  v1::RegisterWakeResponse refused;
  grpc::Status down = client.Register(OnRunFinished("/p/down", "/c/down"), &refused);
  EXPECT_EQ(down.error_code(), grpc::StatusCode::UNAVAILABLE) << down.error_message();
  EXPECT_TRUE(registry->process->Running());
  ASSERT_TRUE((*cluster)->Start().ok());

  // Writes work again and the synced view catches up: a registration made
  // after the restart is matched by a strong evaluation.
  v1::RegisterWakeResponse after;
  grpc::Status status;
  const absl::Time deadline = absl::Now() + absl::Seconds(60);
  WaitUntil(
      [&] {
        status = client.Register(OnRunFinished("/p/after", "/c/after"), &after);
        return status.ok();
      },
      deadline, absl::Milliseconds(100));
  ASSERT_TRUE(status.ok()) << status.error_message();
  for (const char* child : {"/c/before", "/c/after"}) {
    v1::EvaluateRunFinishedResponse evaluated;
    WaitUntil(
        [&] {
          status = client.RunFinished(Finished(child, "r"), &evaluated);
          return status.ok();
        },
        deadline, absl::Milliseconds(100));
    ASSERT_TRUE(status.ok()) << status.error_message();
    EXPECT_THAT(evaluated.wakes(), SizeIs(1)) << child;
  }
  EXPECT_THAT(registry->process->ReadLog(), HasSubstr("sync_disconnected"));
}

// scripts/run.sh connects the embedded default through the local cluster's
// Unix socket: every connection of the registry (its pool, the replication
// stream, the barrier's position queries) must work that way.
TEST(RegistryUnixSocketTest, WritesAreConfirmedAndMatchedOverTheSocket) {
  auto cluster = PrivateCluster::Create();
  ASSERT_TRUE(cluster.ok()) << cluster.status();
  auto registry = StartRegistry((*cluster)->url());
  ASSERT_TRUE(registry.ok()) << registry.status();
  Registry client(registry->address);
  v1::RegisterWakeResponse registered;
  ASSERT_TRUE(client.Register(OnRunFinished("/p/socket", "/c/socket"), &registered).ok());
  EXPECT_TRUE(registered.confirmed());
  v1::EvaluateRunFinishedResponse evaluated;
  ASSERT_TRUE(client.RunFinished(Finished("/c/socket", "r"), &evaluated).ok());
  EXPECT_THAT(evaluated.wakes(), SizeIs(1));

  // Socket clients have no address: nothing reached the server over TCP.
  pqxx::connection admin((*cluster)->url());
  pqxx::work tx(admin);
  EXPECT_EQ(tx.exec1("SELECT count(*) FROM pg_stat_activity "
                     "WHERE backend_type = 'walsender' AND client_addr IS NULL")[0]
                .as<int>(),
            1);
  EXPECT_EQ(
      tx.exec1("SELECT count(*) FROM pg_stat_activity WHERE client_addr IS NOT NULL")[0].as<int>(),
      0);
}

}  // namespace
}  // namespace wake::testing
