// What must survive a registry process, end to end on the real binaries:
// debounced matches buffered by a registry that is SIGKILLed, timeouts that
// fall due while no registry runs, and the idempotency of an event whose
// wake was already acked, plus debounce windows that are never merged or
// dropped because of an earlier window.
//
// What it catches: debounce buffers held in one process's memory, timeouts
// armed only by a timer that died with its process, idempotency keys that go
// with the acked wake row, and one window's wake key colliding with the next.
#include <signal.h>

#include <algorithm>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/e2e/e2e_support.h"
#include "tests/support/service_process.h"
#include "tests/support/test_database.h"
#include "tests/support/wait_until.h"

namespace wake::testing {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

constexpr absl::Duration kWait = absl::Seconds(20);

std::chrono::system_clock::time_point Deadline() {
  return std::chrono::system_clock::now() + std::chrono::seconds(10);
}

// A blocking client of the calls these tests need beyond e2e_support's.
class Client {
 public:
  explicit Client(const std::string& address)
      : stub_(v1::WakeRegistry::NewStub(Connect(address))) {}

  absl::StatusOr<v1::RegisterWakeResponse> Register(const v1::RegisterWakeRequest& request) {
    grpc::ClientContext context;
    context.set_deadline(Deadline());
    v1::RegisterWakeResponse response;
    grpc::Status status = stub_->RegisterWake(&context, request, &response);
    if (!status.ok()) return absl::UnknownError(status.error_message());
    return response;
  }

  absl::StatusOr<v1::EvaluateChangeResponse> Change(const std::string& source,
                                                    const std::string& key,
                                                    const std::string& offset) {
    v1::EvaluateChangeRequest request;
    request.set_source_url(source);
    request.set_collection("items");
    request.set_op(v1::UPDATE);
    request.set_key(key);
    request.set_offset(offset);
    request.mutable_value()->set_string_value(absl::StrCat("value of ", key));
    grpc::ClientContext context;
    context.set_deadline(Deadline());
    v1::EvaluateChangeResponse response;
    grpc::Status status = stub_->EvaluateChange(&context, request, &response);
    if (!status.ok()) return absl::UnknownError(status.error_message());
    return response;
  }

  absl::StatusOr<v1::EvaluateRunFinishedResponse> Finished(const std::string& source,
                                                           const std::string& run_key,
                                                           const std::string& offset) {
    v1::EvaluateRunFinishedRequest request;
    request.set_source_url(source);
    request.set_run_key(run_key);
    request.set_status(v1::COMPLETED);
    request.set_offset(offset);
    grpc::ClientContext context;
    context.set_deadline(Deadline());
    v1::EvaluateRunFinishedResponse response;
    grpc::Status status = stub_->EvaluateRunFinished(&context, request, &response);
    if (!status.ok()) return absl::UnknownError(status.error_message());
    return response;
  }

 private:
  std::unique_ptr<v1::WakeRegistry::Stub> stub_;
};

v1::RegisterWakeRequest OnItems(const std::string& parent, const std::string& child,
                                int32_t debounce_ms) {
  v1::RegisterWakeRequest request;
  request.set_subscriber_url(parent);
  request.set_source_url(child);
  request.mutable_condition()->mutable_change()->add_collections("items");
  request.set_debounce_ms(debounce_ms);
  return request;
}

std::vector<std::string> ChangeKeys(const v1::Wake& wake) {
  std::vector<std::string> keys;
  for (const v1::WakeChange& change : wake.message().changes()) keys.push_back(change.key());
  return keys;
}

// Waits until `ledger` holds `count` acked deliveries for `stream`.
bool AwaitDeliveries(Ledger& ledger, const std::string& stream, size_t count,
                     absl::Duration timeout) {
  return WaitUntil(
      [&] {
        size_t acked = 0;
        for (const Delivery& delivery : ledger.Deliveries()) {
          if (delivery.claim.stream() == stream && delivery.ack_status.ok()) ++acked;
        }
        return acked >= count;
      },
      absl::Now() + timeout);
}

std::vector<v1::Wake> DeliveredWakes(Ledger& ledger, const std::string& stream) {
  std::vector<v1::Wake> wakes;
  for (const Delivery& delivery : ledger.Deliveries()) {
    if (delivery.claim.stream() != stream) continue;
    for (const v1::Wake& wake : delivery.claim.wakes()) wakes.push_back(wake);
  }
  return wakes;
}

class DurableEventsE2eTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto db = TestDatabase::Create();
    ASSERT_TRUE(db.ok()) << db.status();
    db_ = std::move(*db);
  }

  // A runtime following `registry_address` with one acking runner.
  void StartRuntimeAndRunner(const std::string& registry_address) {
    auto runtime = StartRuntime(registry_address, {"--runtime-id=runtime-1"});
    ASSERT_TRUE(runtime.ok()) << runtime.status();
    runtime_ = std::move(*runtime);
    RecordingRunnerOptions options;
    options.runner.runner_id = "runner-1";
    auto runner = RecordingRunner::Connect(Connect(runtime_.address), options, ledger_);
    ASSERT_TRUE(runner.ok()) << runner.status();
    runner_ = std::move(*runner);
  }

  std::unique_ptr<TestDatabase> db_;
  ServiceProcess runtime_;
  Ledger ledger_;
  std::unique_ptr<RecordingRunner> runner_;
};

