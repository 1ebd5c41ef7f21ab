// ElectricSyncSource against a scripted Electric over real loopback HTTP:
// paging, live polls, refetch/409, backoff, malformed responses, tenant
// scoping, txids, the read barrier and startup failures.
#include "common/sync/electric/electric_sync_source.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/real_time_source.h"
#include "common/simulated_time_source.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/electric/recording_observer.h"
#include "tests/electric/scripted_electric_server.h"
#include "tests/support/status_matchers.h"

namespace wake::sync {
namespace {

using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::UnorderedElementsAre;
using ::wake::testing::CannedResponse;
using ::wake::testing::IsOk;
using ::wake::testing::RecordingObserver;
using ::wake::testing::ScriptedElectricServer;
using ::wake::testing::ShapeChangeMessage;
using ::wake::testing::ShapeRequest;
using ::wake::testing::StatusIs;
using Kind = RecordingObserver::Kind;
using State = RecordingObserver::State;

constexpr char kRegistrations[] = "wake_registrations";
constexpr char kWakes[] = "wakes";
constexpr absl::Duration kWait = absl::Seconds(20);

nlohmann::json RegistrationValue(int64_t id, const std::string& tenant = "default") {
  return {{"id", std::to_string(id)},
          {"tenant_id", tenant},
          {"subscriber_url", absl::StrCat("/parent/", id)},
          {"source_url", absl::StrCat("/child/", id)},
          {"condition", R"({"on": "runFinished"})"},
          {"debounce_ms", "0"},
          {"timeout_ms", "0"},
          {"one_shot", "f"},
          {"timeout_consumed", "f"},
          {"include_response", "t"},
          {"manifest_key", ""},
          {"created_at", "2026-01-02 03:04:05.678901+00"}};
}

nlohmann::json Insert(int64_t id, std::vector<int64_t> txids = {}) {
  return ShapeChangeMessage(kRegistrations, "insert", RegistrationValue(id), txids,
                            txids.empty() ? std::nullopt : std::optional<bool>(true));
}

std::vector<nlohmann::json> Snapshot(std::vector<int64_t> ids) {
  std::vector<nlohmann::json> log;
  for (int64_t id : ids) log.push_back(Insert(id));
  return log;
}

bool IsLive(const ShapeRequest& r) { return r.live(); }

std::vector<int64_t> Ids(const State& state) {
  std::vector<int64_t> ids;
  for (const auto& [id, row] : state.registrations) ids.push_back(id);
  return ids;
}

std::vector<int64_t> BatchIds(const RecordingObserver::Event& event) {
  std::vector<int64_t> ids;
  for (const RowChange& c : event.batch.changes) {
    ids.push_back(c.registration.has_value() ? c.registration->id : c.wake->id);
  }
  return ids;
}

bool EverApplied(const State& state, int64_t id) {
  for (const auto& e : state.events) {
    for (int64_t seen : BatchIds(e)) {
      if (seen == id) return true;
    }
  }
  return false;
}

class ElectricSyncSourceTest : public ::testing::Test {
 protected:
  void StartServer(ScriptedElectricServer::Options options = {}) {
    auto server = ScriptedElectricServer::Start(options);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
    server_->CreateShape(kRegistrations, "reg-1");
    server_->CreateShape(kWakes, "wakes-1");
    server_->SetGlobalLsn(100);
  }

  ElectricSyncConfig Config() {
    ElectricSyncConfig config;
    config.url = server_->url();
    config.follow_wakes = false;
    config.backoff_initial = absl::Milliseconds(5);
    config.backoff_max = absl::Milliseconds(20);
    config.barrier_poll_interval = absl::Milliseconds(10);
    return config;
  }

  std::unique_ptr<ElectricSyncSource> MakeSource(const ElectricSyncConfig& config,
                                                 common::TimeSource& time) {
    return std::make_unique<ElectricSyncSource>(config, time, [this]() -> absl::StatusOr<uint64_t> {
      ++lsn_calls_;
      if (!lsn_error_.ok()) return lsn_error_;
      return current_lsn_.load();
    });
  }
  std::unique_ptr<ElectricSyncSource> MakeSource(const ElectricSyncConfig& config) {
    return MakeSource(config, time_);
  }

