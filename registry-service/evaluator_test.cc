#include "registry-service/evaluator.h"

#include <atomic>
#include <thread>

#include "absl/strings/str_cat.h"
#include "common/simulated_time_source.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/mocks/registry/mocks.h"
#include "tests/support/status_matchers.h"

namespace wake::registry {
namespace {

using ::testing::_;
using ::testing::ElementsAre;
using ::testing::Field;
using ::testing::IsEmpty;
using ::testing::Return;
using ::testing::SizeIs;
using ::testing::StrictMock;
using ::wake::testing::StatusIs;

sync::Registration RunFinished(int64_t id, std::string subscriber, std::string source = "/child") {
  sync::Registration row;
  row.id = id;
  row.tenant_id = "t";
  row.subscriber_url = std::move(subscriber);
  row.source_url = std::move(source);
  return row;
}

sync::Registration OnChange(int64_t id, std::vector<std::string> collections,
                            std::vector<sync::ChangeOp> ops) {
  sync::Registration row = RunFinished(id, "/parent");
  row.condition.kind = sync::ConditionKind::kChange;
  row.condition.collections = std::move(collections);
  row.condition.ops = std::move(ops);
  sync::Canonicalize(row.condition);
  return row;
}

// Echoes drafts back as persisted wakes with ids 1000+.
absl::StatusOr<PersistResult> Persisted(const std::vector<WakeDraft>& drafts) {
  PersistResult result;
  int64_t id = 1000;
  for (const WakeDraft& draft : drafts) {
    v1::Wake wake;
    wake.set_id(id++);
    wake.set_tenant_id(draft.tenant_id);
    wake.set_stream(draft.stream);
    wake.set_registration_id(draft.registration_id);
    wake.set_source_event_key(draft.source_event_key);
    *wake.mutable_message() = draft.message;
    wake.set_run_finished_status(draft.run_finished_status);
    result.wakes.push_back(wake);
  }
  result.txid = 7;
  return result;
}

v1::EvaluateRunFinishedRequest RunFinishedRequest(std::string source = "/child",
                                                  std::string tenant = "t") {
  v1::EvaluateRunFinishedRequest request;
  request.set_tenant_id(std::move(tenant));
  request.set_source_url(std::move(source));
  request.set_run_key("run-1");
  request.set_status(v1::COMPLETED);
  request.mutable_value()->set_string_value("done");
  return request;
}

v1::EvaluateChangeRequest ChangeRequest(std::string collection, v1::Op op, std::string key) {
  v1::EvaluateChangeRequest request;
  request.set_tenant_id("t");
  request.set_source_url("/child");
  request.set_collection(std::move(collection));
  request.set_op(op);
  request.set_key(std::move(key));
  return request;
}

class EvaluatorTest : public ::testing::Test {
 protected:
  EvaluatorTest() : collection_(time_) {}

  void Load(std::vector<sync::Registration> rows) {
    collection_.OnReset();
    sync::SyncBatch batch;
    for (auto& row : rows) {
      if (row.created_at == absl::Time()) row.created_at = time_.SystemNow();
      sync::RowChange change;
      change.registration = row;
      batch.changes.push_back(change);
    }
    collection_.OnBatch(batch);
    collection_.OnUpToDate();
    evaluator_ = std::make_unique<Evaluator>(collection_, store_, time_, executor_);
  }

  void Sync(sync::ChangeOp op, const sync::Registration& row) {
    sync::SyncBatch batch;
    sync::RowChange change;
    change.op = op;
    change.registration = row;
    batch.changes.push_back(change);
    batch.txids = {next_txid_++};
    collection_.OnBatch(batch);
  }

  // Advances simulated time and runs the deferred work it triggered.
  void Advance(absl::Duration d) {
    time_.Advance(d);
    executor_.RunAll();
  }