TEST_F(DurableEventsE2eTest, DebouncedMatchesSurviveASigkillOfTheRegistryThatBufferedThem) {
  auto doomed = StartRegistry(db_->url());
  ASSERT_TRUE(doomed.ok()) << doomed.status();
  auto survivor = StartRegistry(db_->url());
  ASSERT_TRUE(survivor.ok()) << survivor.status();
  StartRuntimeAndRunner(survivor->address);
  Client client(doomed->address);
  ASSERT_TRUE(client.Register(OnItems("/parent/d", "/child/d", 1500)).ok());
  for (int i = 1; i <= 3; ++i) {
    absl::StatusOr<v1::EvaluateChangeResponse> matched =
        client.Change("/child/d", absl::StrCat("k", i), absl::StrCat("000", i));
    ASSERT_TRUE(matched.ok()) << matched.status();
    EXPECT_EQ(matched->debounced(), 1);
    EXPECT_EQ(matched->wakes_size(), 0);
  }
  // Acknowledged as buffered, then the registry that buffered them dies
  // before its window timer fires.
  doomed->process->Signal(SIGKILL);
  ASSERT_EQ(doomed->process->WaitForExit(absl::Seconds(10)), 128 + SIGKILL);

  ASSERT_TRUE(AwaitDeliveries(ledger_, "/parent/d", 1, kWait)) << "survivor log:\n"
                                                               << survivor->process->ReadLog();
  const std::vector<v1::Wake> wakes = DeliveredWakes(ledger_, "/parent/d");
  ASSERT_EQ(wakes.size(), 1u);
  EXPECT_THAT(ChangeKeys(wakes[0]), ElementsAre("k1", "k2", "k3"));
  EXPECT_EQ(wakes[0].message().changes(2).value().string_value(), "value of k3");
  EXPECT_EQ(db_->QueryValue("SELECT count(*) FROM debounce_windows"), "0");
  EXPECT_EQ(db_->QueryValue("SELECT count(*) FROM debounced_changes"), "0");
  EXPECT_THAT(ledger_.RedeliveredAfterAck(), IsEmpty());
}

TEST_F(DurableEventsE2eTest, TwoWindowsWithTheSameFirstRowEachMakeTheirOwnWake) {
  auto registry = StartRegistry(db_->url());
  ASSERT_TRUE(registry.ok()) << registry.status();
  Client client(registry->address);
  ASSERT_TRUE(client.Register(OnItems("/parent/w", "/child/w", 200)).ok());
  // Window 1: an update of row "k". Its wake stays pending (no runtime).
  ASSERT_TRUE(client.Change("/child/w", "k", "0001").ok());
  auto pending = [&](const std::string& count) {
    return WaitUntil([&] { return db_->QueryValue("SELECT count(*) FROM wakes") == count; },
                     absl::Now() + kWait);
  };
  ASSERT_TRUE(pending("1")) << registry->process->ReadLog();
  // Window 2 starts with row "k" again (a new event), and a replay of
  // window 1's event, which joins nothing.
  absl::StatusOr<v1::EvaluateChangeResponse> second = client.Change("/child/w", "k", "0002");
  ASSERT_TRUE(second.ok());
  EXPECT_EQ(second->debounced(), 1);
  absl::StatusOr<v1::EvaluateChangeResponse> replay = client.Change("/child/w", "k", "0001");
  ASSERT_TRUE(replay.ok());
  EXPECT_EQ(replay->debounced(), 0);
  ASSERT_TRUE(pending("2")) << registry->process->ReadLog();

  // Without offsets: window 3 is one "update:k"; the next window begins with
  // "update:k" again (a replay by the idempotency rule, so it joins nothing)
  // and then row "j". That window is not dropped for the clash of its first
  // event with window 3's first key (as it was when the wake's key was
  // "debounce:<first key>"): j gets its wake.
  ASSERT_TRUE(client.Change("/child/w", "k", "").ok());
  ASSERT_TRUE(pending("3")) << registry->process->ReadLog();
  absl::StatusOr<v1::EvaluateChangeResponse> clash = client.Change("/child/w", "k", "");
  ASSERT_TRUE(clash.ok());
  EXPECT_EQ(clash->debounced(), 0);
  ASSERT_TRUE(client.Change("/child/w", "j", "").ok());
  ASSERT_TRUE(pending("4")) << registry->process->ReadLog();

  StartRuntimeAndRunner(registry->address);
  WaitUntil([&] { return DeliveredWakes(ledger_, "/parent/w").size() >= 4; }, absl::Now() + kWait);
  std::vector<v1::Wake> wakes = DeliveredWakes(ledger_, "/parent/w");
  ASSERT_EQ(wakes.size(), 4u);
  std::sort(wakes.begin(), wakes.end(),
            [](const v1::Wake& a, const v1::Wake& b) { return a.id() < b.id(); });
  EXPECT_THAT(ChangeKeys(wakes[0]), ElementsAre("k"));
  EXPECT_THAT(ChangeKeys(wakes[1]), ElementsAre("k"));
  EXPECT_THAT(ChangeKeys(wakes[2]), ElementsAre("k"));
  EXPECT_THAT(ChangeKeys(wakes[3]), ElementsAre("j"));
  std::set<std::string> keys;
  for (const v1::Wake& wake : wakes) keys.insert(wake.source_event_key());
  EXPECT_EQ(keys.size(), 4u);
}