  void TearDown() override {
    if (source_ != nullptr) source_->Stop();
    EXPECT_FALSE(observer_.overlapped()) << "observer calls overlapped";
  }

  common::RealTimeSource time_;
  RecordingObserver observer_;
  std::unique_ptr<ScriptedElectricServer> server_;
  std::unique_ptr<ElectricSyncSource> source_;
  std::atomic<uint64_t> current_lsn_{100};
  std::atomic<int> lsn_calls_{0};
  absl::Status lsn_error_;
};

TEST_F(ElectricSyncSourceTest, InitialSyncPagesThroughTheSnapshotThenGoesLive) {
  StartServer({/*page_size=*/2});
  server_->Append(kRegistrations, Snapshot({1, 2, 3, 4, 5}));
  source_ = MakeSource(Config());
  ASSERT_THAT(source_->Start(observer_, kWait), IsOk());

  State state = observer_.Snapshot();
  ASSERT_GE(state.events.size(), 5u);
  EXPECT_EQ(state.events[0].kind, Kind::kReset);
  EXPECT_THAT(BatchIds(state.events[1]), ElementsAre(1, 2));
  EXPECT_THAT(BatchIds(state.events[2]), ElementsAre(3, 4));
  EXPECT_THAT(BatchIds(state.events[3]), ElementsAre(5));
  EXPECT_EQ(state.events[4].kind, Kind::kUpToDate);
  for (int i = 1; i <= 3; ++i) EXPECT_THAT(state.events[i].batch.txids, IsEmpty());
  EXPECT_THAT(Ids(state), ElementsAre(1, 2, 3, 4, 5));
  const Registration& row = state.registrations.at(3);
  EXPECT_EQ(row.subscriber_url, "/parent/3");
  EXPECT_EQ(row.condition.kind, ConditionKind::kRunFinished);
  EXPECT_TRUE(row.include_response);
  EXPECT_EQ(row.created_at, absl::FromUnixMicros(1767323045678901));

  ASSERT_TRUE(server_->WaitForRequests(IsLive, 1, kWait));
  std::vector<ShapeRequest> requests = server_->Requests();
  ASSERT_GE(requests.size(), 4u);
  const std::string columns =
      "id,tenant_id,subscriber_url,source_url,condition,debounce_ms,timeout_ms,one_shot,"
      "timeout_consumed,include_response,manifest_key,created_at";
  for (const ShapeRequest& r : requests) {
    EXPECT_EQ(r.path, "/v1/shape");
    EXPECT_EQ(r.table(), kRegistrations);
    EXPECT_EQ(r.Param("replica"), "full");
    EXPECT_EQ(r.Param("columns"), columns);
    EXPECT_FALSE(r.Has("where"));
    EXPECT_FALSE(r.Has("secret"));
  }
  EXPECT_EQ(requests[0].Param("offset"), "-1");
  EXPECT_FALSE(requests[0].Has("handle"));
  EXPECT_FALSE(requests[0].live());
  EXPECT_EQ(requests[1].Param("offset"), "2_0");
  EXPECT_EQ(requests[1].Param("handle"), "reg-1");
  EXPECT_FALSE(requests[1].live());
  EXPECT_EQ(requests[2].Param("offset"), "4_0");
  EXPECT_TRUE(requests[3].live());
  EXPECT_EQ(requests[3].Param("offset"), "5_0");
  EXPECT_EQ(requests[3].Param("handle"), "reg-1");
}

TEST_F(ElectricSyncSourceTest, LiveChangesArriveAsBatchesWithTheirTxids) {
  StartServer();
  server_->Append(kRegistrations, Snapshot({1}));
  source_ = MakeSource(Config());
  ASSERT_THAT(source_->Start(observer_, kWait), IsOk());
  ASSERT_TRUE(server_->WaitForRequests(IsLive, 1, kWait));

  server_->Append(kRegistrations, {Insert(2, {700})});
  ASSERT_TRUE(observer_.WaitFor([](const State& s) { return s.registrations.count(2) > 0; }));

  nlohmann::json updated = RegistrationValue(1);
  updated["timeout_consumed"] = "t";
  server_->Append(kRegistrations,
                  {ShapeChangeMessage(kRegistrations, "update", updated, {701}, false),
                   ShapeChangeMessage(kRegistrations, "delete", RegistrationValue(2), {701}, true)});
  ASSERT_TRUE(observer_.WaitFor([](const State& s) { return s.registrations.count(2) == 0; }));

  State state = observer_.Snapshot();
  std::vector<RecordingObserver::Event> batches;
  for (const auto& e : state.events) {
    if (e.kind == Kind::kBatch && !e.batch.txids.empty()) batches.push_back(e);
  }
  ASSERT_EQ(batches.size(), 2u);
  EXPECT_THAT(batches[0].batch.txids, ElementsAre(700));
  ASSERT_EQ(batches[0].batch.changes.size(), 1u);
  EXPECT_EQ(batches[0].batch.changes[0].op, ChangeOp::kInsert);
  EXPECT_THAT(batches[1].batch.txids, ElementsAre(701));
  ASSERT_EQ(batches[1].batch.changes.size(), 2u);
  EXPECT_EQ(batches[1].batch.changes[0].op, ChangeOp::kUpdate);
  EXPECT_EQ(batches[1].batch.changes[1].op, ChangeOp::kDelete);
  EXPECT_TRUE(state.registrations.at(1).timeout_consumed);

  // Each live request resumes where the last response ended, echoing its cursor.
  ASSERT_TRUE(server_->WaitForRequests(IsLive, 3, kWait));
  std::vector<ShapeRequest> live;
  for (const ShapeRequest& r : server_->Requests()) {
    if (r.live()) live.push_back(r);
  }
  EXPECT_EQ(live[0].Param("offset"), "1_0");
  EXPECT_FALSE(live[0].Has("cursor"));
  EXPECT_EQ(live[1].Param("offset"), "2_0");
  EXPECT_EQ(live[1].Param("cursor"), "1001");
  EXPECT_EQ(live[2].Param("offset"), "4_0");
  EXPECT_EQ(live[2].Param("cursor"), "1002");
}

TEST_F(ElectricSyncSourceTest, InsertTxidIsDeliveredWithFull64Bits) {
  StartServer();
  source_ = MakeSource(Config());
  ASSERT_THAT(source_->Start(observer_, kWait), IsOk());
  ASSERT_TRUE(server_->WaitForRequests(IsLive, 1, kWait));

  const int64_t big_txid = (int64_t{1} << 53) + 1;  // Not representable as a double.
  nlohmann::json value = RegistrationValue(77, "acme");
  value["condition"] = R"({"on": "change", "ops": ["insert"], "collections": ["inbox", "runs"]})";
  value["debounce_ms"] = "1500";
  value["one_shot"] = "t";
  server_->Append(kRegistrations, {ShapeChangeMessage(kRegistrations, "insert", value,
                                                      {big_txid}, true)});
  ASSERT_TRUE(observer_.WaitFor([](const State& s) { return s.registrations.count(77) > 0; }));

  State state = observer_.Snapshot();
  const RecordingObserver::Event& last = state.events.back().kind == Kind::kBatch
                                             ? state.events.back()
                                             : state.events[state.events.size() - 2];
  ASSERT_EQ(last.kind, Kind::kBatch);
  EXPECT_THAT(last.batch.txids, ElementsAre(big_txid));
  const Registration& row = state.registrations.at(77);
  EXPECT_EQ(row.tenant_id, "acme");
  EXPECT_EQ(row.condition.kind, ConditionKind::kChange);
  EXPECT_THAT(row.condition.collections, ElementsAre("inbox", "runs"));
  EXPECT_THAT(row.condition.ops, ElementsAre(ChangeOp::kInsert));
  EXPECT_EQ(row.debounce_ms, 1500);
  EXPECT_TRUE(row.one_shot);
}

TEST_F(ElectricSyncSourceTest, LongPollTimeoutWithOnlyUpToDateKeepsPolling) {
  StartServer({100, /*live_hold=*/absl::Milliseconds(30)});
  server_->Append(kRegistrations, Snapshot({1}));
  source_ = MakeSource(Config());
  ASSERT_THAT(source_->Start(observer_, kWait), IsOk());
  ASSERT_TRUE(server_->WaitForRequests(IsLive, 4, kWait));

  std::vector<ShapeRequest> live;
  for (const ShapeRequest& r : server_->Requests()) {
    if (r.live()) live.push_back(r);
  }
  for (size_t i = 0; i < 4; ++i) {
    EXPECT_EQ(live[i].Param("offset"), "1_0");
    EXPECT_EQ(live[i].Param("handle"), "reg-1");
    if (i > 0) {
      EXPECT_EQ(live[i].Param("cursor"), std::to_string(1000 + i));
    }
  }
  State state = observer_.Snapshot();
  EXPECT_EQ(state.Count(Kind::kBatch), 1);  // Only the snapshot.
  EXPECT_GE(state.Count(Kind::kUpToDate), 4);
  EXPECT_EQ(state.Count(Kind::kReset), 1);
  EXPECT_EQ(state.Count(Kind::kDisconnected), 0);
}

TEST_F(ElectricSyncSourceTest, MustRefetchMidSnapshotResyncsUnderTheNewHandle) {
  StartServer({/*page_size=*/2});
  server_->Append(kRegistrations, Snapshot({1, 2, 3, 4}));
  // The second page announces must-refetch (after a row that must not apply).
  CannedResponse refetch;
  refetch.headers = {{"electric-handle", "reg-2"}, {"electric-offset", "3_0"}};
  refetch.body = nlohmann::json::array({Insert(3), {{"headers", {{"control", "must-refetch"}}}}})
                     .dump();
  server_->Hold([](const ShapeRequest& r) { return r.Param("offset") == "2_0"; }, refetch);
  source_ = MakeSource(Config());
  std::thread release([this] {
    ASSERT_TRUE(server_->WaitForRequests(
        [](const ShapeRequest& r) { return r.Param("offset") == "2_0"; }, 1, kWait));
    std::vector<nlohmann::json> log = Snapshot({1, 2, 4});
    server_->Rotate(kRegistrations, "reg-2", log);
    server_->ReleaseHeld();
  });
  absl::Status started = source_->Start(observer_, kWait);
  release.join();
  ASSERT_THAT(started, IsOk());

  State state = observer_.Snapshot();
  EXPECT_THAT(Ids(state), ElementsAre(1, 2, 4));
  EXPECT_FALSE(EverApplied(state, 3));
  EXPECT_EQ(state.Count(Kind::kReset), 2);
  EXPECT_EQ(state.Count(Kind::kUpToDate), 1);
  EXPECT_EQ(state.events.back().kind, Kind::kUpToDate);
  ASSERT_GE(state.events.size(), 3u);
  EXPECT_EQ(state.events[0].kind, Kind::kReset);
  EXPECT_THAT(BatchIds(state.events[1]), ElementsAre(1, 2));
  EXPECT_EQ(state.events[2].kind, Kind::kReset);

  std::vector<ShapeRequest> requests = server_->Requests();
  ASSERT_GE(requests.size(), 3u);
  EXPECT_EQ(requests[2].Param("offset"), "-1");
  EXPECT_EQ(requests[2].Param("handle"), "reg-2");
  ASSERT_TRUE(server_->WaitForRequests(IsLive, 1, kWait));
  for (const ShapeRequest& r : server_->Requests()) {
    if (r.live()) {
      EXPECT_EQ(r.Param("handle"), "reg-2");
    }
  }
}

TEST_F(ElectricSyncSourceTest, ConflictAfterHandleRotationDropsAndResyncs) {
  StartServer();
  server_->Append(kRegistrations, Snapshot({1, 2}));
  source_ = MakeSource(Config());
  ASSERT_THAT(source_->Start(observer_, kWait), IsOk());
  ASSERT_TRUE(server_->WaitForRequests(IsLive, 1, kWait));

  server_->Rotate(kRegistrations, "reg-2", Snapshot({1, 3}));
  ASSERT_TRUE(observer_.WaitForCount(Kind::kUpToDate, 2));

  State state = observer_.Snapshot();
  EXPECT_THAT(Ids(state), ElementsAre(1, 3));
  EXPECT_EQ(state.Count(Kind::kReset), 2);
  std::vector<ShapeRequest> requests = server_->Requests();
  size_t conflict = 0;
  while (conflict < requests.size() && requests[conflict].status != 409) ++conflict;
  ASSERT_LT(conflict + 1, requests.size()) << "no 409 followed by a resync";
  EXPECT_TRUE(requests[conflict].live());
  EXPECT_EQ(requests[conflict].Param("handle"), "reg-1");
  EXPECT_EQ(requests[conflict + 1].Param("offset"), "-1");
  EXPECT_EQ(requests[conflict + 1].Param("handle"), "reg-2");
  EXPECT_FALSE(requests[conflict + 1].live());
}

TEST_F(ElectricSyncSourceTest, ServerErrorBacksOffWithJitterAndResumesAtTheSamePosition) {
  StartServer();
  server_->Append(kRegistrations, Snapshot({1}));
  CannedResponse boom;
  boom.status = 500;
  boom.body = "boom: shape consumer crashed";
  server_->Inject(IsLive, boom);
  common::SimulatedTimeSource time;
  ElectricSyncConfig config = Config();
  config.backoff_initial = absl::Seconds(1);
  config.backoff_max = absl::Seconds(8);
  source_ = MakeSource(config, time);
  ASSERT_THAT(source_->Start(observer_, kWait), IsOk());

  ASSERT_TRUE(observer_.WaitForCount(Kind::kDisconnected, 1));
  State state = observer_.Snapshot();
  for (const auto& e : state.events) {
    if (e.kind == Kind::kDisconnected) {
      EXPECT_THAT(e.status, StatusIs(absl::StatusCode::kUnavailable,
                                     AllOf(HasSubstr("HTTP 500"), HasSubstr("boom"))));
    }
  }
  // Parked on its backoff timer, drawn from [0.5 s, 1 s].
  const absl::Time deadline = absl::Now() + kWait;
  while (time.ArmedTimers() != 1 && absl::Now() < deadline) std::this_thread::yield();
  ASSERT_EQ(time.ArmedTimers(), 1u);
  const size_t before = server_->Requests().size();
  time.Advance(absl::Milliseconds(499));
  EXPECT_EQ(time.ArmedTimers(), 1u);
  EXPECT_EQ(server_->Requests().size(), before);
  time.Advance(absl::Milliseconds(501));
  ASSERT_TRUE(server_->WaitForRequests(IsLive, 2, kWait));

  std::vector<ShapeRequest> live;
  for (const ShapeRequest& r : server_->Requests()) {
    if (r.live()) live.push_back(r);
  }
  EXPECT_EQ(live[0].status, 500);
  EXPECT_EQ(live[1].Param("offset"), live[0].Param("offset"));
  EXPECT_EQ(live[1].Param("handle"), live[0].Param("handle"));

  server_->Append(kRegistrations, {Insert(2, {900})});
  ASSERT_TRUE(observer_.WaitFor([](const State& s) { return s.registrations.count(2) > 0; }));
  EXPECT_EQ(observer_.Snapshot().Count(Kind::kReset), 1);
  source_->Stop();
  source_.reset();  // Before `time` goes away.
}

TEST_F(ElectricSyncSourceTest, MalformedResponsesAreReportedRetriedAndNeverPartlyApplied) {
  StartServer();
  server_->Append(kRegistrations, Snapshot({1}));
  CannedResponse truncated;
  truncated.headers = {{"electric-handle", "reg-1"}, {"electric-offset", "2_0"}};
  truncated.body = absl::StrCat("[", Insert(50, {500}).dump(), R"(, {"headers":)");
  server_->Inject(IsLive, truncated);
  CannedResponse bad_row = truncated;
  nlohmann::json broken = Insert(61, {600});
  broken["value"]["debounce_ms"] = "soon";
  bad_row.body = nlohmann::json::array({Insert(60, {600}), broken}).dump();
  server_->Inject(IsLive, bad_row);
  source_ = MakeSource(Config());
  ASSERT_THAT(source_->Start(observer_, kWait), IsOk());

  ASSERT_TRUE(observer_.WaitForCount(Kind::kDisconnected, 2));
  ASSERT_TRUE(server_->WaitForRequests(IsLive, 3, kWait));
  server_->Append(kRegistrations, {Insert(70, {700})});
  ASSERT_TRUE(observer_.WaitFor([](const State& s) { return s.registrations.count(70) > 0; }));

  State state = observer_.Snapshot();
  std::vector<absl::Status> errors;
  for (const auto& e : state.events) {
    if (e.kind == Kind::kDisconnected) errors.push_back(e.status);
  }
  ASSERT_EQ(errors.size(), 2u);
  EXPECT_THAT(errors[0], StatusIs(absl::StatusCode::kUnavailable,
                                  AllOf(HasSubstr("malformed JSON from electric"),
                                        HasSubstr("table=wake_registrations"))));
  EXPECT_THAT(errors[1],
              StatusIs(absl::StatusCode::kUnavailable,
                       AllOf(HasSubstr("malformed row"),
                             HasSubstr("wake_registrations.debounce_ms: \"soon\""))));
  EXPECT_THAT(Ids(state), ElementsAre(1, 70));
  for (int64_t id : {50, 60, 61}) EXPECT_FALSE(EverApplied(state, id)) << id;
  for (const ShapeRequest& r : server_->Requests()) {
    if (r.live()) {
      EXPECT_EQ(r.Param("handle"), "reg-1");
    }
  }
  std::vector<ShapeRequest> live;
  for (const ShapeRequest& r : server_->Requests()) {
    if (r.live()) live.push_back(r);
  }
  EXPECT_EQ(live[1].Param("offset"), live[0].Param("offset"));
  EXPECT_EQ(live[2].Param("offset"), live[0].Param("offset"));
}

TEST_F(ElectricSyncSourceTest, TenantScopedShapesSendAQuotedWhereClauseAndTheSecret) {
  StartServer();
  ElectricSyncConfig config = Config();
  config.tenant = "o'brien";
  config.secret = "s3cret";
  config.follow_wakes = true;
  source_ = MakeSource(config);
  ASSERT_THAT(source_->Start(observer_, kWait), IsOk());
  ASSERT_TRUE(server_->WaitForRequests(IsLive, 2, kWait));

  std::set<std::string> tables;
  for (const ShapeRequest& r : server_->Requests()) {
    tables.insert(r.table());
    EXPECT_EQ(r.Param("where"), "tenant_id = 'o''brien'");
    EXPECT_EQ(r.Param("secret"), "s3cret");
  }
  EXPECT_THAT(tables, UnorderedElementsAre(kRegistrations, kWakes));
}

TEST_F(ElectricSyncSourceTest, WakesShapeDeliversPendingMarkersAndResetsWithRegistrations) {
  StartServer();
  server_->Append(kRegistrations, Snapshot({1}));
  auto wake = [](int64_t id, nlohmann::json token) {
    return ShapeChangeMessage(kWakes, "insert",
                              {{"id", std::to_string(id)},
                               {"tenant_id", "default"},
                               {"stream", "/parent/1"},
                               {"registration_id", "1"},
                               {"claim_token", token}});
  };
  server_->Append(kWakes, {wake(5, nullptr), wake(6, "claim-abc")});
  ElectricSyncConfig config = Config();
  config.follow_wakes = true;
  source_ = MakeSource(config);
  ASSERT_THAT(source_->Start(observer_, kWait), IsOk());

  State state = observer_.Snapshot();
  EXPECT_EQ(state.Count(Kind::kReset), 1);
  EXPECT_EQ(state.Count(Kind::kUpToDate), 1);
  EXPECT_EQ(state.events.back().kind, Kind::kUpToDate);  // Only after both snapshots.
  EXPECT_THAT(Ids(state), ElementsAre(1));
  ASSERT_EQ(state.wakes.size(), 2u);
  EXPECT_TRUE(state.wakes.at(5).pending);
  EXPECT_FALSE(state.wakes.at(6).pending);
  EXPECT_EQ(state.wakes.at(5).stream, "/parent/1");
  EXPECT_EQ(state.wakes.at(5).registration_id, 1);

  // The wakes shape is replaced: one reset, both shapes from a fresh snapshot.
  ASSERT_TRUE(server_->WaitForRequests(IsLive, 2, kWait));
  server_->Rotate(kWakes, "wakes-2", {wake(6, "claim-abc"), wake(7, nullptr)});
  ASSERT_TRUE(observer_.WaitForCount(Kind::kUpToDate, 2));
  state = observer_.Snapshot();
  EXPECT_EQ(state.Count(Kind::kReset), 2);
  EXPECT_THAT(Ids(state), ElementsAre(1));
  ASSERT_EQ(state.wakes.size(), 2u);
  EXPECT_TRUE(state.wakes.at(7).pending);
  auto initial_registrations = [](const ShapeRequest& r) {
    return r.table() == kRegistrations && r.Param("offset") == "-1";
  };
  EXPECT_EQ(server_->Count(initial_registrations), 2u);
}

TEST_F(ElectricSyncSourceTest, BarrierBehindIssuesOneNonLiveRequestThenSucceeds) {
  StartServer();
  server_->Append(kRegistrations, Snapshot({1}));
  source_ = MakeSource(Config());
  ASSERT_THAT(source_->Start(observer_, kWait), IsOk());
  ASSERT_TRUE(server_->WaitForRequests(IsLive, 1, kWait));
  const size_t before = server_->Requests().size();

  // Committed elsewhere in the database: the WAL moved, this shape did not.
  current_lsn_ = 150;
  server_->SetGlobalLsn(150);
  ASSERT_THAT(source_->Barrier(kWait), IsOk());

  std::vector<ShapeRequest> requests = server_->Requests();
  std::vector<ShapeRequest> after(requests.begin() + before, requests.end());
  ASSERT_FALSE(after.empty());
  EXPECT_FALSE(after[0].live());
  EXPECT_EQ(after[0].Param("offset"), "1_0");
  EXPECT_EQ(after[0].Param("handle"), "reg-1");
  size_t non_live = 0;
  for (const ShapeRequest& r : after) non_live += r.live() ? 0 : 1;
  EXPECT_EQ(non_live, 1u);
  EXPECT_EQ(observer_.Snapshot().Count(Kind::kUpToDate), 2);

  // Already there: no round trip at all.
  auto not_live = [](const ShapeRequest& r) { return !r.live(); };
  const size_t non_live_before = server_->Count(not_live);
  ASSERT_THAT(source_->Barrier(kWait), IsOk());
  EXPECT_EQ(server_->Count(not_live), non_live_before);
}

TEST_F(ElectricSyncSourceTest, ConcurrentBarriersShareOneRequest) {
  StartServer();
  server_->Append(kRegistrations, Snapshot({1}));
  source_ = MakeSource(Config());
  ASSERT_THAT(source_->Start(observer_, kWait), IsOk());
  ASSERT_TRUE(server_->WaitForRequests(IsLive, 1, kWait));

  auto catch_up = [](const ShapeRequest& r) { return !r.live() && r.Param("offset") != "-1"; };
  server_->Hold(catch_up);
  current_lsn_ = 150;
  server_->SetGlobalLsn(150);
  absl::Status first, second;
  std::thread a([&] { first = source_->Barrier(kWait); });
  ASSERT_TRUE(server_->WaitForRequests(catch_up, 1, kWait));
  std::thread b([&] { second = source_->Barrier(kWait); });
  const absl::Time deadline = absl::Now() + kWait;
  while (lsn_calls_.load() < 2 && absl::Now() < deadline) std::this_thread::yield();
  server_->ReleaseHeld();
  a.join();
  b.join();
  EXPECT_THAT(first, IsOk());
  EXPECT_THAT(second, IsOk());
  EXPECT_EQ(server_->Count(catch_up), 1u);
}

TEST_F(ElectricSyncSourceTest, BarrierFailsClearlyWhenElectricStaysBehindOrTheDatabaseIsDown) {
  StartServer();
  source_ = MakeSource(Config());
  ASSERT_THAT(source_->Start(observer_, kWait), IsOk());

  current_lsn_ = 1000;
  EXPECT_THAT(source_->Barrier(absl::Milliseconds(200)),
              StatusIs(absl::StatusCode::kUnavailable,
                       AllOf(HasSubstr("0/3E8"), HasSubstr("within 200ms"),
                             HasSubstr("delivered up to 0/64"))));
  EXPECT_GE(server_->Count([](const ShapeRequest& r) { return !r.live() && r.Param("offset") != "-1"; }),
            1u);

  lsn_error_ = absl::UnavailableError("connection to server at 127.0.0.1 refused");
  EXPECT_THAT(source_->Barrier(kWait),
              StatusIs(absl::StatusCode::kUnavailable,
                       AllOf(HasSubstr("WAL position"), HasSubstr("refused"))));
}

TEST_F(ElectricSyncSourceTest, RejectedShapeFailsStartWithInvalidArgument) {
  StartServer();
  CannedResponse rejected;
  rejected.status = 400;
  rejected.body =
      R"({"message":"Invalid request","errors":{"where":["At location 0: unknown reference tenant"]}})";
  server_->Inject([](const ShapeRequest&) { return true; }, rejected);
  source_ = MakeSource(Config());
  const absl::Time start = absl::Now();
  EXPECT_THAT(source_->Start(observer_, absl::Seconds(60)),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("HTTP 400"), HasSubstr("unknown reference tenant"))));
  EXPECT_LT(absl::Now() - start, absl::Seconds(30));  // Not by waiting out the timeout.
  EXPECT_EQ(observer_.Snapshot().Count(Kind::kUpToDate), 0);
}

