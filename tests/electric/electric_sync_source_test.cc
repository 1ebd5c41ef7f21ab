// ElectricSyncSource against the scripted Electric over real loopback HTTP:
// paging, live polls, transaction boundaries, txid widening, refetch/409,
// backoff and Retry-After, undecodable rows, rejections, tenant scoping, the
// marker read barrier and startup failures.
#include "common/sync/electric/electric_sync_source.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "common/real_time_source.h"
#include "common/simulated_time_source.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/electric/scripted_electric_server.h"
#include "tests/support/recording_observer.h"
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
using ::wake::testing::PeerTransaction;
using ::wake::testing::RecordingObserver;
using ::wake::testing::ScriptedElectricServer;
using ::wake::testing::ShapeRequest;
using ::wake::testing::StatusIs;
using Kind = RecordingObserver::Kind;
using State = RecordingObserver::State;

constexpr char kRegistrations[] = "wake_registrations";
constexpr char kWakes[] = "wakes";
constexpr absl::Duration kWait = absl::Seconds(20);
constexpr int64_t kEpoch = int64_t{1} << 32;

nlohmann::json Row(int64_t id, const std::string& tenant = "default") {
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

nlohmann::json WakeRowValue(int64_t id, nlohmann::json token) {
  return {{"id", std::to_string(id)}, {"tenant_id", "default"},  {"stream", "/parent/1"},
          {"registration_id", "1"},   {"source_event_key", "k"}, {"message", "{}"},
          {"claim_token", token}};
}

std::vector<nlohmann::json> Rows(std::vector<int64_t> ids) {
  std::vector<nlohmann::json> rows;
  for (int64_t id : ids) rows.push_back(Row(id));
  return rows;
}

ScriptedElectricServer::Options Paged(size_t page_size) {
  ScriptedElectricServer::Options options;
  options.page_size = page_size;
  return options;
}

bool IsLive(const ShapeRequest& r) { return r.live(); }
bool Registrations(const ShapeRequest& r) { return r.table() == kRegistrations; }
bool LiveRegistrations(const ShapeRequest& r) { return r.live() && Registrations(r); }

std::vector<ShapeRequest> Only(const std::vector<ShapeRequest>& requests,
                               const std::function<bool(const ShapeRequest&)>& match) {
  std::vector<ShapeRequest> out;
  for (const ShapeRequest& r : requests) {
    if (match(r)) out.push_back(r);
  }
  return out;
}

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

std::vector<RecordingObserver::Event> Batches(const State& state) {
  std::vector<RecordingObserver::Event> out;
  for (const auto& e : state.events) {
    if (e.kind == Kind::kBatch) out.push_back(e);
  }
  return out;
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
    server_->CreateShape(kMarkersTable, "markers-1");
  }

  ElectricSyncConfig Config() {
    ElectricSyncConfig config;
    config.url = server_->url();
    config.follow_wakes = false;
    config.marker_id = "replica-a";
    config.backoff_initial = absl::Milliseconds(5);
    config.backoff_max = absl::Milliseconds(20);
    return config;
  }

  // The database as Electric sees it: a marker write is a transaction that
  // Electric replicates into the markers shape (unless markers_reach_electric_
  // is off), the next xid is the peer's.
  ElectricDatabase Database() {
    ElectricDatabase database;
    database.write_marker = [this](const std::string& id, int64_t seq) -> absl::Status {
      ++marker_writes_;
      if (marker_gate_ != nullptr) marker_gate_->WaitForNotification();
      if (!marker_error_.ok()) return marker_error_;
      if (markers_reach_electric_) {
        server_->Commit(kMarkersTable, seq == 1 ? "insert" : "update",
                        {{"replica_id", id},
                         {"seq", std::to_string(seq)},
                         {"written_at", "2026-01-02 03:04:05+00"}},
                        {{"replica_id", id},
                         {"seq", std::to_string(seq - 1)},
                         {"written_at", "2026-01-02 03:04:05+00"}});
      }
      return absl::OkStatus();
    };
    database.next_xid = [this]() -> absl::StatusOr<int64_t> { return server_->next_xid(); };
    return database;
  }

  std::unique_ptr<ElectricSyncSource> MakeSource(const ElectricSyncConfig& config,
                                                 common::TimeSource& time) {
    return std::make_unique<ElectricSyncSource>(config, time, Database());
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
  std::atomic<int> marker_writes_{0};
  std::atomic<bool> markers_reach_electric_{true};
  absl::Notification* marker_gate_ = nullptr;
  absl::Status marker_error_;
};

TEST_F(ElectricSyncSourceTest, InitialSyncPagesThroughTheSnapshotThenGoesLive) {
  StartServer(Paged(2));
  server_->Rotate(kRegistrations, "reg-1", Rows({1, 2, 3, 4, 5}));
  source_ = MakeSource(Config());
  ASSERT_THAT(source_->Start(observer_, kWait), IsOk());

  State state = observer_.Snapshot();
  std::vector<RecordingObserver::Event> batches = Batches(state);
  ASSERT_EQ(batches.size(), 3u);
  EXPECT_THAT(BatchIds(batches[0]), ElementsAre(1, 2));
  EXPECT_THAT(BatchIds(batches[1]), ElementsAre(3, 4));
  EXPECT_THAT(BatchIds(batches[2]), ElementsAre(5));
  for (const auto& b : batches) EXPECT_THAT(b.batch.txids, IsEmpty());
  EXPECT_EQ(state.events.front().kind, Kind::kReset);
  EXPECT_EQ(state.events.back().kind, Kind::kUpToDate);
  EXPECT_EQ(state.Count(Kind::kUpToDate), 1);
  EXPECT_THAT(Ids(state), ElementsAre(1, 2, 3, 4, 5));
  const Registration& row = state.registrations.at(3);
  EXPECT_EQ(row.subscriber_url, "/parent/3");
  EXPECT_EQ(row.condition.kind, ConditionKind::kRunFinished);
  EXPECT_TRUE(row.include_response);
  EXPECT_EQ(row.created_at, absl::FromUnixMicros(1767323045678901));

  ASSERT_TRUE(server_->WaitForRequests(LiveRegistrations, 1, kWait));
  std::vector<ShapeRequest> requests = Only(server_->Requests(), Registrations);
  ASSERT_GE(requests.size(), 5u);
  const std::string columns =
      "id,tenant_id,subscriber_url,source_url,condition,debounce_ms,timeout_ms,one_shot,"
      "timeout_consumed,include_response,manifest_key,created_at";
  for (const ShapeRequest& r : requests) {
    EXPECT_EQ(r.path, "/v1/shape");
    EXPECT_EQ(r.Param("replica"), "full");
    EXPECT_EQ(r.Param("columns"), columns);
    EXPECT_FALSE(r.Has("where"));
    EXPECT_FALSE(r.Has("secret"));
    EXPECT_EQ(r.status, r.live() ? 0 : 200);
  }
  // Snapshot chunks 0_0, 0_1, 0_2, then the (empty) log up to date at 0_inf.
  EXPECT_EQ(requests[0].Param("offset"), "-1");
  EXPECT_FALSE(requests[0].Has("handle"));
  EXPECT_EQ(requests[1].Param("offset"), "0_0");
  EXPECT_EQ(requests[1].Param("handle"), "reg-1");
  EXPECT_EQ(requests[2].Param("offset"), "0_1");
  EXPECT_EQ(requests[3].Param("offset"), "0_2");
  EXPECT_FALSE(requests[3].live());
  EXPECT_TRUE(requests[4].live());
  EXPECT_EQ(requests[4].Param("offset"), "0_inf");
  EXPECT_EQ(requests[4].Param("handle"), "reg-1");
}

TEST_F(ElectricSyncSourceTest, LiveChangesArriveAsTransactionsWithTheirTxids) {
  StartServer();
  server_->Rotate(kRegistrations, "reg-1", Rows({1}));
  source_ = MakeSource(Config());
  ASSERT_THAT(source_->Start(observer_, kWait), IsOk());
  ASSERT_TRUE(server_->WaitForRequests(LiveRegistrations, 1, kWait));

  const PeerTransaction first = server_->Commit(kRegistrations, "insert", Row(2));
  ASSERT_TRUE(observer_.WaitFor([](const State& s) { return s.registrations.count(2) > 0; }));
  nlohmann::json updated = Row(1);
  updated["timeout_consumed"] = "t";
  PeerTransaction txn;
  txn.changes = {{kRegistrations, "update", updated, Row(1)},
                 {kRegistrations, "delete", Row(2), nullptr}};
  const PeerTransaction second = server_->Commit(txn);
  ASSERT_TRUE(observer_.WaitFor([](const State& s) { return s.registrations.count(2) == 0; }));

  std::vector<RecordingObserver::Event> batches;
  for (const auto& e : Batches(observer_.Snapshot())) {
    if (!e.batch.txids.empty()) batches.push_back(e);
  }
  ASSERT_EQ(batches.size(), 2u);
  EXPECT_THAT(batches[0].batch.txids, ElementsAre(first.xid));
  ASSERT_EQ(batches[0].batch.changes.size(), 1u);
  EXPECT_EQ(batches[0].batch.changes[0].op, ChangeOp::kInsert);
  EXPECT_THAT(batches[1].batch.txids, ElementsAre(second.xid));
  ASSERT_EQ(batches[1].batch.changes.size(), 2u);
  EXPECT_EQ(batches[1].batch.changes[0].op, ChangeOp::kUpdate);
  EXPECT_EQ(batches[1].batch.changes[1].op, ChangeOp::kDelete);
  EXPECT_TRUE(observer_.Snapshot().registrations.at(1).timeout_consumed);

  // Each live request resumes where the last response ended, echoing its cursor.
  ASSERT_TRUE(server_->WaitForRequests(LiveRegistrations, 3, kWait));
  std::vector<ShapeRequest> live = Only(server_->Requests(), LiveRegistrations);
  EXPECT_EQ(live[0].Param("offset"), "0_inf");
  EXPECT_FALSE(live[0].Has("cursor"));
  EXPECT_EQ(live[1].Param("offset"), absl::StrCat(first.lsn, "_0"));
  EXPECT_FALSE(live[1].Param("cursor").empty());
  EXPECT_EQ(live[2].Param("offset"), absl::StrCat(second.lsn, "_2"));
  EXPECT_NE(live[2].Param("cursor"), live[1].Param("cursor"));
}

// Electric sends the 32-bit xid of pgoutput's Begin message; the store
// returns xid8 values. Once the xid epoch is above 0 they only meet when
// widened (this failed before: every write waited its whole confirm timeout).
TEST_F(ElectricSyncSourceTest, TxidsAreWidenedToXid8AcrossAnEpochBoundary) {
  ScriptedElectricServer::Options options;
  options.initial_xid = 2 * kEpoch - 3;  // Epoch 1, three xids before epoch 2.
  StartServer(options);
  server_->Rotate(kRegistrations, "reg-1", Rows({1}));
  source_ = MakeSource(Config());
  ASSERT_THAT(source_->Start(observer_, kWait), IsOk());
  ASSERT_TRUE(server_->WaitForRequests(LiveRegistrations, 1, kWait));

  PeerTransaction before;
  before.xid = 2 * kEpoch - 2;
  before.changes = {{kRegistrations, "insert", Row(2), nullptr}};
  server_->Commit(before);
  PeerTransaction after;
  after.xid = 2 * kEpoch + 5;  // Sent as 5.
  after.changes = {{kRegistrations, "insert", Row(3), nullptr}};
  server_->Commit(after);
  ASSERT_TRUE(observer_.WaitFor([](const State& s) { return s.registrations.count(3) > 0; }));

  std::vector<int64_t> txids;
  for (const auto& e : Batches(observer_.Snapshot())) {
    txids.insert(txids.end(), e.batch.txids.begin(), e.batch.txids.end());
  }
  EXPECT_THAT(txids, ElementsAre(2 * kEpoch - 2, 2 * kEpoch + 5));
}

// A response that ends inside a transaction (Electric cuts chunks by size)
// must not confirm it: its txid completes only with its last message. Before,
// the first half was applied with the txid, confirming the write early.
TEST_F(ElectricSyncSourceTest, AResponseEndingInsideATransactionHoldsItBack) {
  StartServer(Paged(1));
  source_ = MakeSource(Config());
  ASSERT_THAT(source_->Start(observer_, kWait), IsOk());
  ASSERT_TRUE(server_->WaitForRequests(LiveRegistrations, 1, kWait));

  PeerTransaction txn;
  txn.changes = {{kRegistrations, "insert", Row(10), nullptr},
                 {kRegistrations, "insert", Row(11), nullptr},
                 {kRegistrations, "insert", Row(12), nullptr}};
  txn = server_->Commit(txn);
  ASSERT_TRUE(observer_.WaitFor([](const State& s) { return s.registrations.count(12) > 0; }));

  std::vector<RecordingObserver::Event> with_txid;
  for (const auto& e : Batches(observer_.Snapshot())) {
    if (!e.batch.txids.empty() || !e.batch.changes.empty()) with_txid.push_back(e);
  }
  ASSERT_EQ(with_txid.size(), 1u);  // One batch: the whole transaction.
  EXPECT_THAT(BatchIds(with_txid[0]), ElementsAre(10, 11, 12));
  EXPECT_THAT(with_txid[0].batch.txids, ElementsAre(txn.xid));
  // It took three responses of one message each.
  std::vector<ShapeRequest> live = Only(server_->Requests(), LiveRegistrations);
  EXPECT_GE(live.size(), 3u);
}

TEST_F(ElectricSyncSourceTest, LongPollTimeoutWithOnlyUpToDateKeepsPolling) {
  ScriptedElectricServer::Options options;
  options.live_hold = absl::Milliseconds(30);
  StartServer(options);
  server_->Rotate(kRegistrations, "reg-1", Rows({1}));
  source_ = MakeSource(Config());
  ASSERT_THAT(source_->Start(observer_, kWait), IsOk());
  ASSERT_TRUE(server_->WaitForRequests(LiveRegistrations, 4, kWait));

  std::vector<ShapeRequest> live = Only(server_->Requests(), LiveRegistrations);
  for (size_t i = 0; i < 4; ++i) {
    EXPECT_EQ(live[i].Param("offset"), "0_inf");
    EXPECT_EQ(live[i].Param("handle"), "reg-1");
    if (i > 1) {
      EXPECT_NE(live[i].Param("cursor"), live[i - 1].Param("cursor"));
    }
  }
  State state = observer_.Snapshot();
  EXPECT_EQ(state.Count(Kind::kBatch), 1);  // Only the snapshot.
  EXPECT_GE(state.Count(Kind::kUpToDate), 4);
  EXPECT_EQ(state.Count(Kind::kReset), 1);
  EXPECT_EQ(state.Count(Kind::kDisconnected), 0);
}

TEST_F(ElectricSyncSourceTest, ConflictMidSnapshotResyncsUnderTheNewHandle) {
  StartServer(Paged(2));
  server_->Rotate(kRegistrations, "reg-1", Rows({1, 2, 3, 4}));
  auto second_chunk = [](const ShapeRequest& r) {
    return Registrations(r) && r.Param("offset") == "0_0";
  };
  server_->Hold(second_chunk);
  source_ = MakeSource(Config());
  std::thread rotate([this, second_chunk] {
    ASSERT_TRUE(server_->WaitForRequests(second_chunk, 1, kWait));
    server_->Rotate(kRegistrations, "reg-2", Rows({1, 2, 4}));
    server_->ReleaseHeld();
  });
  absl::Status started = source_->Start(observer_, kWait);
  rotate.join();
  ASSERT_THAT(started, IsOk());

  State state = observer_.Snapshot();
  EXPECT_THAT(Ids(state), ElementsAre(1, 2, 4));
  EXPECT_FALSE(EverApplied(state, 3));
  EXPECT_EQ(state.Count(Kind::kReset), 2);
  EXPECT_EQ(state.Count(Kind::kUpToDate), 1);
  std::vector<ShapeRequest> requests = Only(server_->Requests(), Registrations);
  ASSERT_GE(requests.size(), 3u);
  EXPECT_EQ(requests[1].status, 409);
  EXPECT_EQ(requests[2].Param("offset"), "-1");
  EXPECT_EQ(requests[2].Param("handle"), "reg-2");
}

TEST_F(ElectricSyncSourceTest, ConflictAfterHandleRotationDropsAndResyncs) {
  StartServer();
  server_->Rotate(kRegistrations, "reg-1", Rows({1, 2}));
  source_ = MakeSource(Config());
  ASSERT_THAT(source_->Start(observer_, kWait), IsOk());
  ASSERT_TRUE(server_->WaitForRequests(LiveRegistrations, 1, kWait));

  server_->Rotate(kRegistrations, "reg-2", Rows({1, 3}));
  ASSERT_TRUE(observer_.WaitForCount(Kind::kUpToDate, 2));

  State state = observer_.Snapshot();
  EXPECT_THAT(Ids(state), ElementsAre(1, 3));
  EXPECT_EQ(state.Count(Kind::kReset), 2);
  std::vector<ShapeRequest> requests = Only(server_->Requests(), Registrations);
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
  server_->Rotate(kRegistrations, "reg-1", Rows({1}));
  CannedResponse boom;
  boom.status = 500;
  boom.body = R"({"error":"Internal server error"})";
  server_->Inject(LiveRegistrations, boom);
  common::SimulatedTimeSource time;
  ElectricSyncConfig config = Config();
  config.backoff_initial = absl::Seconds(1);
  config.backoff_max = absl::Seconds(8);
  source_ = MakeSource(config, time);
  ASSERT_THAT(source_->Start(observer_, kWait), IsOk());

  ASSERT_TRUE(observer_.WaitForCount(Kind::kDisconnected, 1));
  for (const auto& e : observer_.Snapshot().events) {
    if (e.kind == Kind::kDisconnected) {
      EXPECT_THAT(e.status, StatusIs(absl::StatusCode::kUnavailable,
                                     AllOf(HasSubstr("HTTP 500"), HasSubstr("Internal server"))));
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
  ASSERT_TRUE(server_->WaitForRequests(LiveRegistrations, 2, kWait));

  std::vector<ShapeRequest> live = Only(server_->Requests(), LiveRegistrations);
  EXPECT_EQ(live[0].status, 500);
  EXPECT_EQ(live[1].Param("offset"), live[0].Param("offset"));
  EXPECT_EQ(live[1].Param("handle"), live[0].Param("handle"));

  server_->Commit(kRegistrations, "insert", Row(2));
  ASSERT_TRUE(observer_.WaitFor([](const State& s) { return s.registrations.count(2) > 0; }));
  EXPECT_EQ(observer_.Snapshot().Count(Kind::kReset), 1);
  source_->Stop();
  source_.reset();  // Before `time` goes away.
}

// Electric's 503s say when to come back (Retry-After); the source waits at
// least that long even when its own backoff is shorter.
TEST_F(ElectricSyncSourceTest, RetryAfterIsHonoured) {
  StartServer();
  server_->Rotate(kRegistrations, "reg-1", Rows({1}));
  CannedResponse busy;
  busy.status = 503;
  busy.headers = {{"retry-after", "5"}, {"cache-control", "no-store"}};
  busy.body = R"({"code":"concurrent_request_limit_exceeded","message":"Concurrent existing )"
              R"(request limit exceeded (limit: 1000), please retry"})";
  server_->Inject(LiveRegistrations, busy);
  common::SimulatedTimeSource time;
  ElectricSyncConfig config = Config();
  config.backoff_initial = absl::Milliseconds(100);
  source_ = MakeSource(config, time);
  ASSERT_THAT(source_->Start(observer_, kWait), IsOk());
  ASSERT_TRUE(observer_.WaitForCount(Kind::kDisconnected, 1));

  const absl::Time deadline = absl::Now() + kWait;
  while (time.ArmedTimers() != 1 && absl::Now() < deadline) std::this_thread::yield();
  ASSERT_EQ(time.ArmedTimers(), 1u);
  time.Advance(absl::Milliseconds(4999));
  EXPECT_EQ(server_->Count(LiveRegistrations), 1u);
  time.Advance(absl::Milliseconds(1));
  ASSERT_TRUE(server_->WaitForRequests(LiveRegistrations, 2, kWait));
  source_->Stop();
  source_.reset();
}

