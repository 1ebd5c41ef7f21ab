#include "common/sync/electric/electric_shape_client.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/status_matchers.h"

namespace wake::sync {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;
using ::wake::testing::StatusIs;

// Answers every Get with a canned result and remembers the URL.
class FakeHttpClient final : public HttpClient {
 public:
  absl::StatusOr<HttpResponse> Get(const std::string& url, absl::Duration timeout,
                                   const std::function<bool()>&) override {
    urls.push_back(url);
    timeouts.push_back(timeout);
    return next;
  }
  void Wakeup() override {}

  absl::StatusOr<HttpResponse> next = HttpResponse{};
  std::vector<std::string> urls;
  std::vector<absl::Duration> timeouts;
};

HttpResponse Ok(std::string body) {
  HttpResponse r;
  r.status = 200;
  r.headers = {{"electric-handle", "h1"}, {"electric-offset", "5_0"}};
  r.body = std::move(body);
  return r;
}

class ElectricShapeClientTest : public ::testing::Test {
 protected:
  ElectricShapeClient Client(std::string where = "", std::string secret = "") {
    ShapeClientOptions options;
    options.base_url = "http://electric:3000/";
    options.secret = std::move(secret);
    options.request_timeout = absl::Seconds(3);
    options.live_timeout = absl::Seconds(60);
    return ElectricShapeClient(options, {"wake_registrations", {"id", "tenant_id"}, where}, http_);
  }

  FakeHttpClient http_;
};

TEST_F(ElectricShapeClientTest, InitialRequestUrl) {
  EXPECT_EQ(Client().RequestUrl(ShapePosition{}, false),
            "http://electric:3000/v1/shape?table=wake_registrations&offset=-1&replica=full"
            "&columns=id%2Ctenant_id");
}

TEST_F(ElectricShapeClientTest, LiveRequestCarriesHandleCursorWhereAndSecret) {
  ShapePosition position{"h-1", "26800584_4", "1674440"};
  ElectricShapeClient client = Client(TenantWhereClause("o'brien"), "s3cr&t");
  EXPECT_EQ(client.RequestUrl(position, true),
            "http://electric:3000/v1/shape?table=wake_registrations&offset=26800584_4&handle=h-1"
            "&live=true&cursor=1674440&replica=full&columns=id%2Ctenant_id"
            "&where=tenant_id%20%3D%20%27o%27%27brien%27&secret=s3cr%26t");
  EXPECT_THAT(client.Describe(position, true), Not(HasSubstr("secret")));
}

TEST_F(ElectricShapeClientTest, TenantWhereClauseQuotesTheLiteral) {
  EXPECT_EQ(TenantWhereClause("acme"), "tenant_id = 'acme'");
  EXPECT_EQ(TenantWhereClause("a'b''c"), "tenant_id = 'a''b''''c'");
}

TEST_F(ElectricShapeClientTest, ParsesChangesTxidsAndUpToDate) {
  http_.next = Ok(R"([
    {"headers":{"operation":"insert","lsn":"1234","op_position":0,"txids":["9007199254740993"],
                "last":true},"key":"\"public\".\"wake_registrations\"/\"1\"","value":{"id":"1"}},
    {"headers":{"operation":"delete","txids":[77]},"value":{"id":"2"}},
    {"headers":{"control":"snapshot-end","xmin":"1"}},
    {"headers":{"control":"up-to-date","global_last_seen_lsn":"0/1234567"}}])");
  http_.next->headers["electric-cursor"] = "99";
  absl::StatusOr<ShapeResponse> r = Client().Fetch(ShapePosition{}, true, nullptr);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(http_.timeouts.back(), absl::Seconds(60));
  EXPECT_FALSE(r->must_refetch);
  EXPECT_EQ(r->handle, "h1");
  EXPECT_EQ(r->offset, "5_0");
  EXPECT_EQ(r->cursor, "99");
  EXPECT_TRUE(r->up_to_date);
  EXPECT_EQ(r->global_last_seen_lsn, std::optional<uint64_t>(0x1234567));
  ASSERT_EQ(r->changes.size(), 2u);
  EXPECT_EQ(r->changes[0].op, ChangeOp::kInsert);
  EXPECT_THAT(r->changes[0].txids, ElementsAre(9007199254740993));
  EXPECT_TRUE(r->changes[0].last);
  EXPECT_EQ(r->changes[0].lsn, "1234");
  EXPECT_FALSE(r->changes[1].last);
  EXPECT_EQ(r->changes[1].lsn, "");
  EXPECT_EQ(r->snapshot_xmin, std::optional<int64_t>(1));
  EXPECT_EQ(r->changes[0].value["id"], "1");
  EXPECT_EQ(r->changes[1].op, ChangeOp::kDelete);
  EXPECT_THAT(r->changes[1].txids, ElementsAre(77));
}

TEST_F(ElectricShapeClientTest, ConflictIsMustRefetchWithTheNewHandle) {
  HttpResponse conflict;
  conflict.status = 409;
  conflict.headers = {{"electric-handle", "h2"}};
  conflict.body = R"([{"headers":{"control":"must-refetch"}}])";
  http_.next = conflict;
  absl::StatusOr<ShapeResponse> r = Client().Fetch(ShapePosition{"h1", "3_0", ""}, false, nullptr);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->must_refetch);
  EXPECT_EQ(r->handle, "h2");
}

TEST_F(ElectricShapeClientTest, MustRefetchInABodyDropsItsChanges) {
  http_.next = Ok(R"([{"headers":{"operation":"insert"},"value":{"id":"1"}},
                      {"headers":{"control":"must-refetch"}}])");
  absl::StatusOr<ShapeResponse> r = Client().Fetch(ShapePosition{}, false, nullptr);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->must_refetch);
  EXPECT_TRUE(r->changes.empty());
}

