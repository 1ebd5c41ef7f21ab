// A scripted Electric for tests: a real HTTP/1.1 server on 127.0.0.1 (port 0)
// that serves `GET /v1/shape` as electric-api.yaml describes it — shape logs
// per table with handles and offsets, snapshot pages, up-to-date control
// messages with global_last_seen_lsn, live long polls with electric-cursor,
// 409 + must-refetch for a rotated handle, 400 for unknown tables — plus
// scripted deviations (canned responses, held requests) and a log of every
// request so tests can assert what the client asked.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace wake::testing {

struct ShapeRequest {
  int seq = 0;
  std::string method;
  std::string target;  // As received, percent-encoded.
  std::string path;
  std::map<std::string, std::string> query;  // Decoded.
  int status = 0;  // What the server answered (0: not yet, or never).

  bool Has(const std::string& name) const { return query.count(name) > 0; }
  std::string Param(const std::string& name) const {
    auto it = query.find(name);
    return it == query.end() ? std::string() : it->second;
  }
  bool live() const { return Param("live") == "true"; }
  std::string table() const { return Param("table"); }
};

struct CannedResponse {
  int status = 200;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
};

using RequestMatcher = std::function<bool(const ShapeRequest&)>;

class ScriptedElectricServer {
 public:
  struct Options {
    // Log entries per response (pagination of the initial sync).
    size_t page_size = 100;
    // How long a live request at the tip is held before it is answered with
    // only an up-to-date message (Electric holds ~20 s).
    absl::Duration live_hold = absl::Seconds(20);
  };

  static absl::StatusOr<std::unique_ptr<ScriptedElectricServer>> Start(Options options);
  static absl::StatusOr<std::unique_ptr<ScriptedElectricServer>> Start() {
    return Start(Options{});
  }
  ~ScriptedElectricServer();

  // http://127.0.0.1:<port>
  std::string url() const;

  // A shape for `table` with an empty log (requests for other tables: 400).
  void CreateShape(const std::string& table, const std::string& handle);
  // Appends shape messages (one transaction) and wakes live polls.
  void Append(const std::string& table, std::vector<nlohmann::json> messages);
  // Runs `produce` under the server's lock, then appends what it returns, so
  // no response can report an LSN read after `produce` without its rows (the
  // way Electric only reports an LSN once its transaction is in the logs).
  void Ingest(const std::string& table,
              const std::function<std::vector<nlohmann::json>()>& produce);
  // Replaces the shape: new handle, new log. Requests with the old handle
  // (held live polls too) get 409 + must-refetch naming `handle`.
  void Rotate(const std::string& table, const std::string& handle,
              std::vector<nlohmann::json> log);
  std::string Handle(const std::string& table);

  // global_last_seen_lsn reported by up-to-date messages (sent as a decimal
  // string, as Electric does). A source, if set, is asked on every response.
  void SetGlobalLsn(uint64_t lsn);
  void SetGlobalLsnSource(std::function<uint64_t()> source);

  // The next `times` requests matching `match` (-1: all) get `response`
  // instead of the protocol's answer. Earlier injections match first.
  void Inject(RequestMatcher match, CannedResponse response, int times = 1);
  // The next request matching `match` waits for ReleaseHeld(), then is
  // served normally, or with `response` when given.
  void Hold(RequestMatcher match, std::optional<CannedResponse> response = std::nullopt);
  void ReleaseHeld();

  std::vector<ShapeRequest> Requests();
  size_t Count(const RequestMatcher& match);
  // Waits until at least `count` requests matching `match` have arrived.
  bool WaitForRequests(const RequestMatcher& match, size_t count, absl::Duration timeout);

 private:
  struct Shape {
    std::string handle;
    std::vector<nlohmann::json> log;
    uint64_t version = 0;  // Bumped by every Append/Rotate; wakes live polls.
  };
  struct Interceptor {
    RequestMatcher match;
    std::optional<CannedResponse> response;  // Empty: the protocol's answer.
    bool hold = false;
    int times = 1;  // -1: forever.
  };

  ScriptedElectricServer(Options options, int listen_fd, int port, int wake_read, int wake_write);
  void AcceptLoop();
  void Serve(int fd);
  CannedResponse Handle(ShapeRequest request);
  CannedResponse ServeShapeLocked(const ShapeRequest& request) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  uint64_t GlobalLsnLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const Options options_;
  const int listen_fd_;
  const int port_;
  const int wake_read_;
  const int wake_write_;
  std::thread accept_thread_;

  absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::map<std::string, Shape> shapes_ ABSL_GUARDED_BY(mu_);
  uint64_t global_lsn_ ABSL_GUARDED_BY(mu_) = 0;
  std::function<uint64_t()> lsn_source_ ABSL_GUARDED_BY(mu_);
  uint64_t cursor_ ABSL_GUARDED_BY(mu_) = 1000;
  uint64_t releases_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<Interceptor> interceptors_ ABSL_GUARDED_BY(mu_);
  std::vector<ShapeRequest> requests_ ABSL_GUARDED_BY(mu_);
  std::set<int> connections_ ABSL_GUARDED_BY(mu_);
  std::vector<std::thread> connection_threads_ ABSL_GUARDED_BY(mu_);
};

// A change message as Electric sends it, e.g.
//   {"headers":{"operation":"insert","txids":["758"],"last":true},
//    "key":"\"public\".\"wakes\"/\"5\"","value":{...}}
// `value` must hold "id". txids and `last` are only set when given.
nlohmann::json ShapeChangeMessage(const std::string& table, const std::string& operation,
                                  const nlohmann::json& value,
                                  const std::vector<int64_t>& txids = {},
                                  std::optional<bool> last = std::nullopt);

}  // namespace wake::testing