TEST_F(ElectricSyncSourceTest, MalformedJsonIsRetriedAndNeverPartlyApplied) {
  StartServer();
  server_->Rotate(kRegistrations, "reg-1", Rows({1}));
  CannedResponse truncated;
  truncated.headers = {{"electric-handle", "reg-1"}, {"electric-offset", "99999999_0"}};
  truncated.body = R"([{"headers":{"operation":"insert","txids":[5],"lsn":"99999999",)"
                   R"("op_position":0,"last":true},"value":{"id":"50"}}, {"headers":)";
  server_->Inject(LiveRegistrations, truncated);
  source_ = MakeSource(Config());
  ASSERT_THAT(source_->Start(observer_, kWait), IsOk());
  ASSERT_TRUE(observer_.WaitForCount(Kind::kDisconnected, 1));
  server_->Commit(kRegistrations, "insert", Row(70));
  ASSERT_TRUE(observer_.WaitFor([](const State& s) { return s.registrations.count(70) > 0; }));

  State state = observer_.Snapshot();
  for (const auto& e : state.events) {
    if (e.kind == Kind::kDisconnected) {
      EXPECT_THAT(e.status, StatusIs(absl::StatusCode::kUnavailable,
                                     AllOf(HasSubstr("malformed JSON from electric"),
                                           HasSubstr("table=wake_registrations"))));
    }
  }
  EXPECT_THAT(Ids(state), ElementsAre(1, 70));
  EXPECT_FALSE(EverApplied(state, 50));
  std::vector<ShapeRequest> live = Only(server_->Requests(), LiveRegistrations);
  ASSERT_GE(live.size(), 2u);
  EXPECT_EQ(live[1].Param("offset"), live[0].Param("offset"));
}