TEST_F(DurableEventsE2eTest, ReEvaluationAfterTheAckMakesNoSecondWakeOnAnyReplica) {
  auto a = StartRegistry(db_->url());
  ASSERT_TRUE(a.ok()) << a.status();
  auto b = StartRegistry(db_->url());
  ASSERT_TRUE(b.ok()) << b.status();
  StartRuntimeAndRunner(a->address);
  RegistryClient registrar(a->address);
  ASSERT_TRUE(registrar.RegisterRunFinished("/parent/r", "/child/r").ok());
  Client on_a(a->address);
  Client on_b(b->address);
  // One event with an offset, one without.
  for (const auto& [run_key, offset] :
       {std::pair<std::string, std::string>{"run-1", "0000_0001"}, {"run-2", ""}}) {
    absl::StatusOr<v1::EvaluateRunFinishedResponse> first =
        on_a.Finished("/child/r", run_key, offset);
    ASSERT_TRUE(first.ok()) << first.status();
    ASSERT_EQ(first->wakes_size(), 1);
    ASSERT_TRUE(ledger_.AwaitAcked({first->wakes(0).id()}, kWait));
    EXPECT_EQ(db_->QueryValue("SELECT count(*) FROM wakes"), "0");
    // The event comes again (its source replays it) on both replicas.
    for (Client* replica : {&on_a, &on_b}) {
      absl::StatusOr<v1::EvaluateRunFinishedResponse> again =
          replica->Finished("/child/r", run_key, offset);
      ASSERT_TRUE(again.ok()) << again.status();
      EXPECT_EQ(again->wakes_size(), 0) << run_key;
    }
  }
  EXPECT_EQ(db_->QueryValue("SELECT count(*) FROM wakes"), "0");
  EXPECT_EQ(DeliveredWakes(ledger_, "/parent/r").size(), 2u);
}

TEST_F(DurableEventsE2eTest, TimeoutDueWhileNoRegistryRanFiresWhenOneReturns) {
  auto registry = StartRegistry(db_->url());
  ASSERT_TRUE(registry.ok()) << registry.status();
  const std::string address = registry->address;
  StartRuntimeAndRunner(address);
  v1::RegisterWakeRequest request;
  request.set_subscriber_url("/parent/t");
  request.set_source_url("/child/t");
  request.mutable_condition()->mutable_run_finished();
  request.set_timeout_ms(1500);
  Client client(address);
  ASSERT_TRUE(client.Register(request).ok());
  registry->process->Signal(SIGKILL);
  ASSERT_EQ(registry->process->WaitForExit(absl::Seconds(10)), 128 + SIGKILL);
  // The deadline passes while no registry runs.
  absl::SleepFor(absl::Seconds(2));
  EXPECT_EQ(db_->QueryValue("SELECT count(*) FROM wakes"), "0");
  auto back = StartRegistry(db_->url(), {absl::StrCat("--listen=", address)});
  ASSERT_TRUE(back.ok()) << back.status();
  ASSERT_TRUE(AwaitDeliveries(ledger_, "/parent/t", 1, kWait))
      << "registry log:\n"
      << back->process->ReadLog() << "\nruntime log:\n"
      << runtime_.process->ReadLog();
  const std::vector<v1::Wake> wakes = DeliveredWakes(ledger_, "/parent/t");
  ASSERT_EQ(wakes.size(), 1u);
  EXPECT_TRUE(wakes[0].message().timeout());
  EXPECT_EQ(db_->QueryValue("SELECT timeout_consumed FROM wake_registrations"), "t");
}

}  // namespace
}  // namespace wake::testing