TEST_F(ElectricShapeClientTest, BadRequestIsInvalidArgumentWithElectricsMessage) {
  HttpResponse bad;
  bad.status = 400;
  bad.body = R"({"message":"Invalid request","errors":{"where":["unknown column tenant"]}})";
  http_.next = bad;
  EXPECT_THAT(Client("tenant = 'x'", "topsecret").Fetch(ShapePosition{}, false, nullptr),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("HTTP 400"), HasSubstr("unknown column tenant"),
                             HasSubstr("electric rejected GET http://electric:3000/v1/shape"),
                             Not(HasSubstr("topsecret")))));
}

TEST_F(ElectricShapeClientTest, MissingOrWrongSecretIsUnauthenticated) {
  HttpResponse unauthorized;
  unauthorized.status = 401;
  unauthorized.body = R"({"message":"Unauthorized - Invalid API secret"})";
  http_.next = unauthorized;
  EXPECT_THAT(Client("", "wrong").Fetch(ShapePosition{}, false, nullptr),
              StatusIs(absl::StatusCode::kUnauthenticated,
                       AllOf(HasSubstr("HTTP 401"), HasSubstr("Invalid API secret"),
                             Not(HasSubstr("wrong")))));
}

TEST_F(ElectricShapeClientTest, RetryAfterTravelsWithTheStatus) {
  HttpResponse overloaded;
  overloaded.status = 503;
  overloaded.headers = {{"retry-after", "7"}};
  overloaded.body =
      R"({"code":"concurrent_request_limit_exceeded","message":"Concurrent initial request )"
      R"(limit exceeded (limit: 300), please retry"})";
  http_.next = overloaded;
  absl::StatusOr<ShapeResponse> r = Client().Fetch(ShapePosition{}, false, nullptr);
  EXPECT_THAT(r, StatusIs(absl::StatusCode::kUnavailable,
                          AllOf(HasSubstr("request limit exceeded"),
                                HasSubstr("concurrent_request_limit_exceeded"))));
  EXPECT_EQ(RetryAfter(r.status()), std::optional<absl::Duration>(absl::Seconds(7)));
  overloaded.headers.clear();
  http_.next = overloaded;
  EXPECT_EQ(RetryAfter(Client().Fetch(ShapePosition{}, false, nullptr).status()), std::nullopt);
}

TEST_F(ElectricShapeClientTest, ServerErrorsAndThrottlingAreUnavailable) {
  for (int status : {500, 503, 429}) {
    HttpResponse r;
    r.status = status;
    r.body = "overloaded";
    http_.next = r;
    EXPECT_THAT(Client().Fetch(ShapePosition{}, false, nullptr),
                StatusIs(absl::StatusCode::kUnavailable,
                         AllOf(HasSubstr(absl::StrCat("HTTP ", status)), HasSubstr("overloaded"))));
  }
}

TEST_F(ElectricShapeClientTest, TransportErrorsNameTheRequest) {
  http_.next = absl::UnavailableError("Connection refused");
  EXPECT_THAT(
      Client().Fetch(ShapePosition{}, false, nullptr),
      StatusIs(absl::StatusCode::kUnavailable,
               AllOf(HasSubstr("GET http://electric:3000/v1/shape?table=wake_registrations"),
                     HasSubstr("Connection refused"))));
  http_.next = absl::CancelledError("request abandoned");
  EXPECT_THAT(Client().Fetch(ShapePosition{}, true, nullptr),
              StatusIs(absl::StatusCode::kCancelled, HasSubstr("abandoned")));
}

TEST_F(ElectricShapeClientTest, MalformedResponsesAreClearErrors) {
  const std::pair<const char*, const char*> cases[] = {
      {R"([{"headers":{"operation":"insert"},"value":{"id":"1"}},{"headers":)", "malformed JSON"},
      {R"({"headers":{}})", "expected a JSON array"},
      {R"([{"value":{}}])", "message 0: no headers object"},
      {R"([{"headers":{"operation":"upsert"},"value":{}}])", "unknown operation \"upsert\""},
      {R"([{"headers":{"operation":"insert"},"value":"x"}])", "value is not an object"},
      {R"([{"headers":{"operation":"insert","txids":["x"]},"value":{}}])", "is not an xid"},
      {R"([{"headers":{"control":"up-to-date","global_last_seen_lsn":"zz"}}])",
       "global_last_seen_lsn"},
  };
  for (const auto& [body, message] : cases) {
    http_.next = Ok(body);
    EXPECT_THAT(Client().Fetch(ShapePosition{}, false, nullptr),
                StatusIs(absl::StatusCode::kUnavailable, HasSubstr(message)))
        << body;
  }
  HttpResponse no_offset = Ok("[]");
  no_offset.headers.erase("electric-offset");
  http_.next = no_offset;
  EXPECT_THAT(Client().Fetch(ShapePosition{}, false, nullptr),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("no electric-offset header")));
}

TEST_F(ElectricShapeClientTest, UpToDateHeaderAndLegacyNoContent) {
  HttpResponse r = Ok("");
  r.headers["electric-up-to-date"] = "";
  http_.next = r;
  absl::StatusOr<ShapeResponse> parsed = Client().Fetch(ShapePosition{}, true, nullptr);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_TRUE(parsed->up_to_date);
  EXPECT_FALSE(parsed->global_last_seen_lsn.has_value());
  r = Ok("");
  r.status = 204;
  http_.next = r;
  parsed = Client().Fetch(ShapePosition{}, true, nullptr);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_TRUE(parsed->up_to_date);
}

}  // namespace
}  // namespace wake::sync