// A row that cannot be decoded would fail again at the same offset forever:
// the source stops, naming table, key and column, and the barrier says why.
TEST_F(ElectricSyncSourceTest, AnUndecodableRowStopsSyncNamingTableKeyAndColumn) {
  StartServer();
  server_->Rotate(kRegistrations, "reg-1", Rows({1}));
  source_ = MakeSource(Config());
  ASSERT_THAT(source_->Start(observer_, kWait), IsOk());
  ASSERT_TRUE(server_->WaitForRequests(LiveRegistrations, 1, kWait));

  nlohmann::json broken = Row(61);
  broken["debounce_ms"] = "soon";
  PeerTransaction txn;
  txn.changes = {{kRegistrations, "insert", Row(60), nullptr},
                 {kRegistrations, "insert", broken, nullptr}};
  server_->Commit(txn);
  ASSERT_TRUE(observer_.WaitForCount(Kind::kDisconnected, 1));
  const size_t requests = server_->Requests().size();

  State state = observer_.Snapshot();
  absl::Status why;
  for (const auto& e : state.events) {
    if (e.kind == Kind::kDisconnected) why = e.status;
  }
  EXPECT_THAT(why,
              StatusIs(absl::StatusCode::kDataLoss,
                       AllOf(HasSubstr("electric sync stopped"), HasSubstr("wake_registrations"),
                             HasSubstr(R"(key "public"."wake_registrations"/"61")"),
                             HasSubstr("column debounce_ms"), HasSubstr("\"soon\""))));
  EXPECT_FALSE(EverApplied(state, 60));  // Nothing of that transaction.
  EXPECT_THAT(source_->Barrier(absl::Seconds(5)),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("electric sync stopped")));
  // No shape asks again, however long we wait for it.
  EXPECT_FALSE(server_->WaitForRequests([](const ShapeRequest&) { return true; }, requests + 1,
                                        absl::Milliseconds(300)))
      << "retried after an undecodable row";
}