TEST_F(ElectricSyncSourceTest, UnknownTableIsAConfigurationError) {
  auto server = ScriptedElectricServer::Start();
  ASSERT_TRUE(server.ok()) << server.status();
  server_ = std::move(*server);  // No shapes: Electric answers 400.
  source_ = MakeSource(Config());
  EXPECT_THAT(source_->Start(observer_, absl::Seconds(60)),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("HTTP 400"), HasSubstr("wake_registrations"),
                             HasSubstr("does not exist"))));
}

TEST_F(ElectricSyncSourceTest, UnreachableElectricFailsStartWithUnavailable) {
  // A bound port nobody listens on refuses connections.
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  ASSERT_EQ(getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  ElectricSyncConfig config;
  config.url = absl::StrCat("http://127.0.0.1:", ntohs(addr.sin_port));
  config.backoff_initial = absl::Milliseconds(10);
  source_ = MakeSource(config);
  EXPECT_THAT(source_->Start(observer_, absl::Milliseconds(300)),
              StatusIs(absl::StatusCode::kUnavailable,
                       AllOf(HasSubstr("not up-to-date within 300ms"), HasSubstr(config.url),
                             HasSubstr("onnect"))));
  EXPECT_GE(observer_.Snapshot().Count(Kind::kDisconnected), 1);
  close(fd);
}

TEST_F(ElectricSyncSourceTest, NeverUpToDateFailsStartNamingTheLastError) {
  StartServer();
  CannedResponse unavailable;
  unavailable.status = 503;
  unavailable.body = R"({"message":"Stack not ready"})";
  server_->Inject([](const ShapeRequest&) { return true; }, unavailable, /*times=*/-1);
  source_ = MakeSource(Config());
  EXPECT_THAT(source_->Start(observer_, absl::Milliseconds(300)),
              StatusIs(absl::StatusCode::kUnavailable,
                       AllOf(HasSubstr("not up-to-date"), HasSubstr("HTTP 503"),
                             HasSubstr("Stack not ready"))));
}

TEST_F(ElectricSyncSourceTest, StopAbortsTheLongPollPromptlyAndSilencesTheObserver) {
  StartServer();  // Live polls are held for 20 s.
  server_->Append(kRegistrations, Snapshot({1}));
  ElectricSyncConfig config = Config();
  config.follow_wakes = true;
  source_ = MakeSource(config);
  ASSERT_THAT(source_->Start(observer_, kWait), IsOk());
  ASSERT_TRUE(server_->WaitForRequests(IsLive, 2, kWait));

  const absl::Time start = absl::Now();
  source_->Stop();
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
  const size_t events = observer_.Snapshot().events.size();
  server_->Append(kRegistrations, {Insert(2, {1})});
  server_.reset();  // Answers and closes everything still held.
  EXPECT_EQ(observer_.Snapshot().events.size(), events);
  source_->Stop();  // Idempotent.
  EXPECT_THAT(source_->Barrier(kWait),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("not running")));
  EXPECT_THAT(source_->Start(observer_, kWait),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("already started")));
}

}  // namespace
}  // namespace wake::sync