  common::SimulatedTimeSource time_;
  common::ManualExecutor executor_;
  sync::RegistrationCollection collection_;
  StrictMock<MockWakeStore> store_;
  std::unique_ptr<Evaluator> evaluator_;
  int64_t next_txid_ = 100;
};

TEST(MatchesTest, RunFinishedOnlyMatchesRunFinishedEvents) {
  const sync::Registration row = RunFinished(1, "/p");
  EXPECT_TRUE(Matches(row, SourceEvent{true, "runs", sync::ChangeOp::kUpdate}));
  EXPECT_FALSE(Matches(row, SourceEvent{false, "runs", sync::ChangeOp::kUpdate}));
}

TEST(MatchesTest, ChangeFiltersByCollectionAndOp) {
  using Op = sync::ChangeOp;
  struct Case {
    std::vector<std::string> collections;
    std::vector<Op> ops;
    std::string collection;
    Op op;
    bool matches;
  };
  const std::vector<Case> cases = {
      {{}, {}, "anything", Op::kDelete, true},
      {{"inbox"}, {}, "inbox", Op::kInsert, true},
      {{"inbox"}, {}, "runs", Op::kInsert, false},
      {{}, {Op::kInsert}, "inbox", Op::kInsert, true},
      {{}, {Op::kInsert}, "inbox", Op::kUpdate, false},
      {{"a", "b"}, {Op::kUpdate, Op::kDelete}, "b", Op::kDelete, true},
      {{"a", "b"}, {Op::kUpdate, Op::kDelete}, "c", Op::kDelete, false},
      {{"a", "b"}, {Op::kUpdate, Op::kDelete}, "a", Op::kInsert, false},
  };
  for (const Case& c : cases) {
    const sync::Registration row = OnChange(1, c.collections, c.ops);
    EXPECT_EQ(Matches(row, SourceEvent{false, c.collection, c.op}), c.matches)
        << c.collection << " " << static_cast<int>(c.op);
    // A change registration never matches a run-finished evaluation.
    EXPECT_FALSE(Matches(row, SourceEvent{true, "runs", Op::kUpdate}));
  }
}

TEST(MatchesTest, SourceEventKeyIsOffsetElseOpAndKey) {
  EXPECT_EQ(SourceEventKey("0_12", sync::ChangeOp::kUpdate, "k"), "0_12");
  EXPECT_EQ(SourceEventKey("", sync::ChangeOp::kUpdate, "k"), "update:k");
  EXPECT_EQ(SourceEventKey("", sync::ChangeOp::kInsert, "m7"), "insert:m7");
}

TEST_F(EvaluatorTest, RunFinishedPersistsOneWakePerMatch) {
  Load({RunFinished(1, "/p1"), RunFinished(2, "/p2"), RunFinished(3, "/p3", "/other"),
        OnChange(4, {"runs"}, {})});
  EXPECT_CALL(store_, PersistWakes(SizeIs(2))).WillOnce([](const std::vector<WakeDraft>& drafts) {
    EXPECT_EQ(drafts[0].stream, "/p1");
    EXPECT_EQ(drafts[0].registration_id, 1);
    EXPECT_EQ(drafts[0].source_event_key, "update:run-1");
    EXPECT_EQ(drafts[0].run_finished_status, v1::COMPLETED);
    EXPECT_EQ(drafts[0].message.source(), "/child");
    EXPECT_FALSE(drafts[0].message.timeout());
    const v1::WakeChange& change = drafts[0].message.changes(0);
    EXPECT_EQ(change.collection(), "runs");
    EXPECT_EQ(change.kind(), v1::UPDATE);
    EXPECT_EQ(change.key(), "run-1");
    EXPECT_EQ(change.value().string_value(), "done");
    EXPECT_FALSE(drafts[0].delete_registration);
    EXPECT_FALSE(drafts[0].consume_timeout);
    EXPECT_EQ(drafts[1].stream, "/p2");
    return Persisted(drafts);
  });
  auto result = evaluator_->EvaluateRunFinished(RunFinishedRequest());
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_THAT(result->wakes, SizeIs(2));
  EXPECT_EQ(result->debounced, 0);
}

TEST_F(EvaluatorTest, NoMatchTouchesNoStore) {
  Load({RunFinished(1, "/p1")});
  auto result = evaluator_->EvaluateRunFinished(RunFinishedRequest("/nobody"));
  ASSERT_TRUE(result.ok());
  EXPECT_THAT(result->wakes, IsEmpty());
}

TEST_F(EvaluatorTest, TenantsAreIsolated) {
  Load({RunFinished(1, "/p1")});
  auto result = evaluator_->EvaluateRunFinished(RunFinishedRequest("/child", "other-tenant"));
  ASSERT_TRUE(result.ok());
  EXPECT_THAT(result->wakes, IsEmpty());
}

TEST_F(EvaluatorTest, OneShotTimeoutAndIncludeResponseShapeTheDraft) {
  sync::Registration row = RunFinished(1, "/p1");
  row.one_shot = true;
  row.timeout_ms = 60000;
  row.include_response = false;
  Load({row});
  EXPECT_CALL(store_,
              PersistWakes(ElementsAre(AllOf(Field(&WakeDraft::delete_registration, true),
                                             Field(&WakeDraft::consume_timeout, true),
                                             Field(&WakeDraft::require_timeout_unconsumed, false),
                                             Field(&WakeDraft::include_response, false)))))
      .WillOnce([](const std::vector<WakeDraft>& drafts) {
        EXPECT_FALSE(drafts[0].message.changes(0).has_value());
        return Persisted(drafts);
      });
  ASSERT_TRUE(evaluator_->EvaluateRunFinished(RunFinishedRequest()).ok());
}

TEST_F(EvaluatorTest, EventKeysSayHowTheyAreRemembered) {
  Load({RunFinished(1, "/p1")});
  EXPECT_CALL(store_,
              PersistWakes(ElementsAre(AllOf(Field(&WakeDraft::source_event_key, "0000_0042"),
                                             Field(&WakeDraft::key_kind, EventKeyKind::kOffset)))))
      .WillOnce(Persisted);
  v1::EvaluateRunFinishedRequest request = RunFinishedRequest();
  request.set_offset("0000_0042");
  ASSERT_TRUE(evaluator_->EvaluateRunFinished(request).ok());
  EXPECT_CALL(store_,
              PersistWakes(ElementsAre(AllOf(Field(&WakeDraft::source_event_key, "update:run-1"),
                                             Field(&WakeDraft::key_kind, EventKeyKind::kEvent)))))
      .WillOnce(Persisted);
  ASSERT_TRUE(evaluator_->EvaluateRunFinished(RunFinishedRequest()).ok());
}

TEST_F(EvaluatorTest, ChangeCarriesValuesAndInboxFields) {
  Load({OnChange(1, {"inbox"}, {sync::ChangeOp::kInsert})});
  v1::EvaluateChangeRequest request = ChangeRequest("inbox", v1::INSERT, "m1");
  request.set_offset("0_42");
  request.mutable_value()->set_number_value(3);
  request.mutable_inbox()->set_from("/agent/a");
  request.mutable_inbox()->set_message_type("text");
  EXPECT_CALL(store_, PersistWakes(SizeIs(1))).WillOnce([](const std::vector<WakeDraft>& drafts) {
    EXPECT_EQ(drafts[0].source_event_key, "0_42");
    const v1::WakeChange& change = drafts[0].message.changes(0);
    EXPECT_EQ(change.kind(), v1::INSERT);
    EXPECT_EQ(change.value().number_value(), 3);
    EXPECT_EQ(change.inbox().from(), "/agent/a");
    EXPECT_EQ(change.inbox().message_type(), "text");
    EXPECT_EQ(drafts[0].run_finished_status, v1::RUN_STATUS_UNSPECIFIED);
    return Persisted(drafts);
  });
  ASSERT_TRUE(evaluator_->EvaluateChange(request).ok());
  // An update of the same collection does not match the insert-only filter.
  auto none = evaluator_->EvaluateChange(ChangeRequest("inbox", v1::UPDATE, "m1"));
  ASSERT_TRUE(none.ok());
  EXPECT_THAT(none->wakes, IsEmpty());
}

TEST_F(EvaluatorTest, InboxFieldsOnlyTravelForTheInboxCollection) {
  Load({OnChange(1, {}, {})});
  v1::EvaluateChangeRequest request = ChangeRequest("notes", v1::UPDATE, "n1");
  request.mutable_inbox()->set_from("/agent/a");
  request.mutable_old_value()->set_bool_value(true);
  EXPECT_CALL(store_, PersistWakes(SizeIs(1))).WillOnce([](const std::vector<WakeDraft>& drafts) {
    EXPECT_FALSE(drafts[0].message.changes(0).has_inbox());
    EXPECT_TRUE(drafts[0].message.changes(0).old_value().bool_value());
    return Persisted(drafts);
  });
  ASSERT_TRUE(evaluator_->EvaluateChange(request).ok());
}

TEST_F(EvaluatorTest, StoreFailureIsReturned) {
  Load({RunFinished(1, "/p1")});
  EXPECT_CALL(store_, PersistWakes(_)).WillOnce(Return(absl::UnavailableError("db down")));
  EXPECT_THAT(evaluator_->EvaluateRunFinished(RunFinishedRequest()),
              StatusIs(absl::StatusCode::kUnavailable, ::testing::HasSubstr("db down")));
}

// Answers a persist of debounced drafts: each joined its window.
absl::StatusOr<PersistResult> Buffered(const std::vector<WakeDraft>& drafts) {
  PersistResult result;
  for (const WakeDraft& draft : drafts) {
    if (draft.debounce_ms > 0) {
      result.buffered.push_back(BufferedMatch{draft.tenant_id, draft.registration_id, 77});
    }
  }
  result.txid = 7;
  return result;
}

WindowResult Fired(int64_t registration_id) {
  WindowResult result;
  result.outcome = WindowResult::Outcome::kFired;
  v1::Wake wake;
  wake.set_id(500);
  wake.set_registration_id(registration_id);
  result.wake = wake;
  return result;
}

WindowResult NotDue(absl::Duration due_in) {
  WindowResult result;
  result.outcome = WindowResult::Outcome::kNotDue;
  result.due_in = due_in;
  return result;
}

MATCHER_P2(WindowIs, tenant, registration_id, "") {
  return arg.tenant_id == tenant && arg.registration_id == registration_id;
}

TEST_F(EvaluatorTest, DebouncedMatchJoinsItsWindowInTheStore) {
  sync::Registration row = RunFinished(1, "/p1");
  row.debounce_ms = 1000;
  row.one_shot = true;
  row.timeout_ms = 60000;
  Load({row});
  EXPECT_CALL(store_, PersistWakes(SizeIs(1))).WillOnce([](const std::vector<WakeDraft>& drafts) {
    const WakeDraft& draft = drafts[0];
    EXPECT_EQ(draft.debounce_ms, 1000);
    EXPECT_EQ(draft.source_event_key, "update:run-1");
    EXPECT_EQ(draft.key_kind, EventKeyKind::kEvent);
    EXPECT_EQ(draft.run_finished_status, v1::COMPLETED);
    EXPECT_EQ(draft.message.changes_size(), 1);
    EXPECT_EQ(draft.message.changes(0).key(), "run-1");
    // The one-shot row goes when the window closes, not now; the match
    // consumes the timeout at once.
    EXPECT_FALSE(draft.delete_registration);
    EXPECT_TRUE(draft.consume_timeout);
    return Buffered(drafts);
  });
  auto result = evaluator_->EvaluateRunFinished(RunFinishedRequest());
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->debounced, 1);
  EXPECT_THAT(result->wakes, IsEmpty());
  EXPECT_EQ(evaluator_->WatchedWindows(), 1u);
}

TEST_F(EvaluatorTest, EachMatchRestartsTheWindowTimer) {
  sync::Registration row = RunFinished(1, "/p1");
  row.debounce_ms = 1000;
  Load({row});
  EXPECT_CALL(store_, PersistWakes(_)).Times(2).WillRepeatedly(Buffered);
  ASSERT_TRUE(evaluator_->EvaluateRunFinished(RunFinishedRequest()).ok());
  Advance(absl::Milliseconds(600));
  v1::EvaluateRunFinishedRequest second = RunFinishedRequest();
  second.set_run_key("run-2");
  ASSERT_TRUE(evaluator_->EvaluateRunFinished(second).ok());
  Advance(absl::Milliseconds(999));  // StrictMock: no close before 1600 ms.
  EXPECT_CALL(store_, CloseDebounceWindow(WindowIs("t", 1))).WillOnce(Return(Fired(1)));
  Advance(absl::Milliseconds(1));
  EXPECT_EQ(evaluator_->WatchedWindows(), 0u);
}

TEST_F(EvaluatorTest, DuplicateMatchWatchesNoWindow) {
  sync::Registration row = RunFinished(1, "/p1");
  row.debounce_ms = 1000;
  Load({row});
  // The store knew the event already: nothing joined a window.
  EXPECT_CALL(store_, PersistWakes(_)).WillOnce(Return(PersistResult()));
  auto result = evaluator_->EvaluateRunFinished(RunFinishedRequest());
  ASSERT_TRUE(result.ok());
  EXPECT_EQ(result->debounced, 0);
  EXPECT_EQ(evaluator_->WatchedWindows(), 0u);
  Advance(absl::Seconds(5));  // StrictMock: no close.
}

TEST_F(EvaluatorTest, WindowMovedByAnotherReplicaIsLookedAtAgainWhenDue) {
  sync::Registration row = RunFinished(1, "/p1");
  row.debounce_ms = 100;
  Load({row});
  EXPECT_CALL(store_, PersistWakes(_)).WillOnce(Buffered);
  ASSERT_TRUE(evaluator_->EvaluateRunFinished(RunFinishedRequest()).ok());
  EXPECT_CALL(store_, CloseDebounceWindow(WindowIs("t", 1)))
      .WillOnce(Return(NotDue(absl::Milliseconds(250))));
  Advance(absl::Milliseconds(100));
  EXPECT_EQ(evaluator_->WatchedWindows(), 1u);
  Advance(absl::Milliseconds(249));  // StrictMock: not yet.
  EXPECT_CALL(store_, CloseDebounceWindow(WindowIs("t", 1))).WillOnce(Return(Fired(1)));
  Advance(absl::Milliseconds(1));
  EXPECT_EQ(evaluator_->WatchedWindows(), 0u);
}

TEST_F(EvaluatorTest, FailedCloseIsRetriedNotLost) {
  sync::Registration row = RunFinished(1, "/p1");
  row.debounce_ms = 100;
  Load({row});
  EXPECT_CALL(store_, PersistWakes(_)).WillOnce(Buffered);
  ASSERT_TRUE(evaluator_->EvaluateRunFinished(RunFinishedRequest()).ok());
  EXPECT_CALL(store_, CloseDebounceWindow(_))
      .WillOnce(Return(absl::UnavailableError("db down")))
      .WillOnce(Return(Fired(1)));
  Advance(absl::Milliseconds(100));
  EXPECT_EQ(evaluator_->WatchedWindows(), 1u);
  Advance(absl::Seconds(1));
  EXPECT_EQ(evaluator_->WatchedWindows(), 0u);
}

TEST_F(EvaluatorTest, DueWindowsOpenedElsewhereAreClosed) {
  Load({});
  // Windows of another (dead) replica: this one never saw their matches.
  EXPECT_CALL(store_, DueDebounceWindows(50))
      .WillOnce(Return(std::vector<WindowKey>{{"t", 4}, {"u", 9}}));
  EXPECT_CALL(store_, CloseDebounceWindow(WindowIs("t", 4))).WillOnce(Return(Fired(4)));
  EXPECT_CALL(store_, CloseDebounceWindow(WindowIs("u", 9)))
      .WillOnce(Return(WindowResult()));  // Another replica was first.
  evaluator_->CloseDueWindows(50);
  EXPECT_EQ(evaluator_->WatchedWindows(), 0u);
}

TEST_F(EvaluatorTest, UnregisteringStopsWatchingTheWindow) {
  sync::Registration row = RunFinished(1, "/p1");
  row.debounce_ms = 1000;
  Load({row});
  EXPECT_CALL(store_, PersistWakes(_)).WillOnce(Buffered);
  ASSERT_TRUE(evaluator_->EvaluateRunFinished(RunFinishedRequest()).ok());
  Sync(sync::ChangeOp::kDelete, row);
  EXPECT_EQ(evaluator_->WatchedWindows(), 0u);
  // StrictMock: no close from here; the sweep closes the window (without a
  // wake) once it is due.
  Advance(absl::Seconds(5));
}

TEST(MatchesTest, OffsetsAreOrderedKeys) {
  EXPECT_EQ(SourceEventKeyKind("0000_0012"), EventKeyKind::kOffset);
  EXPECT_EQ(SourceEventKeyKind(""), EventKeyKind::kEvent);
}

TEST_F(EvaluatorTest, TimeoutFiresOnceWhenNothingMatched) {
  sync::Registration row = RunFinished(1, "/p1");
  row.timeout_ms = 5000;
  Load({row});
  EXPECT_EQ(evaluator_->ArmedTimeouts(), 1u);
  Advance(absl::Milliseconds(4999));
  EXPECT_CALL(store_, PersistWakes(SizeIs(1))).WillOnce([](const std::vector<WakeDraft>& drafts) {
    EXPECT_TRUE(drafts[0].message.timeout());
    EXPECT_THAT(drafts[0].message.changes(), IsEmpty());
    EXPECT_EQ(drafts[0].message.source(), "/child");
    EXPECT_EQ(drafts[0].source_event_key, "timeout");
    EXPECT_TRUE(drafts[0].require_timeout_unconsumed);
    return Persisted(drafts);
  });
  Advance(absl::Milliseconds(1));
  EXPECT_EQ(evaluator_->ArmedTimeouts(), 0u);
  // The row now shows timeout_consumed; nothing fires again.
  row.timeout_consumed = true;
  Sync(sync::ChangeOp::kUpdate, row);
  Advance(absl::Hours(1));
  EXPECT_EQ(evaluator_->ArmedTimeouts(), 0u);
}

TEST_F(EvaluatorTest, EarlyEventConsumesTheTimeout) {
  sync::Registration row = RunFinished(1, "/p1");
  row.timeout_ms = 5000;
  Load({row});
  EXPECT_CALL(store_, PersistWakes(ElementsAre(Field(&WakeDraft::consume_timeout, true))))
      .WillOnce(Persisted);
  ASSERT_TRUE(evaluator_->EvaluateRunFinished(RunFinishedRequest()).ok());
  // The store marked it consumed; the sync stream shows that and disarms.
  row.timeout_consumed = true;
  Sync(sync::ChangeOp::kUpdate, row);
  EXPECT_EQ(evaluator_->ArmedTimeouts(), 0u);
  Advance(absl::Seconds(10));  // StrictMock: a timeout wake would fail here.
}

TEST_F(EvaluatorTest, TimeoutsFollowTheCollection) {
  Load({});
  sync::Registration row = RunFinished(1, "/p1");
  row.timeout_ms = 1000;
  row.created_at = time_.SystemNow();
  Sync(sync::ChangeOp::kInsert, row);
  EXPECT_EQ(evaluator_->ArmedTimeouts(), 1u);
  Sync(sync::ChangeOp::kDelete, row);
  EXPECT_EQ(evaluator_->ArmedTimeouts(), 0u);
  Advance(absl::Seconds(5));
  // A row whose deadline already passed (e.g. after a restart) fires at once.
  sync::Registration late = RunFinished(2, "/p2");
  late.timeout_ms = 1000;
  late.created_at = time_.SystemNow() - absl::Seconds(10);
  EXPECT_CALL(store_, PersistWakes(ElementsAre(Field(&WakeDraft::registration_id, 2))))
      .WillOnce(Persisted);
  Sync(sync::ChangeOp::kInsert, late);
  Advance(absl::ZeroDuration());
}

// A registration that enters the collection while an evaluator is being
// built must arm its timeout: the evaluator listens before it snapshots.
TEST_F(EvaluatorTest, RegistrationArrivingWhileTheEvaluatorStartsArmsItsTimeout) {
  Load({});
  evaluator_.reset();
  int missed = 0;
  int64_t id = 1;
  for (int round = 0; round < 300; ++round) {
    std::atomic<bool> go{false};
    std::thread writer([&] {
      while (!go.load()) {
      }
      for (int i = 0; i < 5; ++i) {
        sync::Registration row = RunFinished(id++, "/p");
        row.timeout_ms = 3600 * 1000;
        row.created_at = time_.SystemNow();
        Sync(sync::ChangeOp::kInsert, row);
      }
    });
    go.store(true);
    Evaluator evaluator(collection_, store_, time_, executor_);
    writer.join();
    if (evaluator.ArmedTimeouts() != collection_.size()) ++missed;
  }
  EXPECT_EQ(missed, 0) << "evaluators that missed a registration";
}

TEST_F(EvaluatorTest, ManyTimeoutsFireEachAtItsOwnDeadline) {
  // Deadlines out of id order: 3 s, 1 s, 2 s, plus a consumed one that never fires.
  std::vector<sync::Registration> rows;
  for (int64_t id : {1, 2, 3, 4}) {
    sync::Registration row = RunFinished(id, absl::StrCat("/p", id));
    row.timeout_ms = id == 1 ? 3000 : id == 2 ? 1000 : 2000;
    row.timeout_consumed = id == 4;
    rows.push_back(row);
  }
  Load(rows);
  EXPECT_EQ(evaluator_->ArmedTimeouts(), 3u);
  std::vector<int64_t> fired;
  EXPECT_CALL(store_, PersistWakes(SizeIs(1)))
      .Times(3)
      .WillRepeatedly([&](const std::vector<WakeDraft>& drafts) {
        fired.push_back(drafts[0].registration_id);
        return Persisted(drafts);
      });
  Advance(absl::Milliseconds(999));
  EXPECT_THAT(fired, IsEmpty());
  Advance(absl::Milliseconds(1));
  EXPECT_THAT(fired, ElementsAre(2));
  // Row 3 moves its deadline later (an update re-arms from its new created_at).
  sync::Registration moved = rows[2];
  moved.created_at = time_.SystemNow() + absl::Seconds(5);
  Sync(sync::ChangeOp::kUpdate, moved);
  Advance(absl::Seconds(2));
  EXPECT_THAT(fired, ElementsAre(2, 1));
  Advance(absl::Seconds(5));
  EXPECT_THAT(fired, ElementsAre(2, 1, 3));
  EXPECT_EQ(evaluator_->ArmedTimeouts(), 0u);
}

}  // namespace
}  // namespace wake::registry