TEST_F(ElectricSyncSourceTest, TenantScopedShapesSendAQuotedWhereClauseAndTheSecret) {
  ScriptedElectricServer::Options options;
  options.secret = "s3cret";
  StartServer(options);
  server_->Rotate(kRegistrations, "reg-1", {Row(1, "o'brien"), Row(2, "acme")});
  ElectricSyncConfig config = Config();
  config.tenant = "o'brien";
  config.secret = "s3cret";
  config.follow_wakes = true;
  source_ = MakeSource(config);
  ASSERT_THAT(source_->Start(observer_, kWait), IsOk());
  ASSERT_TRUE(server_->WaitForRequests(IsLive, 3, kWait));

  std::set<std::string> tables;
  for (const ShapeRequest& r : server_->Requests()) {
    tables.insert(r.table());
    EXPECT_EQ(r.Param("secret"), "s3cret");
    if (r.table() == kMarkersTable) {
      EXPECT_FALSE(r.Has("where"));  // Markers belong to no tenant.
    } else {
      EXPECT_EQ(r.Param("where"), "tenant_id = 'o''brien'");
    }
  }
  EXPECT_THAT(tables, UnorderedElementsAre(kRegistrations, kWakes, kMarkersTable));
  EXPECT_THAT(Ids(observer_.Snapshot()), ElementsAre(1));  // Electric applied the where.
}

TEST_F(ElectricSyncSourceTest, WakesShapeDeliversPendingMarkersAndResetsWithRegistrations) {
  StartServer();
  server_->Rotate(kRegistrations, "reg-1", Rows({1}));
  server_->Rotate(kWakes, "wakes-1", {WakeRowValue(5, nullptr), WakeRowValue(6, "claim-abc")});
  ElectricSyncConfig config = Config();
  config.follow_wakes = true;
  source_ = MakeSource(config);
  ASSERT_THAT(source_->Start(observer_, kWait), IsOk());

  State state = observer_.Snapshot();
  EXPECT_EQ(state.Count(Kind::kReset), 1);
  EXPECT_EQ(state.Count(Kind::kUpToDate), 1);
  EXPECT_EQ(state.events.back().kind, Kind::kUpToDate);  // Only after every snapshot.
  EXPECT_THAT(Ids(state), ElementsAre(1));
  ASSERT_EQ(state.wakes.size(), 2u);
  EXPECT_TRUE(state.wakes.at(5).pending);
  EXPECT_FALSE(state.wakes.at(6).pending);
  EXPECT_EQ(state.wakes.at(5).stream, "/parent/1");
  EXPECT_EQ(state.wakes.at(5).registration_id, 1);

  // The wakes shape is replaced: one reset, every shape from a fresh snapshot.
  ASSERT_TRUE(server_->WaitForRequests(IsLive, 3, kWait));
  server_->Rotate(kWakes, "wakes-2", {WakeRowValue(6, "claim-abc"), WakeRowValue(7, nullptr)});
  ASSERT_TRUE(observer_.WaitForCount(Kind::kUpToDate, 2));
  state = observer_.Snapshot();
  EXPECT_EQ(state.Count(Kind::kReset), 2);
  EXPECT_THAT(Ids(state), ElementsAre(1));
  ASSERT_EQ(state.wakes.size(), 2u);
  EXPECT_TRUE(state.wakes.at(7).pending);
  auto initial_registrations = [](const ShapeRequest& r) {
    return Registrations(r) && r.Param("offset") == "-1";
  };
  EXPECT_EQ(server_->Count(initial_registrations), 2u);
}

// Electric's global_last_seen_lsn is the last transaction it processed, never
// the server's WAL position: with nothing written since, a barrier must still
// complete, through its marker.
TEST_F(ElectricSyncSourceTest, BarrierCompletesOnAQuietDatabaseThroughAMarker) {
  StartServer();
  server_->Rotate(kRegistrations, "reg-1", Rows({1}));
  source_ = MakeSource(Config());
  ASSERT_THAT(source_->Start(observer_, kWait), IsOk());
  ASSERT_TRUE(server_->WaitForRequests(LiveRegistrations, 1, kWait));
  const size_t before = server_->Requests().size();

  ASSERT_THAT(source_->Barrier(kWait), IsOk());
  EXPECT_EQ(marker_writes_.load(), 1);

  // After the marker came back, the registrations shape asked once more
  // without `live` to learn that Electric is past the marker.
  std::vector<ShapeRequest> requests = server_->Requests();
  std::vector<ShapeRequest> after(requests.begin() + static_cast<long>(before), requests.end());
  std::vector<ShapeRequest> catch_up =
      Only(after, [](const ShapeRequest& r) { return Registrations(r) && !r.live(); });
  ASSERT_EQ(catch_up.size(), 1u);
  EXPECT_EQ(catch_up[0].Param("offset"), "0_inf");
  EXPECT_EQ(catch_up[0].Param("handle"), "reg-1");

  // A write of another replica (or anything else) is now also covered.
  server_->Commit(kRegistrations, "insert", Row(2));
  ASSERT_THAT(source_->Barrier(kWait), IsOk());
  EXPECT_EQ(observer_.Snapshot().registrations.count(2), 1u);
  EXPECT_EQ(source_->stats().marker_writes, 2u);
}

TEST_F(ElectricSyncSourceTest, ConcurrentBarriersShareOneMarkerWrite) {
  StartServer();
  source_ = MakeSource(Config());
  ASSERT_THAT(source_->Start(observer_, kWait), IsOk());

  absl::Notification gate;
  marker_gate_ = &gate;
  absl::Status first;
  std::thread leader([&] { first = source_->Barrier(kWait); });
  while (marker_writes_.load() < 1) std::this_thread::yield();
  // These arrive while the first write is in flight: they need a write sent
  // after they arrived, and all of them share it.
  std::vector<absl::Status> results(4);
  std::vector<std::thread> followers;
  for (size_t i = 0; i < results.size(); ++i) {
    followers.emplace_back([&, i] { results[i] = source_->Barrier(kWait); });
  }
  const absl::Time deadline = absl::Now() + kWait;
  while (source_->stats().barrier_calls < 5 && absl::Now() < deadline) std::this_thread::yield();
  gate.Notify();
  leader.join();
  for (std::thread& t : followers) t.join();
  marker_gate_ = nullptr;
  EXPECT_THAT(first, IsOk());
  for (const absl::Status& s : results) EXPECT_THAT(s, IsOk());
  EXPECT_EQ(marker_writes_.load(), 2);
  EXPECT_EQ(source_->stats().barrier_calls, 5u);
}

TEST_F(ElectricSyncSourceTest, BarrierFailsClearlyWhenTheMarkerIsLostOrCannotBeWritten) {
  StartServer();
  source_ = MakeSource(Config());
  ASSERT_THAT(source_->Start(observer_, kWait), IsOk());

  markers_reach_electric_ = false;
  EXPECT_THAT(source_->Barrier(absl::Milliseconds(200)),
              StatusIs(absl::StatusCode::kUnavailable,
                       AllOf(HasSubstr("marker replica-a/1 did not come back through electric"),
                             HasSubstr("within 200ms"))));

  marker_error_ = absl::UnavailableError("connection to server at 127.0.0.1 refused");
  EXPECT_THAT(source_->Barrier(kWait),
              StatusIs(absl::StatusCode::kUnavailable,
                       AllOf(HasSubstr("cannot write the marker row"), HasSubstr("refused"))));
}

TEST_F(ElectricSyncSourceTest, RejectedShapeFailsStartWithElectricsMessage) {
  StartServer();
  // A table without the columns the registry asks for: Electric says which.
  server_->CreateTable(kRegistrations, {"id", "subscriber_url"});
  source_ = MakeSource(Config());
  const absl::Time start = absl::Now();
  EXPECT_THAT(source_->Start(observer_, absl::Seconds(60)),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("HTTP 400"),
                             HasSubstr("The following columns are not found on the table: "
                                       "tenant_id, source_url"))));
  EXPECT_LT(absl::Now() - start, absl::Seconds(30));  // Not by waiting out the timeout.
  EXPECT_EQ(observer_.Snapshot().Count(Kind::kUpToDate), 0);
}

TEST_F(ElectricSyncSourceTest, WrongSecretFailsStartWithUnauthenticated) {
  ScriptedElectricServer::Options options;
  options.secret = "right";
  StartServer(options);
  ElectricSyncConfig config = Config();
  config.secret = "wrong";
  source_ = MakeSource(config);
  EXPECT_THAT(source_->Start(observer_, absl::Seconds(60)),
              StatusIs(absl::StatusCode::kUnauthenticated,
                       AllOf(HasSubstr("HTTP 401"), HasSubstr("Invalid API secret"))));
}

// After startup a rejection is reported with its own code (the registry's
// health turns NOT_SERVING on it) and retried slowly until it goes away.
TEST_F(ElectricSyncSourceTest, RejectionAfterStartupIsReportedAndRecovers) {
  StartServer();
  source_ = MakeSource(Config());
  ASSERT_THAT(source_->Start(observer_, kWait), IsOk());
  ASSERT_TRUE(server_->WaitForRequests(LiveRegistrations, 1, kWait));

  CannedResponse unauthorized;
  unauthorized.status = 401;
  unauthorized.body = R"({"message":"Unauthorized - Invalid API secret"})";
  server_->Inject(LiveRegistrations, unauthorized);
  server_->Commit(kRegistrations, "insert", Row(9));  // Ends the held poll.
  ASSERT_TRUE(observer_.WaitForCount(Kind::kDisconnected, 1));
  ASSERT_TRUE(observer_.WaitFor([](const State& s) { return s.registrations.count(9) > 0; }));
  State state = observer_.Snapshot();
  for (const auto& e : state.events) {
    if (e.kind == Kind::kDisconnected) {
      EXPECT_THAT(e.status,
                  StatusIs(absl::StatusCode::kUnauthenticated, HasSubstr("Invalid API secret")));
    }
  }
}

TEST_F(ElectricSyncSourceTest, UnknownTableIsAConfigurationError) {
  auto server = ScriptedElectricServer::Start();
  ASSERT_TRUE(server.ok()) << server.status();
  server_ = std::move(*server);
  server_->CreateShape(kMarkersTable, "markers-1");  // No wake_registrations: 400.
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
  source_ = std::make_unique<ElectricSyncSource>(config, time_, ElectricDatabase{});
  EXPECT_THAT(
      source_->Start(observer_, absl::Milliseconds(300)),
      StatusIs(absl::StatusCode::kUnavailable, AllOf(HasSubstr("not up-to-date within 300ms"),
                                                     HasSubstr(config.url), HasSubstr("onnect"))));
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
  server_->Rotate(kRegistrations, "reg-1", Rows({1}));
  ElectricSyncConfig config = Config();
  config.follow_wakes = true;
  source_ = MakeSource(config);
  ASSERT_THAT(source_->Start(observer_, kWait), IsOk());
  ASSERT_TRUE(server_->WaitForRequests(IsLive, 3, kWait));

  const absl::Time start = absl::Now();
  source_->Stop();
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
  const size_t events = observer_.Snapshot().events.size();
  server_->Commit(kRegistrations, "insert", Row(2));
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
